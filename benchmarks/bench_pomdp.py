"""Pairwise belief distances: smcflow-pomdp's metrics side by side with POT and ott-jax.

Two workloads, the sizes of the issue:

* **particle beliefs**: 200 beliefs of 128 weighted particles, all 200 x 200 pairs. 1-D particles
  (LightDark-like) for ``w1``/``w2`` by the sorted closed form against POT's ``wasserstein_1d``; 2-D
  particles for ``sinkhorn`` (p = 2, squared Euclidean cost) against ott-jax (``Sinkhorn``, log
  domain, the same pairs mapped in the same chunks) and POT (``sinkhorn2``, ``method="sinkhorn_log"``,
  a Python loop, so timed on a subset of pairs and reported per pair), for ``mmd`` (no peer), and
  exact ``w2`` (host LP) against POT's network simplex ``emd2`` on a subset of pairs;
* **discrete beliefs**: 1,000 beliefs over 64 states, all 10^6 pairs for ``tv``, ``hilbert`` and
  ``mmd``; ``sinkhorn`` and exact ``w1`` with the line cost ``|i - j|`` on subsets, against the same
  peers.

Same inputs and the same tolerance number for every Sinkhorn (each library's own stopping rule:
smcflow and ott-jax the L1 marginal error, POT the L2 one); agreement is the largest absolute
difference from the reference named in the table. Timing: median of warm calls (JAX results blocked
on), the first call (compilation) reported apart. Writes its section of docs/benchmarks.md, with the
machine load. Run it once; ``--quick`` for a smoke run that writes nothing.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from bench_bootstrap import machine_info, write_section  # noqa: E402
from smcflow_pomdp import MMD, TV, Hilbert, Sinkhorn, w1, w2  # noqa: E402

SECTION = "bench_pomdp"


def timed(fn, reps):
    """``(median warm seconds, first-call seconds, result)``."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return float(np.median(times)) if times else first, first, out


