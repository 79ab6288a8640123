#!/usr/bin/env python
"""Adaptive tempered SMC on a numpyro model: ``smcflow.infer.SMC`` next to ``blackjax.adaptive_tempered_smc``.

Target: Bayesian linear regression with known noise, ``w ~ N(0, 1.5^2 I_d)``, ``y ~ N(X w, 0.5^2 I_n)``
(X and y simulated once, fixed seed), whose evidence is exact: ``y ~ N(0, 0.5^2 I + 1.5^2 X X^T)``.

Both entries use the same log-density, taken from the numpyro model by
:func:`smcflow.infer.target.numpyro_target` (numpyro's ``potential_energy``), the same prior draws'
law, the same BlackJAX rejuvenation kernel (``blackjax.mala``) with the same number of steps per
tempering step, the same N, conditional-ESS target 0.5 and systematic resampling at every step:

* ``smcflow``  - the public ``smcflow.infer.SMC(model, kernel="mala", ...).run(key, X, y)`` (host-side
  work included; the compiled program is reused across calls); MALA runs in coordinates whitened by
  the particles' standard deviations (its default step size 0.5 d^(-1/3));
* ``blackjax`` - ``blackjax.adaptive_tempered_smc`` driven by a ``lax.while_loop`` until the exponent
  is 1, ``log Z`` summed from ``info.log_likelihood_increment``; MALA with one fixed step size, the
  whitened default times the posterior standard deviation (an informed choice; BlackJAX does not adapt it).

Reported per entry: time of one run (median over repeats of ``n_runs`` vmapped runs, divided by
``n_runs``; compile excluded), the number of tempering steps, the bias and RMSE of ``log Z_hat``
against the exact value over the runs, the final ESS and ESS per second.

Usage::

    python benchmarks/bench_tempering.py                  # writes its section of docs/benchmarks.md
    python benchmarks/bench_tempering.py --quick          # tiny smoke run (prints only, unless --out)
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _p in (str(REPO_ROOT), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from blackjax.smc import resampling  # noqa: E402
from blackjax.smc.base import extend_params  # noqa: E402
from jax import lax  # noqa: E402

from bench_bootstrap import machine_info, write_section  # noqa: E402

import smcflow  # noqa: E402
from smcflow.infer.target import numpyro_target  # noqa: E402

SECTION = "bench_tempering"
PRIOR_SD, NOISE = 1.5, 0.5


def regression(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, PRIOR_SD).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Normal(x @ w, NOISE).to_event(1), obs=y)


def problem(n_data: int, dim: int):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_data, dim)).astype(np.float32)
    y = (x @ rng.normal(size=dim) + NOISE * rng.normal(size=n_data)).astype(np.float32)
    cov = NOISE**2 * np.eye(n_data) + PRIOR_SD**2 * x.astype(np.float64) @ x.T.astype(np.float64)
    _, logdet = np.linalg.slogdet(cov)
    log_z = -0.5 * (y @ np.linalg.solve(cov, y) + logdet + n_data * np.log(2 * np.pi))
    post_sd = np.sqrt(np.diag(np.linalg.inv(x.T @ x / NOISE**2 + np.eye(dim) / PRIOR_SD**2)))
    return x, y, float(log_z), post_sd


def blackjax_runs(x, y, n_particles, n_moves, step_size, n_runs, key):
    """A jitted function of ``key`` running ``n_runs`` BlackJAX adaptive tempered SMC runs."""
    target = numpyro_target(regression, jax.random.key(0), (x, y))
    log_prior = lambda u: target.log_parts(u)[0]  # noqa: E731
    log_lik = lambda u: target.log_parts(u)[1]  # noqa: E731
    smc = blackjax.adaptive_tempered_smc(log_prior, log_lik, blackjax.mala.build_kernel(), blackjax.mala.init,
                                         extend_params({"step_size": step_size}), resampling.systematic,
                                         target_ess=0.5, num_mcmc_steps=n_moves)

    def one(k):
        k_init, k_loop = jax.random.split(k)
        state = smc.init(target.sample_prior(k_init, n_particles))

        def body(carry):
            state, log_z, i = carry
            state, info = smc.step(jax.random.fold_in(k_loop, i), state)
            return state, log_z + info.log_likelihood_increment, i + 1

        state, log_z, steps = lax.while_loop(lambda c: c[0].tempering_param < 1.0, body,
                                             (state, jnp.zeros(()), jnp.int32(0)))
        return log_z, 1.0 / jnp.sum(state.weights**2), steps

    return jax.jit(jax.vmap(one)), jax.random.split(key, n_runs)


def smcflow_runs(x, y, n_particles, n_moves, n_runs):
    """A function of ``key`` running ``n_runs`` smcflow runs (the public call)."""

    def call(key):
        smc = smcflow.infer.SMC(regression, n_particles=n_particles, kernel="mala", n_moves=n_moves,
                                n_runs=n_runs).run(key, x, y)
        w = np.exp(np.asarray(smc.log_weights, np.float64))
        return np.asarray(smc.log_evidence), 1.0 / np.sum(w**2, axis=1), smc.schedule.exponents.size

    return call


def measure(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=5)
    ap.add_argument("--n-data", type=int, default=100)
    ap.add_argument("--n-moves", type=int, default=5)
    ap.add_argument("--n-runs", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_particles, args.n_runs, args.repeats, args.n_data = 200, 4, 1, 30
    out = args.out if args.out is not None else (None if args.quick else REPO_ROOT / "docs" / "benchmarks.md")
    x, y, log_z, post_sd = problem(args.n_data, args.dim)
    step = 0.5 * args.dim ** (-1 / 3)
    rows = []

    call = smcflow_runs(x, y, args.n_particles, args.n_moves, args.n_runs)
    start = time.perf_counter()
    call(jax.random.key(1))
    first = time.perf_counter() - start
    t_sf, (lz, ess, k) = measure(lambda: call(jax.random.key(2)), args.repeats)
    rows.append(("smcflow.infer.SMC (public call, warm)", t_sf / args.n_runs, first, lz, ess, k))

    fn, keys = blackjax_runs(x, y, args.n_particles, args.n_moves, float(step * np.mean(post_sd)), args.n_runs,
                             jax.random.key(3))
    start = time.perf_counter()
    jax.block_until_ready(fn(keys))
    first = time.perf_counter() - start
    t_bj, (lz_b, ess_b, k_b) = measure(lambda: fn(keys), args.repeats)
    rows.append(("blackjax.adaptive_tempered_smc (warm)", t_bj / args.n_runs, first, np.asarray(lz_b),
                 np.asarray(ess_b), float(np.mean(k_b)) + 1))

    info = machine_info()
    lines = [
        "## Adaptive tempered SMC on a numpyro model (smcflow.infer vs BlackJAX)",
        "",
        f"*Generated by `benchmarks/bench_tempering.py`; command: `python benchmarks/bench_tempering.py "
        f"{shlex.join(argv if argv is not None else sys.argv[1:])}`.*",
        "",
        f"- Machine: {info['nproc']} CPU(s), {info['cpu']}; load average at the end: {info['load']} "
        "(shared with other jobs: compare rows of this table only).",
        f"- Versions: {info['versions']}, blackjax {blackjax.__version__}.",
        f"- Target: linear regression, d = {args.dim}, {args.n_data} observations, exact log Z = {log_z:.4f}; "
        f"N = {args.n_particles}, MALA x {args.n_moves} per step, target conditional ESS 0.5, systematic "
        f"resampling every step; {args.n_runs} runs (vmapped), median of {args.repeats} repeats.",
        "",
        "| entry | time / run | first call | stages | mean log Ẑ − log Z | RMSE | final ESS | ESS / s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t, first, lz, ess, k in rows:
        err = np.asarray(lz, np.float64) - log_z
        lines.append(f"| {name} | {t * 1e3:.1f} ms | {first:.1f} s | {float(np.mean(k)):.1f} | "
                     f"{err.mean():+.3f} ± {err.std(ddof=1) / np.sqrt(err.size):.3f} | "
                     f"{np.sqrt(np.mean(err**2)):.3f} | {np.mean(ess):.0f} | {np.mean(ess) / t:.0f} |")
    lines += [
        "",
        "Both rows are warm calls (the first call, which compiles, is shown separately); the smcflow row is",
        "the whole public call, host-side checks and the transfer of results included. Stages count the",
        "prior stage. smcflow whitens its moves by the particles' standard deviations at every stage;",
        "BlackJAX keeps one step size for the whole run, so its early moves (prior scale 1.5) are small.",
    ]
    body = "\n".join(lines)
    print(body)
    if out is not None:
        write_section(out, body, SECTION)


if __name__ == "__main__":
    main()
