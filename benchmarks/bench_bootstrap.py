#!/usr/bin/env python
"""Bootstrap particle filter benchmark: smcflow vs a lean hand-written JAX filter vs ``particles``.

Model (1-D linear Gaussian, stationary start)::

    x_0 ~ N(0, sx^2 / (1 - rho^2)),   x_t = rho x_{t-1} + sx eps_t,   y_t = x_t + sy eta_t

with rho = 0.9, sx = 1, sy = 0.2 and T = 100 observations simulated once (NumPy, fixed seed).

Every entry runs the same algorithm on the same data with the same N: bootstrap proposal,
systematic resampling when ESS < N/2 (checked before each move), log-evidence accumulated.

* ``smcflow``      - ``smcflow.run(smcflow.bootstrap_filter(ssm, ys), key, N, resampler="systematic",
                     ess_threshold=0.5)`` with the model written with numpyro ``dist.Normal``; the
                     timed call is the whole public call (host-side checks included).
* ``hand-written`` - one ``jax.jit`` function, one ``lax.scan`` over time, same systematic resampling
                     (ancestors in O(N) from the slot ends ``ceil(N*cdf_i - U)``) under ``lax.cond``;
                     no numpyro, no checks. This is the "speed of light" for this design in JAX.
* ``particles``    - ``particles.SMC(fk=ssm.Bootstrap(...), resampling="systematic", ESSrmin=0.5,
                     store_history=False, collect="off")`` (NumPy + numba, CPU).

The two JAX entries are run under every PRNG implementation JAX offers (typed keys,
``jax.random.key(seed, impl=...)``), next to a probe that makes only the draws of one run (N*T
normals, T uniforms) so the PRNG's share of the cost is visible. ``--variants`` adds the hand-written
filter with the same systematic ancestors found by binary search (``searchsorted``, O(N log N)), to
show what the resampling step costs. Entries are interleaved within each repeat so that background load
affects all of them alike. Warm calls only are timed (the first call, which compiles, is reported
separately); the reported time is the median over repeats. The log-evidence of every entry is shown
beside the exact Kalman value, so a fast but wrong result is visible.

BlackJAX is not included: its SMC module targets static distributions (tempered / adaptive-tempered
SMC); ``blackjax.smc.base.step`` always resamples and has no ESS-adaptive state-space filter, so it
would not run the same algorithm.

Usage::

    python benchmarks/bench_bootstrap.py                 # full run, writes docs/benchmarks.md
    python benchmarks/bench_bootstrap.py --quick         # tiny smoke run (prints only, unless --out)
    python benchmarks/bench_bootstrap.py --sizes 1e4,1e5 --prngs threefry2x32,rbg --repeats 5
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

RHO, SIGMA_X, SIGMA_Y = 0.9, 1.0, 0.2
SIGMA_0 = SIGMA_X / math.sqrt(1.0 - RHO**2)
N_TIMES = 100
DATA_SEED = 20240611
ESS_FRACTION = 0.5

SECTION = "bench_bootstrap"
TARGET_VS_PARTICLES, TARGET_VS_HAND = 2.5, 0.95  # at N >= 1e5
DEFAULT_PRNGS = ("threefry2x32", "rbg", "unsafe_rbg")


# --------------------------------------------------------------------------------------------------
# data and exact answer
# --------------------------------------------------------------------------------------------------


def simulate_observations(seed: int = DATA_SEED, n_times: int = N_TIMES) -> np.ndarray:
    """One trajectory of the model, drawn with NumPy; returned as float32 values (held in float64)."""
    rng = np.random.default_rng(seed)
    x = SIGMA_0 * rng.standard_normal()
    ys = np.empty(n_times)
    for t in range(n_times):
        if t > 0:
            x = RHO * x + SIGMA_X * rng.standard_normal()
        ys[t] = x + SIGMA_Y * rng.standard_normal()
    # Every implementation sees exactly these numbers (JAX works in float32).
    return ys.astype(np.float32).astype(np.float64)


def kalman_log_likelihood(ys: np.ndarray) -> float:
    """Exact ``log p(y_{0:T-1})`` by the Kalman filter in float64."""
    mean, var = 0.0, SIGMA_0**2  # predictive law of x_t given y_{0:t-1}
    total = 0.0
    for y in ys:
        s = var + SIGMA_Y**2
        total += -0.5 * (math.log(2.0 * math.pi * s) + (y - mean) ** 2 / s)
        gain = var / s
        mean, var = mean + gain * (y - mean), (1.0 - gain) * var
        mean, var = RHO * mean, RHO**2 * var + SIGMA_X**2
    return total


# --------------------------------------------------------------------------------------------------
# PRNG implementations
# --------------------------------------------------------------------------------------------------


def available_prng_impls() -> list[str]:
    """Names of the PRNG implementations this JAX accepts in ``jax.random.key(..., impl=...)``.

    The three long-standing ones come first (default ``threefry2x32``, then ``rbg``, ``unsafe_rbg``),
    then any others this JAX version registers.
    """
    names: list[str] = []
    try:  # the registry itself (private, but the most direct source)
        from jax._src.random import prng as _prng

        names = list(_prng.prngs)
    except Exception:
        try:  # the error message for an unknown name lists the known ones
            jax.random.key(0, impl="__list_impls__")
        except Exception as exc:
            names = re.findall(r'"([A-Za-z0-9_]+)"', str(exc).split("one of:", 1)[-1])
    if not names:
        names = list(DEFAULT_PRNGS)
    first = [p for p in DEFAULT_PRNGS if p in names]
    return first + [p for p in names if p not in first]


def make_key(seed: int, impl: str) -> jax.Array:
    return jax.random.key(seed, impl=impl)


# --------------------------------------------------------------------------------------------------
# the implementations
# --------------------------------------------------------------------------------------------------


def bootstrap_model(ys: np.ndarray):
    """The benchmark's model as an smcflow bootstrap filter (float32 observations): the one builder
    that every benchmark timing this filter through the public API uses."""
    import numpyro.distributions as dist

    import smcflow

    ssm = smcflow.StateSpaceModel(
        initial=lambda: dist.Normal(0.0, SIGMA_0),
        transition=lambda x, t: dist.Normal(RHO * x, SIGMA_X),
        observation=lambda x, t: dist.Normal(x, SIGMA_Y),
    )
    return smcflow.bootstrap_filter(ssm, jnp.asarray(ys, dtype=jnp.float32))


def build_smcflow(ys: np.ndarray, resampler):
    """Return ``fn(key, n) -> log_evidence`` running the public smcflow API."""
    import smcflow

    model = bootstrap_model(ys)

    def fn(key, n):
        res = smcflow.run(model, key, n, resampler=resampler, ess_threshold=ESS_FRACTION)
        return res.log_evidence

    return fn


def build_handwritten(ys: np.ndarray, ancestors: str = "counts"):
    """Return ``fn(key, n) -> log_evidence``: a lean jitted bootstrap filter (one compile per n / key type).

    Log-weights are carried unnormalised together with their log-sum, so each step makes one pass
    of ``exp`` over the particles, from which the log-evidence increment and the ESS both follow.

    ``ancestors="counts"`` (the benchmark's reference) computes the ancestors in O(n): particle ``i``
    covers the grid slots ``j < n * cdf_i - U``, so its last slot is ``ceil(n * cdf_i - U)``; marking
    those ends and taking a cumulative sum gives every slot's ancestor without a binary search.
    ``ancestors="searchsorted"`` (only with ``--variants``) inverts the normalised CDF at the points
    ``(j + U) / n`` with ``jnp.searchsorted``.
    """
    ys32 = jnp.asarray(ys, dtype=jnp.float32)
    log_norm = -math.log(SIGMA_Y) - 0.5 * math.log(2.0 * math.pi)
    half_prec = 0.5 / SIGMA_Y**2

    def log_lik(y, x):
        d = y - x
        return log_norm - half_prec * d * d

    def summarise(lw):
        """log-sum-exp and ESS of unnormalised log-weights, from one exp pass."""
        top = jnp.max(lw)
        w = jnp.exp(lw - top)
        s = jnp.sum(w)
        return top + jnp.log(s), s * s / jnp.sum(w * w)

    def pick_by_search(cdf, u0, n):
        u = (jnp.arange(n, dtype=cdf.dtype) + u0) * (1.0 / n)
        u = jnp.minimum(u, jnp.asarray(1.0 - 2.0**-24, cdf.dtype))
        return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1)

    def pick_by_counts(cdf, u0, n):
        ends = jnp.clip(jnp.ceil(cdf * n - u0), 0, n).astype(jnp.int32)
        marks = jnp.zeros(n + 1, jnp.int32).at[ends].add(1)
        return jnp.minimum(jnp.cumsum(marks[:n]), n - 1)

    pick = {"searchsorted": pick_by_search, "counts": pick_by_counts}[ancestors]

    @partial(jax.jit, static_argnames="n")
    def pf(key, n):
        log_n = math.log(n)
        k_init, k_move, k_res = jax.random.split(key, 3)
        x = SIGMA_0 * jax.random.normal(k_init, (n,))
        lw = log_lik(ys32[0], x)
        lse, ess = summarise(lw)

        def resample(k, x, lw, lse):
            cdf = jnp.cumsum(jnp.exp(lw - lse))
            cdf = cdf / cdf[-1]
            idx = pick(cdf, jax.random.uniform(k), n)
            return x[idx], jnp.zeros_like(lw), jnp.float32(log_n)

        def keep(k, x, lw, lse):
            return x, lw, lse

        def body(carry, inputs):
            x, lw, lse, ess, log_z = carry
            y, k_m, k_r = inputs
            x, lw, lse = lax.cond(ess < ESS_FRACTION * n, resample, keep, k_r, x, lw, lse)
            x = RHO * x + SIGMA_X * jax.random.normal(k_m, (n,))
            lw = lw + log_lik(y, x)
            new_lse, ess = summarise(lw)
            return (x, lw, new_lse, ess, log_z + (new_lse - lse)), None

        steps = ys32.shape[0] - 1
        inputs = (ys32[1:], jax.random.split(k_move, steps), jax.random.split(k_res, steps))
        (_, _, _, _, log_z), _ = lax.scan(body, (x, lw, lse, ess, lse - log_n), inputs)
        return log_z

    return lambda key, n: pf(key, n=n)


def build_prng_probe(n_times: int = N_TIMES):
    """Return ``fn(key, n)`` drawing what a filter run draws (n*T normals, T uniforms), nothing else."""

    @partial(jax.jit, static_argnames="n")
    def draws(key, n):
        k_init, k_move, k_res = jax.random.split(key, 3)

        def body(acc, keys):
            k_m, k_r = keys
            return acc + jax.random.normal(k_m, (n,)) + jax.random.uniform(k_r), None

        steps = n_times - 1
        acc, _ = lax.scan(body, jax.random.normal(k_init, (n,)),
                          (jax.random.split(k_move, steps), jax.random.split(k_res, steps)))
        return jnp.sum(acc)  # depends on every draw, so nothing is optimised away

    return lambda key, n: draws(key, n=n)


def build_particles(ys: np.ndarray):
    """Return ``fn(seed, n) -> log_evidence`` running the ``particles`` package."""
    import particles
    from particles import distributions as pdist
    from particles import state_space_models as pssm

    class LinearGauss1D(pssm.StateSpaceModel):
        default_params = {"rho": RHO, "sigmaX": SIGMA_X, "sigmaY": SIGMA_Y, "sigma0": SIGMA_0}

        def PX0(self):
            return pdist.Normal(loc=0.0, scale=self.sigma0)

        def PX(self, t, xp):
            return pdist.Normal(loc=self.rho * xp, scale=self.sigmaX)

        def PY(self, t, xp, x):
            return pdist.Normal(loc=x, scale=self.sigmaY)

    fk = pssm.Bootstrap(ssm=LinearGauss1D(), data=ys)

    def fn(seed, n):
        np.random.seed(seed)  # particles draws from NumPy's global generator
        pf = particles.SMC(
            fk=fk, N=n, resampling="systematic", ESSrmin=ESS_FRACTION, store_history=False, collect="off"
        )
        pf.run()
        return pf.logLt

    return fn


# --------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------


HAND = "hand-written"
HAND_SEARCH = "hand-written, searchsorted"
SMCFLOW = "smcflow"
PARTICLES = "particles"
PRNG_ONLY = "PRNG draws only"


@dataclass
class Entry:
    impl: str  # one of the names above
    prng: str  # JAX PRNG implementation ("numpy" for particles)
    n: int
    call: Callable[[int], float]  # seed -> log-evidence (blocking)
    first_s: float = float("nan")
    times: list[float] = field(default_factory=list)
    log_z: list[float] = field(default_factory=list)
    max_repeats: int = 0
    error: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def jax_caller(fn, impl: str, n: int) -> Callable[[int], float]:
    def call(seed: int) -> float:
        out = fn(make_key(seed, impl), n)
        return float(out.block_until_ready())

    return call


def numpy_caller(fn, n: int) -> Callable[[int], float]:
    return lambda seed: float(fn(seed, n))


def _timed(e: Entry, seed: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    z = e.call(seed)
    return time.perf_counter() - t0, z


def run_benchmark(args, ys: np.ndarray, log=print) -> list[Entry]:
    smc_fn = build_smcflow(ys, "systematic")
    hand_fn = build_handwritten(ys)
    search_fn = build_handwritten(ys, ancestors="searchsorted") if args.variants else None
    probe_fn = build_prng_probe() if not args.no_prng_probe else None
    part_fn = build_particles(ys) if not args.no_particles else None

    all_entries: list[Entry] = []
    for n in args.sizes:
        entries: list[Entry] = []
        if part_fn is not None:
            entries.append(Entry(PARTICLES, "numpy", n, numpy_caller(part_fn, n)))
        for impl in args.prngs:
            entries.append(Entry(HAND, impl, n, jax_caller(hand_fn, impl, n)))
            entries.append(Entry(SMCFLOW, impl, n, jax_caller(smc_fn, impl, n)))
            if search_fn is not None:
                entries.append(Entry(HAND_SEARCH, impl, n, jax_caller(search_fn, impl, n)))
            if probe_fn is not None:
                entries.append(Entry(PRNG_ONLY, impl, n, jax_caller(probe_fn, impl, n)))

        # First call of every entry: JIT compilation (numba for particles' first N) plus one run.
        for e in entries:
            try:
                e.first_s, _ = _timed(e, 10_000)
            except Exception as exc:  # reported in the table, never hidden
                e.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
                log(f"  N={n:>8} {e.impl:>28} {e.prng:<13} FAILED: {e.error}")

        # Timed warm calls, interleaved: each round calls every entry once, starting from a
        # different entry each round. After the first round, an entry whose call is slow gets fewer
        # repeats (at least --min-repeats) so that a full run stays bounded.
        live = [e for e in entries if e.error is None]
        for e in live:
            e.max_repeats = args.repeats
        r = 0
        while any(len(e.times) < e.max_repeats for e in live):
            shift = r % max(len(live), 1)
            for e in live[shift:] + live[:shift]:
                if len(e.times) >= e.max_repeats:
                    continue
                dt, z = _timed(e, r)
                e.times.append(dt)
                e.log_z.append(z)
                if r == 0:
                    fit = int(args.max_seconds_per_entry / max(dt, 1e-9))
                    e.max_repeats = max(args.min_repeats, min(args.repeats, fit))
            r += 1
        for e in live:
            z = "" if e.impl == PRNG_ONLY else f"  mean log Z {np.mean(e.log_z):9.3f}"
            log(f"  N={n:>8} {e.impl:>28} {e.prng:<13} median {e.median_s * 1e3:10.2f} ms"
                f"  first {e.first_s:6.2f} s  reps {len(e.times):>2}{z}")
        all_entries.extend(entries)
    return all_entries


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    return f"{s * 1e3:.1f} ms" if s >= 0.01 else f"{s * 1e3:.2f} ms"


def _fmt_rate(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f}"


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def _fmt_size(n: int) -> str:
    exp = int(round(math.log10(n))) if n > 0 else 0
    return f"1e{exp}" if 10**exp == n else str(n)


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"jax": jax.__version__, "numpy": np.__version__}
    for mod in ("jaxlib", "numpyro", "particles", "numba"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = "not installed"
    try:
        import smcflow

        versions["smcflow"] = smcflow.__version__
    except Exception:
        versions["smcflow"] = "?"
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "devices": ", ".join(str(d) for d in jax.devices()),
        "load": load,
    }


def render_markdown(entries: list[Entry], args, info: dict[str, str], exact: float, command: str,
                    elapsed_s: float) -> str:
    by_key = {(e.impl, e.prng, e.n): e for e in entries}

    def median(impl, prng, n) -> float:
        e = by_key.get((impl, prng, n))
        return e.median_s if e is not None and e.times else float("nan")

    today = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "## Bootstrap particle filter (1-D linear Gaussian)",
        "",
        f"*Generated by `benchmarks/bench_bootstrap.py` on {today}.*",
        "",
        f"- Machine: {info['nproc']} CPU(s) (`nproc`), {info['cpu']}; JAX devices: {info['devices']}; "
        f"load average at the end of the run: {info['load']}.",
        f"- Software: Python {info['python']}, {info['versions']}.",
        f"- Reproduce: `{command}`",
        f"- Model: x_0 ~ N(0, σx²/(1-ρ²)), x_t = ρ x_(t-1) + σx ε_t, y_t = x_t + σy η_t with "
        f"ρ={RHO}, σx={SIGMA_X}, σy={SIGMA_Y}; T={N_TIMES} observations simulated once (NumPy seed {DATA_SEED}).",
        "- Same algorithm everywhere: bootstrap proposal, systematic resampling when ESS < N/2, "
        "log-evidence accumulated. **smcflow**: the public `smcflow.run(bootstrap_filter(ssm, ys), key, N, "
        "resampler=\"systematic\", ess_threshold=0.5)` with numpyro `dist.Normal` (host-side checks included); "
        "**hand-written**: one jitted `lax.scan`, O(N) systematic ancestors from slot ends, `lax.cond` on the ESS, "
        "no numpyro, no checks (the speed of light for this design); **particles**: "
        "`particles.SMC(fk=Bootstrap(...), resampling=\"systematic\", ESSrmin=0.5, store_history=False, "
        "collect=\"off\")`, NumPy + numba.",
        f"- Timing: median wall time of warm calls (JAX results blocked on), all entries of one N interleaved; "
        f"up to {args.repeats} repeats, at least {args.min_repeats} (*reps*). *First call* includes JIT "
        "compilation (numba's for particles at the first N). Throughput = N·T / median time. "
        f"Whole run: {elapsed_s:.0f} s. The machine may have had other load (see load average).",
        "- *vs particles* = particles time / this time (> 1: faster than particles); *vs hand-written* = "
        "hand-written time / this time with the same PRNG (1.00x = speed of light).",
        f"- log Ẑ: mean ± sd over the timed runs (one key per run); exact Kalman log-likelihood "
        f"(float64): **{exact:.3f}**; ⚠ marks a mean farther from it than max(0.5, 5 sd/√reps).",
        "",
        "| N | implementation | PRNG | median time | particle-steps/s | first call | reps "
        "| vs particles | vs hand-written | log Ẑ (mean ± sd) | mean − exact |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for n in args.sizes:
        part_t = median(PARTICLES, "numpy", n)
        rows = [by_key.get((PARTICLES, "numpy", n))]
        for prng in args.prngs:
            rows += [by_key.get((HAND, prng, n)), by_key.get((SMCFLOW, prng, n)), by_key.get((HAND_SEARCH, prng, n))]
        for e in rows:
            if e is None:
                continue
            name = f"**{e.impl}**" if e.impl == SMCFLOW else e.impl
            if e.error is not None:
                lines.append(f"| {_fmt_size(n)} | {name} | {e.prng} | failed: `{e.error}` | | | | | | | |")
                continue
            t = e.median_s
            vs_part = part_t / t if e.impl != PARTICLES else None
            vs_hand = median(HAND, e.prng, n) / t if e.impl in (SMCFLOW, HAND_SEARCH) else None
            sd = float(np.std(e.log_z, ddof=1)) if len(e.log_z) > 1 else 0.0
            delta = float(np.mean(e.log_z)) - exact
            # flag a mean that is implausibly far from the exact value (fast but wrong)
            suspicious = not abs(delta) <= max(0.5, 5.0 * sd / math.sqrt(len(e.log_z)))
            lines.append(
                f"| {_fmt_size(n)} | {name} | {e.prng} | {_fmt_time(t)} | {_fmt_rate(n * N_TIMES / t)} "
                f"| {_fmt_time(e.first_s)} | {len(e.times)} | {_fmt_ratio(vs_part)} | {_fmt_ratio(vs_hand)} "
                f"| {np.mean(e.log_z):.3f} ± {sd:.3f} | {delta:+.3f}{' ⚠' if suspicious else ''} |"
            )

    big = [n for n in args.sizes if n >= 100_000]
    if big and any((SMCFLOW, p, n) in by_key for p in args.prngs for n in big):
        lines += [
            "",
            f"**Targets at N ≥ 1e5** (reported, not asserted): smcflow ≥ {TARGET_VS_PARTICLES:g}x particles "
            f"and ≥ {TARGET_VS_HAND:g}x the hand-written loop.",
            "",
            f"| N | PRNG | smcflow vs particles | target ≥ {TARGET_VS_PARTICLES:g}x | smcflow vs hand-written "
            f"| target ≥ {TARGET_VS_HAND:g}x |",
            "|---:|---|---:|---|---:|---|",
        ]
        for n in big:
            for prng in args.prngs:
                t = median(SMCFLOW, prng, n)
                vp, vh = median(PARTICLES, "numpy", n) / t, median(HAND, prng, n) / t
                ok = lambda v, goal: "-" if not math.isfinite(v) else ("met" if v >= goal else "**not met**")
                lines.append(f"| {_fmt_size(n)} | {prng} | {_fmt_ratio(vp)} | {ok(vp, TARGET_VS_PARTICLES)} "
                             f"| {_fmt_ratio(vh)} | {ok(vh, TARGET_VS_HAND)} |")

    if any(e.impl == PRNG_ONLY for e in entries):
        lines += [
            "",
            "**PRNG cost**: time to draw only what one filter run draws (N·T normals and T uniforms, one "
            "jitted `lax.scan`), and its share of the hand-written filter's time with the same PRNG.",
            "",
            "| N | " + " | ".join(args.prngs) + " |",
            "|---:|" + "---:|" * len(args.prngs),
        ]
        for n in args.sizes:
            cells = []
            for prng in args.prngs:
                t, h = median(PRNG_ONLY, prng, n), median(HAND, prng, n)
                cells.append("-" if not math.isfinite(t) else f"{_fmt_time(t)} ({100 * t / h:.0f}%)")
            lines.append(f"| {_fmt_size(n)} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_section(path: Path, body: str, section: str = SECTION) -> None:
    """Replace (or append) the marked ``section`` of ``path`` (default: this benchmark's), keeping the rest."""
    start_mark, end_mark = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    block = f"{start_mark}\n{body.rstrip()}\n{end_mark}\n"
    if path.exists():
        text = path.read_text()
    else:
        text = "# Benchmarks\n\nGenerated sections; see `benchmarks/README.md` for what each measures.\n\n"
    start, end = text.find(start_mark), text.find(end_mark)
    if start != -1 and end != -1 and end > start:
        rest = text[end + len(end_mark):].lstrip("\n")
        text = text[:start] + block + ("\n" + rest if rest else "")  # one blank line before the next section
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            value = float(part)
            if value < 1 or value != int(value):
                raise argparse.ArgumentTypeError(f"bad particle count {part!r}")
            out.append(int(value))
    if not out:
        raise argparse.ArgumentTypeError("no sizes given")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_sizes, default=_sizes("1e3,1e4,1e5,1e6"),
                   help="comma-separated particle counts (default 1e3,1e4,1e5,1e6)")
    p.add_argument("--repeats", type=int, default=7, help="timed warm calls per entry (default 7)")
    p.add_argument("--min-repeats", type=int, default=2,
                   help="fewest timed calls for a slow entry (default 2)")
    p.add_argument("--max-seconds-per-entry", type=float, default=12.0,
                   help="cap on timed seconds per entry and N; slow entries get fewer repeats (default 12)")
    p.add_argument("--prngs", default="all",
                   help="comma-separated JAX PRNG implementations, or 'all' for every one JAX offers "
                        f"(this JAX: {','.join(available_prng_impls())})")
    p.add_argument("--no-particles", action="store_true", help="skip the particles package")
    p.add_argument("--no-prng-probe", action="store_true",
                   help="skip the PRNG-only timing (the draws of one run without the filter)")
    p.add_argument("--variants", action="store_true",
                   help="also time the hand-written filter with ancestors found by binary search (searchsorted)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: sizes 1e3,1e4, 2 repeats, threefry2x32/rbg/unsafe_rbg only; "
                        "prints the table without writing it unless --out is given")
    p.add_argument("--out", type=Path, default=None,
                   help="Markdown file whose bench_bootstrap section is replaced (default docs/benchmarks.md)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = REPO_ROOT / "docs" / "benchmarks.md"
        if args.quick:  # a smoke run does not overwrite the published table by default
            args.no_write = True
    if args.quick:
        if "--sizes" not in " ".join(argv if argv is not None else sys.argv[1:]):
            args.sizes = [1000, 10000]
        args.repeats = min(args.repeats, 2)
        args.min_repeats = min(args.min_repeats, args.repeats)
        if args.prngs == "all":
            args.prngs = ",".join(DEFAULT_PRNGS)
    known = available_prng_impls()
    args.prngs = known if args.prngs == "all" else [s.strip() for s in args.prngs.split(",") if s.strip()]
    unknown = [s for s in args.prngs if s not in known]
    if unknown:
        p.error(f"unknown PRNG implementation(s) {unknown}; this JAX offers {known}")
    if args.repeats < 1 or args.min_repeats < 1:
        p.error("--repeats and --min-repeats must be >= 1")
    args.min_repeats = min(args.min_repeats, args.repeats)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [
        os.path.relpath(__file__, REPO_ROOT) if Path(__file__).resolve().is_relative_to(REPO_ROOT) else __file__,
        *(sys.argv[1:] if argv is None else argv),
    ])
    ys = simulate_observations()
    exact = kalman_log_likelihood(ys)
    print(f"# bootstrap PF benchmark: T={N_TIMES}, sizes={args.sizes}, PRNGs={args.prngs}, exact log Z={exact:.4f}",
          flush=True)
    t0 = time.perf_counter()
    entries = run_benchmark(args, ys, log=lambda s: print(s, flush=True))
    elapsed = time.perf_counter() - t0
    table = render_markdown(entries, args, machine_info(), exact, command, elapsed)
    print()
    print(table)
    if not args.no_write:
        write_section(args.out, table)
        print(f"# wrote section '{SECTION}' of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
