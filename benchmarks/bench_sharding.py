#!/usr/bin/env python
"""Sharded particles: global vs island resampling (without and with island exchanges) over 1, 2, 4, 8
forced host devices, and N = 1e6, 1e7 on one CPU with time and peak memory.

Each configuration runs in a fresh process (XLA fixes the host device count at start-up) that times the
1-D linear-Gaussian bootstrap filter of ``bench_bootstrap.py`` (T = 100) through the public
``smcflow.run`` after one compiling call (median of ``--repeats``), and reports its peak resident
memory (``ru_maxrss``). Forced host devices share this machine's cores, so the device table measures
the relative cost of the two scopes' communication, not a speed-up. Writes the section
``bench_sharding`` of ``docs/benchmarks.md`` unless ``--no-write``.

Also writes ``bench_sharding_rows``: how many distinct rows global resampling has to move between
devices, against the fixed packet of ``smcflow.sharding.gather_needed``.

Usage: python benchmarks/bench_sharding.py [--devices 1,2,4,8] [--n 65536] [--big 1e6,1e7]
       [--chunks 8] [--exchange-every 10] [--repeats 3] [--rows-only] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {bench!r})
import jax, numpy as np
from jax.sharding import Mesh
import smcflow
from bench_bootstrap import ESS_FRACTION, bootstrap_model, simulate_observations
model = bootstrap_model(simulate_observations(n_times=100))
cfg = json.loads({cfg!r})
mesh = Mesh(np.array(jax.devices()), ("particles",)) if cfg["devices"] > 1 else None
kwargs = dict(ess_threshold=ESS_FRACTION, chunk_size=cfg.get("chunk"))
if mesh is not None:
    kwargs.update(mesh=mesh, scope=cfg["scope"], island_exchange=cfg.get("exchange"))
def call(seed):
    start = time.perf_counter()
    jax.block_until_ready(smcflow.run(model, jax.random.key(seed), cfg["n"], **kwargs).log_evidence)
    return time.perf_counter() - start
call(0)
times = [call(s + 1) for s in range(cfg["repeats"])]
print(json.dumps({{"median_s": float(np.median(times)),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(cfg: dict) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={cfg['devices']}",
           "JAX_PLATFORMS": "cpu"}
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), cfg=json.dumps(cfg))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


ROWS_SECTION = "bench_sharding_rows"


def rows_exchanged(n: int, device_counts: list[int]) -> list[tuple]:
    """How many distinct rows global resampling must move between devices: one single-device run of the
    bootstrap filter with its genealogy kept (the ancestors do not depend on the device count), and
    for each resampling and device count the largest number of distinct rows one device needs from
    another, against the packet size ``exchange_capacity`` of ``smcflow.sharding.gather_needed``."""
    import jax
    import numpy as np

    import smcflow
    from bench_bootstrap import ESS_FRACTION, bootstrap_model, simulate_observations
    from smcflow.sharding import exchange_capacity

    model = bootstrap_model(simulate_observations(n_times=100))
    res = smcflow.run(model, jax.random.key(1), n, ess_threshold=ESS_FRACTION, keep_ancestors=True)
    ancestors = np.asarray(res.ancestors)[np.asarray(res.resampled)]
    out = []
    for d in device_counts:
        n_local = n // d
        target = np.arange(n) // n_local  # the device each position lives on

        def busiest_pair(a: np.ndarray) -> int:
            source = a // n_local
            return max(len(np.unique(a[(target == t) & (source == s)])) for t in range(d) for s in range(d) if s != t)

        worst = np.array([busiest_pair(a) for a in ancestors])
        cap = exchange_capacity(n_local, d)
        out.append((d, len(worst), int(np.median(worst)), int(worst.max()), cap, float(np.mean(worst > cap))))
    return out


def main(argv=None) -> int:
    from bench_bootstrap import machine_info, write_section

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--n", type=int, default=65536)
    p.add_argument("--big", default="1e6,1e7")
    p.add_argument("--chunks", type=int, default=8, help="chunked runs use chunk_size = N / chunks")
    p.add_argument("--exchange-every", type=int, default=10, help="island_exchange of the exchanging islands' rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows-only", action="store_true", help="only the rows-exchanged table (one process, quick)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    rows_table = rows_exchanged(args.n, [d for d in (int(v) for v in args.devices.split(",")) if d > 1])
    for d, k, med, worst, cap, over in rows_table:
        print(f"devices={d}: {k} resamplings, busiest pair median {med} rows, max {worst}; packet {cap}; "
              f"fallback {over:.0%}", flush=True)
    rows_body = [
        "## Global resampling: rows moved between devices",
        "",
        f"*Generated by `benchmarks/bench_sharding.py` (`--rows-only` for this table alone).* The bootstrap filter "
        f"of the table above (N = {args.n}, T = 100), one run: at each resampling, the largest number of distinct "
        "rows one device needs from another, against the packet `smcflow.sharding.gather_needed` sends "
        "(⌈n/D⌉ rows); more than a packet holds means the all-gather fallback.",
        "",
        "| devices | resamplings | busiest pair (median) | busiest pair (max) | packet | fallback |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {d} | {k} | {med} rows ({med / (args.n // d):.1%} of n) | {worst} rows | {cap} rows | {over:.0%} |"
          for d, k, med, worst, cap, over in rows_table],
    ]
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "\n".join(rows_body), ROWS_SECTION)
    if args.rows_only:
        return 0
    rows = []
    for d in [int(v) for v in args.devices.split(",")]:
        for scope, every in (((("global", None),) if d == 1 else
                              (("global", None), ("island", None), ("island", args.exchange_every)))):
            r = measure({"devices": d, "scope": scope, "n": args.n, "repeats": args.repeats, "exchange": every})
            label = scope if every is None else f"island, exchange every {every}"
            rows.append((d, label, r))
            print(f"devices={d} {label}: {r['median_s'] * 1e3:.1f} ms, peak {r['peak_mib']:.0f} MiB", flush=True)
    big = []
    for n in [int(float(v)) for v in args.big.split(",") if v]:
        for chunk in (None, n // args.chunks):
            r = measure({"devices": 1, "scope": "global", "n": n, "repeats": 1, "chunk": chunk})
            big.append((n, chunk, r))
            print(f"N={n:.0e} chunk={chunk}: {r['median_s']:.2f} s, peak {r['peak_mib']:.0f} MiB", flush=True)
    info = machine_info()
    one = next(r["median_s"] for d, s, r in rows if d == 1)
    body = [
        "## Sharded particles: global vs island resampling; 10⁶ and 10⁷ particles on one CPU",
        "",
        f"*Generated by `benchmarks/bench_sharding.py`; {info['cpu']}, {info['nproc']} CPU(s), load average "
        f"{info['load']}. Forced host devices share these cores: read the ratios between scopes, not a speed-up.*",
        "",
        f"Bootstrap filter (1-D linear Gaussian, T = 100), N = {args.n}, median of {args.repeats} calls after "
        "compilation, each configuration in a fresh process.",
        "",
        "| devices | scope | time | vs 1 device | peak memory |",
        "|---:|---|---:|---:|---:|",
        *[f"| {d} | {s} | {r['median_s'] * 1e3:.1f} ms | {r['median_s'] / one:.2f}x | {r['peak_mib']:.0f} MiB |"
          for d, s, r in rows],
        "",
        "One CPU device, one timed call after compilation (`chunk_size` bounds the model's intermediates):",
        "",
        "| N | chunk_size | time | peak memory |",
        "|---:|---:|---:|---:|",
        *[f"| {n:.0e} | {c if c else '—'} | {r['median_s']:.2f} s | {r['peak_mib']:.0f} MiB |" for n, c, r in big],
    ]
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "\n".join(body), "bench_sharding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
