#!/usr/bin/env python
"""What float32-safe resampling costs: the fixed-point CDF against the float ``cumsum`` and the old guard.

XLA's parallel float32 ``cumsum`` is not monotone (a particle of weight zero can show a positive CDF
increment and then be selected). smcflow used to repair it with a second pass, a running maximum; it
now quantises the weights to fixed-point integers and takes an exact integer ``cumsum``
(``smcflow/resampling.py``). This script times, in one process and interleaved:

1. the CDF alone, from log-weights (N of them, a quarter dead, the rest log-normal), each divided by
   its last entry at the end (every consumer reads the total; XLA fuses that pass into the last level
   of the ``cumsum``, which returned bare is slower):

   * ``float32 cumsum (unsafe)``      - ``cumsum(exp(lw - max))`` divided by its last entry;
   * ``cumsum + running max (old)``   - the previous guard: the same, then ``associative_scan(maximum)``
                                        over the positive-weight positions;
   * ``fixed-point cumsum (new)``     - int32 prefix sum (``associative_scan``: exact for integers in any
                                        order) of ``q = w * 2^30 / sum w`` rounded down or up at random
                                        (a Weyl-sequence dither, no PRNG pass);

2. a whole systematic resample (``num = N``): ``unguarded`` (raw float ``cumsum``, the hand-written
   filter's resampler), ``old`` (running-max guard, the previous built-in) and ``new`` (the built-in);

3. unless ``--no-filter``, the bootstrap filter of ``bench_bootstrap.py`` (T = 100): the public
   ``smcflow.run`` with the built-in ``"systematic"``, with the old guarded resampler, with the
   unguarded one (all three differ only in the resampler), and the hand-written filter.

Writes the section ``bench_resampling_guard`` of ``docs/benchmarks.md`` unless ``--no-write``.

Usage: python benchmarks/bench_resampling_guard.py [--sizes 1e5,1e6] [--filter-sizes 1e4,1e5,1e6]
       [--repeats 30] [--filter-repeats 5] [--no-filter] [--no-write]
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from bench_bootstrap import (  # noqa: E402
    _sizes,
    build_handwritten,
    build_smcflow,
    machine_info,
    simulate_observations,
    write_section,
)
from smcflow import resampling  # noqa: E402


# ----------------------------------------------------------------------------------------------
# the CDFs compared (log-weights in, the array a scheme inverts out)
# ----------------------------------------------------------------------------------------------


def _scaled(log_weights):
    return jnp.exp(log_weights - jnp.max(log_weights))


def cdf_unsafe(log_weights):
    """Raw float ``cumsum``, normalised by its last entry (not monotone in float32)."""
    cdf = jnp.cumsum(_scaled(log_weights))
    return cdf / cdf[-1]


def cdf_old_guard(log_weights):
    """The previous smcflow CDF: raw ``cumsum``, zero-weight positions masked, then a running maximum."""
    w = _scaled(log_weights)
    cdf = lax.associative_scan(jnp.maximum, jnp.where(w > 0, jnp.cumsum(w), 0.0))
    return cdf / cdf[-1]


def cdf_fixed_point(log_weights, key=jax.random.key(0)):
    """The current smcflow CDF: integer prefix sum of the fixed-point weights (stochastically rounded),
    read as a float CDF like the other two (the schemes read it through an exact integer division)."""
    fp = resampling._fixed_point(log_weights.dtype)
    cdf = resampling._prefix_sum(resampling._quantise(key, resampling._weights(log_weights, fp), fp))
    return cdf.astype(jnp.float32) / cdf[-1].astype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# whole systematic resamplers
# ----------------------------------------------------------------------------------------------


def _ancestors(ends, num):
    ends = jnp.clip(ends, 0, num).astype(jnp.int32)
    marks = jnp.zeros(num + 1, jnp.int32).at[ends].add(1)
    return jnp.minimum(jnp.cumsum(marks[:num]), ends.shape[0] - 1)


def unguarded_systematic(key, log_weights, num):
    """Systematic ancestors from the raw float cumsum (the hand-written filter's resampler)."""
    return _ancestors(jnp.ceil(cdf_unsafe(log_weights) * num - jax.random.uniform(key)), num)


def old_systematic(key, log_weights, num):
    """The previous built-in: running-max guarded CDF, uniform clamped below 1, float slot ends."""
    one_minus = jnp.nextafter(jnp.ones((), log_weights.dtype), jnp.zeros((), log_weights.dtype))
    u = jnp.minimum(jax.random.uniform(key, (), dtype=log_weights.dtype), one_minus)
    return _ancestors(jnp.ceil(num * cdf_old_guard(log_weights) - u), num)


CDFS = {
    "float32 cumsum (unsafe)": cdf_unsafe,
    "cumsum + running max (old)": cdf_old_guard,
    "fixed-point cumsum (new)": cdf_fixed_point,
}
SYSTEMATIC = {
    "systematic, unguarded": unguarded_systematic,
    "systematic, old": old_systematic,
    "systematic, new": resampling.systematic,
}


def test_log_weights(n: int) -> jax.Array:
    rng = np.random.default_rng(0)
    lw = rng.normal(scale=2.0, size=n)
    lw[rng.random(n) < 0.25] = -np.inf
    lw = lw - np.logaddexp.reduce(lw)
    return jnp.asarray(lw, jnp.float32)


def time_kernels(sizes, repeats):
    """Median wall time (s) of each CDF and resampler at each N, entries interleaved per repeat."""
    rows = []
    for n in sizes:
        lw = test_log_weights(n)
        key = jax.random.key(0)
        fns = {name: jax.jit(f) for name, f in CDFS.items()}
        fns.update({name: jax.jit(partial(f, num=n)) for name, f in SYSTEMATIC.items()})
        args = {name: (lw,) if name in CDFS else (key, lw) for name in fns}
        for name, fn in fns.items():
            fn(*args[name]).block_until_ready()  # compile
        times = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(*args[name]).block_until_ready()
                times[name].append(time.perf_counter() - t)
        med = {name: float(np.median(v)) for name, v in times.items()}
        rows.append((n, med))
        print(f"N={n:>8}  " + "  ".join(f"{name}: {t * 1e3:.3f} ms" for name, t in med.items()), flush=True)
    return rows


def time_filter(sizes, repeats):
    """Median wall time (s) of the bootstrap filter with each resampler, entries interleaved per repeat."""
    ys = simulate_observations()
    entries = {
        "smcflow": build_smcflow(ys, "systematic"),
        "smcflow, old guard": build_smcflow(ys, old_systematic),
        "smcflow, unguarded": build_smcflow(ys, unguarded_systematic),
        "hand-written": build_handwritten(ys),
    }
    rows = []
    for n in sizes:
        times = {name: [] for name in entries}
        for fn in entries.values():
            fn(jax.random.key(0), n).block_until_ready()  # compile
        for r in range(repeats):
            for name, fn in entries.items():
                t = time.perf_counter()
                fn(jax.random.key(r + 1), n).block_until_ready()
                times[name].append(time.perf_counter() - t)
        med = {name: float(np.median(v)) for name, v in times.items()}
        rows.append((n, med))
        print(f"N={n:>8}  " + "  ".join(f"{name}: {t * 1e3:8.1f} ms" for name, t in med.items()), flush=True)
    return rows


def _ms(t: float) -> str:
    return f"{t * 1e3:.3f} ms" if t < 0.01 else f"{t * 1e3:.1f} ms"


def render(kernel_rows, filter_rows, info, elapsed, repeats, filter_repeats) -> str:
    lines = [
        "## Cost of float32-safe resampling (fixed-point CDF vs float cumsum vs the old guard)",
        "",
        f"*Generated by `benchmarks/bench_resampling_guard.py`; {info['cpu']}, {info['nproc']} CPU(s), "
        f"load average {info['load']}; {elapsed:.0f} s.*",
        "",
        "CDF from float32 log-weights (a quarter of them −∞): *unsafe* = `cumsum(exp(lw − max))` / last "
        "(not monotone); *old* = the same, then a running maximum over the positive-weight positions (the "
        "previous guard); *new* = the int32 `cumsum` of the fixed-point weights `w·2^30/Σw`, stochastically rounded "
        "(monotone and flat over zero weights by construction); each divided by its last entry, as consumers do. "
        "*systematic*: a whole resample with "
        f"num = N, slot ends and O(N) histogram included. Median of {repeats} interleaved calls.",
        "",
        "| N | float32 cumsum (unsafe) | cumsum + running max (old) | fixed point (new) | old / unsafe | new / unsafe "
        "| systematic, unguarded | systematic, old | systematic, new | new / old | new / unguarded |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in kernel_rows:
        unsafe, old, new = m["float32 cumsum (unsafe)"], m["cumsum + running max (old)"], m["fixed-point cumsum (new)"]
        su, so, sn = m["systematic, unguarded"], m["systematic, old"], m["systematic, new"]
        lines.append(f"| {n:.0e} | {_ms(unsafe)} | {_ms(old)} | {_ms(new)} | {old / unsafe:.2f}x | {new / unsafe:.2f}x "
                     f"| {_ms(su)} | {_ms(so)} | {_ms(sn)} | {sn / so:.2f}x | {sn / su:.2f}x |")
    if filter_rows:
        lines += [
            "",
            "Bootstrap filter of `bench_bootstrap.py` (T = 100, systematic resampling when ESS < N/2, "
            "threefry2x32): the public `smcflow.run` with the built-in `\"systematic\"` (fixed point), with the "
            "old guarded resampler and with the unguarded one as user resamplers, and the hand-written filter. "
            f"Median of {filter_repeats} interleaved calls.",
            "",
            "| N | smcflow (new) | smcflow, old guard | smcflow, unguarded | hand-written | new / unguarded "
            "| old / unguarded | hand / unguarded |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n, m in filter_rows:
            u = m["smcflow, unguarded"]
            lines.append(f"| {n:.0e} | {_ms(m['smcflow'])} | {_ms(m['smcflow, old guard'])} | {_ms(u)} | "
                         f"{_ms(m['hand-written'])} | {m['smcflow'] / u:.2f}x | {m['smcflow, old guard'] / u:.2f}x | "
                         f"{m['hand-written'] / u:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_sizes, default=_sizes("1e5,1e6"), help="N for the CDF and resampler timings")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--filter-sizes", type=_sizes, default=_sizes("1e4,1e5,1e6"))
    p.add_argument("--filter-repeats", type=int, default=5)
    p.add_argument("--no-filter", action="store_true", help="skip the bootstrap-filter timings")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    start = time.perf_counter()
    kernel_rows = time_kernels(args.sizes, args.repeats)
    filter_rows = [] if args.no_filter else time_filter(args.filter_sizes, args.filter_repeats)
    text = render(kernel_rows, filter_rows, machine_info(), time.perf_counter() - start, args.repeats,
                  args.filter_repeats)
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", text, section="bench_resampling_guard")
        print("# wrote section 'bench_resampling_guard' of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