def fmt_time(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def particle_beliefs(rng, n_beliefs, n_particles, dim):
    centres = rng.normal(size=(n_beliefs, 1, dim))
    x = centres + 0.5 * rng.normal(size=(n_beliefs, n_particles, dim))
    log_w = np.log(rng.dirichlet(np.ones(n_particles), size=n_beliefs))
    return x.astype(np.float32), log_w.astype(np.float32)


def ott_pairwise(X, LW, Y, LV, epsilon, tol, max_iter, chunk):
    """ott-jax Sinkhorn (log domain) on every pair, mapped over pairs in chunks: ``<P, C>``."""
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    solver = sinkhorn.Sinkhorn(lse_mode=True, threshold=tol, max_iterations=max_iter)

    def one(args):
        x, lw, y, lv = args
        geom = pointcloud.PointCloud(x, y, epsilon=epsilon)  # squared Euclidean cost
        out = solver(linear_problem.LinearProblem(geom, a=jnp.exp(lw), b=jnp.exp(lv)))
        return jnp.sum(out.matrix * geom.cost_matrix)

    n1, n2 = X.shape[0], Y.shape[0]
    i, j = jnp.repeat(jnp.arange(n1), n2), jnp.tile(jnp.arange(n2), n1)
    run = jax.jit(lambda X, LW, Y, LV: jax.lax.map(lambda ij: one((X[ij[0]], LW[ij[0]], Y[ij[1]], LV[ij[1]])),
                                                   (i, j), batch_size=chunk).reshape(n1, n2))
    return lambda: run(X, LW, Y, LV)


def pot_sinkhorn_pairs(pairs, weights, cost_fn, epsilon, tol, max_iter, n_pairs):
    """POT's log-domain Sinkhorn ``<P, C>`` on the listed pairs, and its time scaled to ``n_pairs``."""
    import ot

    t = time.perf_counter()
    values = np.array([ot.sinkhorn2(weights[i], weights[j], cost_fn(i, j), epsilon, method="sinkhorn_log",
                                    stopThr=tol, numItermax=max_iter) for i, j in pairs])
    return values, (time.perf_counter() - t) * n_pairs / len(pairs)


def add_sinkhorn_rows(add, workload, label, n_pairs, mine, theirs, pairs, pot):
    """Rows for smcflow, ott-jax (each ``(median, first, distances (n, n))``) and POT ``(values, time)``."""
    at = tuple(np.array(pairs).T)
    (med, first, D), (med_ott, first_ott, D_ott), (ref, pot_time) = mine, theirs, pot
    add(workload, "sinkhorn", label, n_pairs, med, first,
        f"max abs Δ vs ott {np.abs(D - D_ott).max():.1e}, vs POT {np.abs(D[at] - ref).max():.1e}")
    add(workload, "sinkhorn", "ott-jax Sinkhorn (lse_mode)", n_pairs, med_ott, first_ott,
        f"max abs Δ vs POT {np.abs(D_ott[at] - ref).max():.1e}")
    add(workload, "sinkhorn", f"POT sinkhorn_log (loop; {len(pairs)} pairs, scaled)", n_pairs, pot_time, pot_time,
        "reference")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, write nothing")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)
    import ot  # noqa: F401  (fail early if a peer is missing)
    import ott  # noqa: F401

    quick = args.quick
    rng = np.random.default_rng(20261201)
    n_b, n_p = (20, 32) if quick else (200, 128)
    n_d, n_s = (50, 64) if quick else (1000, 64)
    n_sink = 10 if quick else 64  # Sinkhorn on the first n_sink x n_sink pairs of each workload
    n_pot, n_lp = (10, 10) if quick else (50, 50)  # POT's Python loops and the host LPs: subsets of pairs
    eps, tol, max_iter = 0.5, 1e-3, 2000
    eps_d = 0.05  # discrete: the line cost |i - j| / (S - 1) lies in [0, 1]
    rows = []  # (workload, metric, implementation, pairs, time, first, pairs/s, agreement)
    started = time.perf_counter()

    def add(workload, metric, impl, pairs, median, first, agreement):
        rows.append((workload, metric, impl, pairs, median, first, pairs / median, agreement))
        print(f"{workload:10s} {metric:10s} {impl:34s} {pairs:>8d} pairs {fmt_time(median):>10s} "
              f"(first {fmt_time(first)}) {agreement}", flush=True)

    # ---------------- particle beliefs, 1-D: w1, w2 by the sorted closed form vs POT
    X1, LW1 = particle_beliefs(rng, n_b, n_p, 1)
    W1 = np.exp(LW1.astype(np.float64))
    wl = f"{n_b}x{n_p} 1-D"
    for name, metric, p in (("w1", w1(), 1), ("w2", w2(), 2)):
        med, first, D = timed(lambda m=metric: m.pairwise((X1[..., 0], LW1)), args.reps)
        i, j = np.repeat(np.arange(n_b), n_b), np.tile(np.arange(n_b), n_b)
        xs, ws = X1[..., 0].astype(np.float64), W1
        t = time.perf_counter()
        ref = ot.wasserstein_1d(xs[i].T, xs[j].T, ws[i].T, ws[j].T, p=p) ** (1 / p)
        pot_time = time.perf_counter() - t
        add(wl, name, "smcflow (sorted closed form)", n_b * n_b, med, first,
            f"max abs Δ vs POT {np.abs(np.asarray(D).ravel() - ref).max():.1e}")
        add(wl, name, "POT wasserstein_1d (batched)", n_b * n_b, pot_time, pot_time, "reference")

    # ---------------- particle beliefs, 2-D
    X2, LW2 = particle_beliefs(rng, n_b, n_p, 2)
    W2 = np.exp(LW2.astype(np.float64))
    wl = f"{n_b}x{n_p} 2-D"
    sink = Sinkhorn(epsilon=eps, p=2, tol=tol, max_iter=max_iter)
    Xs, LWs = X2[:n_sink], LW2[:n_sink]
    med, first, D = timed(lambda: sink.pairwise((Xs, LWs)), args.reps)
    mine = (med, first, np.asarray(D, np.float64) ** 2)  # the metric returns <P, C>^(1/2)
    chunk = max(1, (1 << 22) // (n_p * n_p))  # the chunk smcflow uses
    ott_fn = ott_pairwise(jnp.asarray(Xs), jnp.asarray(LWs), jnp.asarray(Xs), jnp.asarray(LWs), eps, tol, max_iter, chunk)
    med_ott, first_ott, D_ott = timed(ott_fn, args.reps)
    sink_pairs = [(int(a), int(b)) for a, b in zip(rng.integers(0, n_sink, n_pot), rng.integers(0, n_sink, n_pot))]
    cost = lambda a, b: ot.dist(X2[a].astype(np.float64), X2[b].astype(np.float64))  # noqa: E731
    pot = pot_sinkhorn_pairs(sink_pairs, W2, cost, eps, tol, max_iter, n_sink * n_sink)
    add_sinkhorn_rows(add, wl, f"smcflow (ε={eps}, tol={tol:g})", n_sink * n_sink, mine,
                      (med_ott, first_ott, np.asarray(D_ott)), sink_pairs, pot)
    pairs = [(int(a), int(b)) for a, b in zip(rng.integers(0, n_b, n_lp), rng.integers(0, n_b, n_lp))]
    mmd = MMD(bandwidth=1.0)
    med, first, D = timed(lambda: mmd.pairwise((X2, LW2)), args.reps)
    # reference: the weighted V-statistic in float64 on a few pairs
    k = lambda a, b: np.exp(-ot.dist(X2[a].astype(np.float64), X2[b].astype(np.float64)) / 2)  # noqa: E731
    ref = np.array([np.sqrt(max(W2[a] @ k(a, a) @ W2[a] + W2[b] @ k(b, b) @ W2[b] - 2 * W2[a] @ k(a, b) @ W2[b], 0))
                    for a, b in pairs])
    add(wl, "mmd", "smcflow (bandwidth 1)", n_b * n_b, med, first,
        f"max abs Δ vs float64 NumPy on {n_lp} pairs {np.abs(np.asarray(D)[tuple(np.array(pairs).T)] - ref).max():.1e}")
    sub = pairs
    exact = w2()
    Xa, LWa = X2[[a for a, _ in sub]], LW2[[a for a, _ in sub]]
    Xb, LWb = X2[[b for _, b in sub]], LW2[[b for _, b in sub]]
    med, first, D = timed(lambda: exact.paired((Xa, LWa), (Xb, LWb)), 1)
    t = time.perf_counter()
    ref = np.array([np.sqrt(ot.emd2(W2[a], W2[b], cost(a, b))) for a, b in sub])
    pot_time = time.perf_counter() - t
    add(wl, "w2 (exact)", "smcflow (exact LP, solver=auto: POT in a pure_callback)", n_lp, med, first,
        f"max abs Δ vs POT {np.abs(np.asarray(D) - ref).max():.1e}")
    add(wl, "w2 (exact)", "POT emd2 (network simplex, loop)", n_lp, pot_time, pot_time, "reference")

    # ---------------- discrete beliefs
    P = rng.dirichlet(np.full(n_s, 0.5), size=n_d).astype(np.float32)
    P = np.maximum(P, 1e-6)
    P /= P.sum(1, keepdims=True)  # full support, for hilbert
    wl = f"{n_d}x{n_s} discrete"
    P64 = P.astype(np.float64)
    for name, metric, reference in (
            ("tv", TV(), lambda: 0.5 * np.abs(P64[:, None] - P64[None]).sum(-1)),
            ("hilbert", Hilbert(), lambda: (np.log(P64)[:, None] - np.log(P64)[None]).max(-1)
             - (np.log(P64)[:, None] - np.log(P64)[None]).min(-1)),
            ("mmd", MMD(bandwidth=1.0), lambda: np.sqrt(1 - np.exp(-1.0)) * np.linalg.norm(P64[:, None] - P64[None], axis=-1))):
        med, first, D = timed(lambda m=metric: m.pairwise(P), args.reps)
        t = time.perf_counter()
        ref = reference()
        np_time = time.perf_counter() - t
        add(wl, name, "smcflow", n_d * n_d, med, first,
            f"max abs Δ vs float64 NumPy {np.abs(np.asarray(D, np.float64) - ref).max():.1e}")
        add(wl, name, "NumPy float64 broadcast", n_d * n_d, np_time, np_time, "reference")
    line = np.abs(np.arange(n_s)[:, None] - np.arange(n_s)[None]).astype(np.float64) / (n_s - 1)
    n_sub = n_sink
    sink = Sinkhorn(epsilon=eps_d, p=1, cost=line, tol=tol, max_iter=max_iter)
    Ps = P[:n_sub]
    med, first, D = timed(lambda: sink.pairwise(Ps), args.reps)
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn

    solver = ott_sinkhorn.Sinkhorn(lse_mode=True, threshold=tol, max_iterations=max_iter)
    C = jnp.asarray(line, jnp.float32)

    def ott_one(ab):
        geom = geometry.Geometry(cost_matrix=C, epsilon=eps_d)
        out = solver(linear_problem.LinearProblem(geom, a=ab[0], b=ab[1]))
        return jnp.sum(out.matrix * C)

    i, j = np.repeat(np.arange(n_sub), n_sub), np.tile(np.arange(n_sub), n_sub)
    run = jax.jit(lambda A, B: jax.lax.map(ott_one, (A, B), batch_size=1024))
    Ai, Bj = jnp.asarray(Ps[i]), jnp.asarray(Ps[j])
    med_ott, first_ott, D_ott = timed(lambda: run(Ai, Bj), args.reps)
    sub = [(int(a), int(b)) for a, b in zip(rng.integers(0, n_sub, n_pot), rng.integers(0, n_sub, n_pot))]
    pot = pot_sinkhorn_pairs(sub, P64, lambda a, b: line, eps_d, tol, max_iter, n_sub * n_sub)
    add_sinkhorn_rows(add, wl, f"smcflow (line cost, ε={eps_d}, tol={tol:g})", n_sub * n_sub,
                      (med, first, np.asarray(D, np.float64)),
                      (med_ott, first_ott, np.asarray(D_ott).reshape(n_sub, n_sub)), sub, pot)
    exact = w1(cost=line)
    lp = [(int(a), int(b)) for a, b in zip(rng.integers(0, n_d, n_lp), rng.integers(0, n_d, n_lp))]
    Pa, Pb = P[[a for a, _ in lp]], P[[b for _, b in lp]]
    med, first, D = timed(lambda: exact.paired(Pa, Pb), 1)
    t = time.perf_counter()
    ref = np.array([ot.emd2(P64[a], P64[b], line) for a, b in lp])
    pot_time = time.perf_counter() - t
    add(wl, "w1 (exact)", "smcflow (exact LP, solver=auto: POT in a pure_callback)", len(lp), med, first,
        f"max abs Δ vs POT {np.abs(np.asarray(D) - ref).max():.1e}")
    add(wl, "w1 (exact)", "POT emd2 (network simplex, loop)", len(lp), pot_time, pot_time, "reference")

    total = time.perf_counter() - started
    if quick:
        return
    info = machine_info()
    lines = [
        "## POMDP belief metrics: pairwise distances (smcflow-pomdp vs POT and ott-jax)",
        "",
        f"*Generated by `benchmarks/bench_pomdp.py` on {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC.*",
        "",
        f"- Machine: {info['nproc']} CPU(s), {info['cpu']}; load average at the end of the run: {info['load']} "
        "(the cores were shared with other jobs: compare rows of one run, not across runs).",
        f"- Software: jax {jax.__version__}, POT {ot.__version__}, ott-jax {ott.__version__}.",
        "- Inputs: particle beliefs = 128 particles around a N(0, I) centre with spread 0.5 and Dirichlet(1) "
        "weights; discrete beliefs = Dirichlet(0.5) over 64 states, floored at 1e-6 (full support). "
        f"Sinkhorn: tolerance {tol:g}, at most {max_iter} iterations, log domain everywhere, on the first "
        f"{n_sink} beliefs of each workload (all {n_sink}² pairs); 2-D particles: ε = {eps}, squared Euclidean cost "
        "(p = 2; smcflow's value is squared back to <P, C> for the comparison); discrete: ε = "
        f"{eps_d}, cost |i − j| / {n_s - 1}. Exact OT (LPs) on {n_lp} random pairs.",
        "- Time: median of warm calls (first call, with compilation, apart). POT's Sinkhorn and exact solvers "
        "are Python loops over pairs: timed on the stated subset and scaled to all pairs. Agreement: largest "
        "absolute difference of the distances.",
        f"- Whole run: {total:.0f} s. Reproduce: `python benchmarks/bench_pomdp.py`.",
        "",
        "| workload | metric | implementation | pairs | time | first call | pairs/s | agreement |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for w, m, impl, n, med, first, rate, agree in rows:
        lines.append(f"| {w} | {m} | {impl} | {n:,} | {fmt_time(med)} | {fmt_time(first)} | {rate:,.0f} | {agree} |")
    write_section(REPO_ROOT / "docs" / "benchmarks.md", "\n".join(lines) + "\n", SECTION)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
