#!/usr/bin/env python
"""What the progress bar costs: the bootstrap filter of ``bench_bootstrap.py`` through the
public ``smcflow.run`` with ``progress=True`` and without, interleaved in one process.

With the bar, the compiled scan calls back to the host every ``progress.updates_every(T)`` steps
(``smcflow/progress.py``: four callbacks for T = 100, ten for T = 1000). A third variant fires the
callback at every step (the throttle lifted through ``progress.UPDATES`` and
``progress.MIN_STEPS_PER_UPDATE``), which separates what it costs to have a callback in the program
from what each call costs; long runs (T >= 1000) skip it and spend their time on more pairs instead,
since a long run's paired differences are the noisiest. Their cost is also predicted from the
shortest run at the same N as if it were a cost per run. Target: under 2% at N = 1e5.
Writes the section ``bench_progress`` of ``docs/benchmarks.md`` unless ``--no-write``.

Usage: python benchmarks/bench_progress.py [--cases 100x1e4,1000x1e5] [--repeats 121] [--no-write]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench_bootstrap import (  # noqa: E402
    ESS_FRACTION,
    bootstrap_model,
    machine_info,
    simulate_observations,
    write_section,
)

import smcflow  # noqa: E402
import smcflow.progress as progress  # noqa: E402

SECTION = "bench_progress"
DESCRIPTION = (
    "`smcflow.run(..., progress=True)` against the same call without it (argument-free host callbacks, "
    "about ten per run but at most one per 25 steps; bar output discarded), pairs of neighbouring calls "
    "in alternating order. The extra time is the median of the paired differences, with a "
    "distribution-free 95% interval for that median; a negative extra means the runs with the bar were "
    "the faster ones (a program holding a host callback also executes by another path: synchronously, in "
    "the calling thread). The last three columns lift the throttle (a callback at every step; not timed "
    "for T >= 1000, whose pairs are the noisiest and get the time instead) and split the bar's cost into "
    "what each call costs, (every step - extra) / (T - 1 - updates) (a run of T observations takes T - 1 "
    "steps), and what remains with no call at all, extra - updates x per call: the price of a program that "
    "holds a host callback. Target: under 2% at N = 1e5."
)


class Row(NamedTuple):
    """One case: T observations, N particles, bar updates, pairs timed, medians of the off and on calls,
    median paired extra with its 95% interval (seconds), and the every-step variant's median extra
    (None for a long run, which does not time it)."""

    n_times: int
    n: int
    updates: int
    pairs: int
    off: float
    on: float
    extra: float
    low: float
    high: float
    every_step_extra: float | None


@contextlib.contextmanager
def throttle(every_step: bool):
    """Fire the progress callback at every step while inside (``every_step``), else leave the throttle."""
    saved = progress.UPDATES, progress.MIN_STEPS_PER_UPDATE
    if every_step:
        progress.UPDATES, progress.MIN_STEPS_PER_UPDATE = sys.maxsize, 1
    try:
        yield
    finally:
        progress.UPDATES, progress.MIN_STEPS_PER_UPDATE = saved


def build(ys: np.ndarray, with_bar: bool, every_step: bool = False):
    model = bootstrap_model(ys)

    def call(seed: int, n: int) -> float:
        # the bar's output is discarded, not timed
        with contextlib.redirect_stderr(io.StringIO()), throttle(every_step):
            start = time.perf_counter()
            jax.block_until_ready(smcflow.run(model, jax.random.key(seed), n, ess_threshold=ESS_FRACTION,
                                              progress=with_bar).log_evidence)
            return time.perf_counter() - start

    return call


def median_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median of ``x``: the order statistics ``x_(j)``, ``x_(n-j+1)``
    with ``j`` the largest index whose binomial(n, 1/2) tail stays below ``(1 - level) / 2``."""
    from scipy.stats import binom

    xs, n = np.sort(x), len(x)
    j = max(int(binom.ppf((1 - level) / 2, n, 0.5)) - 1, 0)
    return float(xs[j]), float(xs[n - 1 - j])


def split_cost(n_times: int, updates: int, extra: float, every_step_extra: float) -> tuple[float, float]:
    """(per call, no call): the cost of one callback, (every step - throttled) / (calls saved), and what
    the throttled bar costs beyond its calls. A run of ``n_times`` observations takes ``n_times - 1`` steps."""
    per_call = (every_step_extra - extra) / (n_times - 1 - updates)
    return per_call, extra - updates * per_call


def _split_cells(row: Row) -> str:
    """The table's last three cells; dashes for a long run, which does not time the every-step variant."""
    if row.every_step_extra is None:
        return "– | – | – |"
    per_call, no_call = split_cost(row.n_times, row.updates, row.extra, row.every_step_extra)
    return f"{row.every_step_extra * 1e3:.2f} ms | {per_call * 1e3:.3f} ms | {no_call * 1e3:.2f} ms |"


def _cases(text: str) -> list[tuple[int, int]]:
    """``"100x1e4,1000x1e5"`` -> [(100, 10000), (1000, 100000)] (steps x particles)."""
    return [(int(t), int(float(n))) for t, n in (case.split("x") for case in text.split(","))]


def predictions(rows: list[Row]) -> list[str]:
    """For each longer run, what its cost would be if the bar cost a fixed amount per run: the shortest
    run's paired extra at the same N (measured far more precisely than a long run's) plus per call for
    the extra calls; the long run's own measurement beside it shows how far that holds."""
    lines = []
    for row in rows:
        shorter = [r for r in rows if r.n == row.n and r.n_times < row.n_times and r.every_step_extra is not None]
        if shorter:
            base = min(shorter)
            per_call, _ = split_cost(base.n_times, base.updates, base.extra, base.every_step_extra)
            cost = base.extra + (row.updates - base.updates) * max(per_call, 0.0)
            lines.append(f"At T = {row.n_times}, N = {row.n:.0e}, a cost per run (from the T = {base.n_times} row) "
                         f"would be {cost * 1e3:.2f} ms ({cost / row.off:+.2%} of the run); measured "
                         f"{row.extra * 1e3:.2f} ms (interval {row.low * 1e3:.2f} to {row.high * 1e3:.2f} ms).")
    return lines


def verdict(row: Row) -> str:
    """Whether the 2% target is shown at this case: the upper end of the interval under 2% of the run."""
    head = f"Target at T = {row.n_times}, N = {row.n:.0e}: median {row.extra / row.off:+.1%}, "
    if row.high / row.off < 0.02:
        return head + "met (the interval's upper end is under 2% of the run)."
    return head + f"**not shown** (the interval reaches {row.high / row.off:+.1%} of the run)."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=_cases, default=_cases("100x1e3,100x1e4,1000x1e4,100x1e5,1000x1e5"),
                   help="steps x particles, comma separated")
    p.add_argument("--repeats", type=int, default=121, help="pairs per case (half of them for T >= 1000)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for n_steps, n in args.cases:
        ys = simulate_observations(n_times=n_steps)
        long_run = n_steps >= 1000
        calls = {"off": build(ys, False), "on": build(ys, True)}
        if not long_run:
            calls["every"] = build(ys, True, every_step=True)
        for call in calls.values():
            call(0, n)  # compile
        times = {k: [] for k in calls}
        for r in range(max(args.repeats // 2, 9) if long_run else args.repeats):  # >= 9: a 95% interval
            for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):  # alternate, so drift cancels
                times[k].append(calls[k](r + 1, n))
        off, on = np.asarray(times["off"]), np.asarray(times["on"])
        extra = on - off  # paired: neighbouring calls share the machine's load
        low, high = median_interval(extra)
        every_extra = None if long_run else np.median(np.asarray(times["every"]) - off)
        updates = -(-(n_steps - 1) // progress.updates_every(n_steps - 1, True))  # T - 1 steps
        rows.append(Row(n_steps, n, updates, len(extra), np.median(off), np.median(on), np.median(extra), low, high,
                        every_extra))
        print(f"T={n_steps} N={n:.0e} ({updates} updates): median off {np.median(off) * 1e3:.1f} ms, on "
              f"{np.median(on) * 1e3:.1f} ms; paired extra {np.median(extra) * 1e3:.2f} ms (95% interval "
              f"{low * 1e3:.2f} to {high * 1e3:.2f}), {np.median(extra) / np.median(off):+.1%} of the run"
              + ("" if long_run else f"; a callback every step: {every_extra * 1e3:.2f} ms"))
    info = machine_info()
    body = [
        "## Cost of the progress bar (bootstrap filter)",
        "",
        f"*Generated by `benchmarks/bench_progress.py`; {info['cpu']}, {info['nproc']} CPU(s), load average "
        f"{info['load']}.*",
        "",
        DESCRIPTION,
        "",
        "| T | N | updates | pairs | off (median) | on (median) | extra (median of pairs) | 95% interval | "
        "extra / off | extra, a callback every step | per call | no call |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r.n_times} | {r.n:.0e} | {r.updates} | {r.pairs} | {r.off * 1e3:.1f} ms | {r.on * 1e3:.1f} ms | "
          f"{r.extra * 1e3:.2f} ms | {r.low * 1e3:.2f} to {r.high * 1e3:.2f} ms | {r.extra / r.off:+.1%} | "
          + _split_cells(r) for r in rows],
        "",
        *[verdict(r) for r in rows if r.n == 100_000],
        *predictions(rows),
    ]
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "\n".join(body), SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
