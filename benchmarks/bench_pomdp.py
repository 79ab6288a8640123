"""Pairwise belief distances: smcflow-pomdp's metrics side by side with POT and ott-jax.

Two workloads, the sizes of the issue:

* **particle beliefs**: 200 beliefs of 128 weighted particles, all 200 x 200 pairs. 1-D particles
  (LightDark-like) for ``w1``/``w2`` by the sorted closed form against POT's ``wasserstein_1d``; 2-D
  particles for ``sinkhorn`` (p = 2, squared Euclidean cost) on all 40,000 pairs against ott-jax
  (``Sinkhorn``, log domain, the same pairs mapped in chunks of the same size; its kernel mode on a
  subset) and POT (``sinkhorn2`` with ``method="sinkhorn_log"``, a Python loop: timed on a subset of
  pairs and scaled), for ``mmd`` (no peer), and exact ``w2`` (host LP) against POT's network simplex
  ``emd2`` on a subset of pairs;
* **discrete beliefs**: 1,000 beliefs over 64 states, all 10^6 pairs for ``tv``, ``hilbert``, ``mmd``
  and ``sinkhorn`` (line cost ``|i - j| / 63``); ott-jax's Sinkhorn on the first 128 beliefs (16,384
  pairs, where smcflow is timed too) and POT on a random subset; exact ``w1`` on a subset.

Same inputs, the same tolerance number and the same iteration cap for every Sinkhorn (each library's
own stopping rule), so the table also reports what each one reached: the largest L1 marginal
violation ``|P 1 - a|_1 + |P^T 1 - b|_1`` of the returned plans, measured here. Agreement: largest
absolute difference of ``<P, C>`` from POT's log-domain Sinkhorn and from exact OT (POT ``emd2``; the
entropic bias is at most ``eps log(n m)``). Timing: median of warm calls (JAX results blocked on),
the first call (compilation) reported apart. Writes its section of docs/benchmarks.md, with the
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


def violation(plan, a, b):
    """L1 marginal violation ``|P 1 - a|_1 + |P^T 1 - b|_1`` of plans ``(..., n, m)``."""
    return jnp.abs(plan.sum(-1) - a).sum(-1) + jnp.abs(plan.sum(-2) - b).sum(-1)


def ott_pairs(make_geom, A, B, I, J, tol, max_iter, chunk, lse_mode=True):
    """ott-jax Sinkhorn on the pairs ``(I[k], J[k])``, mapped in chunks: ``(<P, C>, violation)`` per pair."""
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    solver = sinkhorn.Sinkhorn(lse_mode=lse_mode, threshold=tol, max_iterations=max_iter)

    def one(ij):
        geom, a, b = make_geom(A, B, ij[0], ij[1])
        out = solver(linear_problem.LinearProblem(geom, a=a, b=b))
        return jnp.sum(out.matrix * geom.cost_matrix), violation(out.matrix, a, b)

    run = jax.jit(lambda I, J: jax.lax.map(one, (I, J), batch_size=chunk))
    return lambda: run(jnp.asarray(I), jnp.asarray(J))


def pot_pairs(pairs, weights, cost_fn, epsilon, tol, max_iter):
    """POT's log-domain Sinkhorn and exact EMD on the listed pairs: ``(sinkhorn <P, C>, violation,
    seconds per pair, emd values)``."""
    import ot

    values, viol = [], []
    t = time.perf_counter()
    for i, j in pairs:
        plan = ot.sinkhorn(weights[i], weights[j], cost_fn(i, j), epsilon, method="sinkhorn_log", stopThr=tol,
                           numItermax=max_iter)
        values.append(np.sum(plan * cost_fn(i, j)))
        viol.append(np.abs(plan.sum(1) - weights[i]).sum() + np.abs(plan.sum(0) - weights[j]).sum())
    per_pair = (time.perf_counter() - t) / len(pairs)
    emd = np.array([ot.emd2(weights[i], weights[j], cost_fn(i, j)) for i, j in pairs])
    return np.array(values), np.array(viol), per_pair, emd


def sinkhorn_section(add, workload, mine, mine_on_first, peers, pot, at):
    """Rows for one Sinkhorn workload.

    ``mine``: ``(median, first, values (n, n), errors (n, n))`` on all pairs of the ``n`` beliefs;
    ``mine_on_first[k]``: smcflow's ``(median, first)`` on the pairs of the first ``k`` beliefs;
    ``peers``: ``(label, median, first, values (k * k,), violations (k * k,), k)`` for ott-jax runs on
    those pairs; ``pot``: from :func:`pot_pairs` on the pairs ``at`` (indices into the matrix).
    """
    med, first, D, E = mine
    n = D.shape[0]
    ref, pot_viol, pot_per_pair, emd = pot
    add(workload, "sinkhorn", "smcflow", n * n, med, first,
        f"marginal ≤ {E.max():.1e}; Δ vs POT {np.abs(D[at] - ref).max():.1e}, vs emd {np.abs(D[at] - emd).max():.1e}")
    for k, (k_med, k_first) in sorted(mine_on_first.items()):
        if k != n:
            add(workload, "sinkhorn", f"smcflow on the first {k} beliefs", k * k, k_med, k_first,
                f"marginal ≤ {E[:k, :k].max():.1e}")
    for label, o_med, o_first, values, viol, k in peers:
        bad = ~np.isfinite(values)
        note = f"; {bad.sum()} NaN" if bad.any() else ""
        gap = np.nanmax(np.abs(values - D[:k, :k].reshape(-1))) if not bad.all() else np.nan
        ratio = o_med / mine_on_first[k][0]
        add(workload, "sinkhorn", label + ("" if k == n else f" (first {k} beliefs)"), k * k, o_med, o_first,
            f"marginal ≤ {np.nanmax(viol):.1e}; Δ vs smcflow {gap:.1e}{note}; smcflow {ratio:.1f}x faster")
    add(workload, "sinkhorn", f"POT sinkhorn_log (loop; {len(ref)} pairs, scaled)", n * n, pot_per_pair * n * n,
        pot_per_pair * n * n, f"marginal ≤ {pot_viol.max():.1e}; Δ vs emd {np.abs(ref - emd).max():.1e}; "
        f"smcflow {pot_per_pair * n * n / med:.0f}x faster")


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
    n_sink = 10 if quick else 64  # ott-jax's kernel mode on the pairs of the first n_sink beliefs
    n_ott = 20 if quick else 128  # ott-jax's log mode on the pairs of the first n_ott discrete beliefs
    n_pot, n_lp = (10, 10) if quick else (50, 50)  # POT's Python loops and the host LPs: subsets of pairs
    eps, tol, max_iter = 0.5, 1e-3, 10000
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
    chunk = max(1, (1 << 22) // (n_p * n_p))  # the chunk smcflow uses
    med, first, out = timed(lambda: sink.solve_pairwise((X2, LW2)), args.reps)
    mine = (med, first, np.asarray(out.cost, np.float64), np.asarray(out.error, np.float64))  # <P, C^2>
    mine_on_first = {n_b: (med, first), n_sink: timed(lambda: sink.solve_pairwise((X2[:n_sink], LW2[:n_sink])), args.reps)[:2]}

    def particle_geom(X, LW, i, j):
        from ott.geometry import pointcloud
        return pointcloud.PointCloud(X[i], X[j], epsilon=eps), jnp.exp(LW[i]), jnp.exp(LW[j])  # squared Euclidean

    Xj, LWj = jnp.asarray(X2), jnp.asarray(LW2)
    peers = []
    for label, k, lse in (("ott-jax (lse_mode=True)", n_b, True), ("ott-jax (lse_mode=False)", n_sink, False)):
        I, J = np.repeat(np.arange(k), k), np.tile(np.arange(k), k)
        o_med, o_first, (values, viol) = timed(ott_pairs(particle_geom, Xj, LWj, I, J, tol, max_iter, chunk, lse), args.reps)
        peers.append((label, o_med, o_first, np.asarray(values, np.float64), np.asarray(viol), k))
    sink_pairs = [(int(a), int(b)) for a, b in zip(rng.integers(0, n_b, n_pot), rng.integers(0, n_b, n_pot))]
    cost = lambda a, b: ot.dist(X2[a].astype(np.float64), X2[b].astype(np.float64))  # noqa: E731
    pot = pot_pairs(sink_pairs, W2, cost, eps, tol, max_iter)
    sinkhorn_section(add, wl + f" (ε={eps}, p=2)", mine, mine_on_first, peers, pot, tuple(np.array(sink_pairs).T))
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
    sink = Sinkhorn(epsilon=eps_d, p=1, cost=line, tol=tol, max_iter=max_iter)
    med, first, out = timed(lambda: sink.solve_pairwise(P), args.reps)
    mine = (med, first, np.asarray(out.cost, np.float64), np.asarray(out.error, np.float64))
    mine_on_first = {n_d: (med, first)}
    for k in (n_ott, n_sink):
        mine_on_first[k] = timed(lambda k=k: sink.solve_pairwise(P[:k]), args.reps)[:2]
    C = jnp.asarray(line, jnp.float32)

    def discrete_geom(A, B, i, j):
        from ott.geometry import geometry
        return geometry.Geometry(cost_matrix=C, epsilon=eps_d), A[i], A[j]

    Pj = jnp.asarray(P)
    peers = []
    for label, k, lse in (("ott-jax (lse_mode=True)", n_ott, True), ("ott-jax (lse_mode=False)", n_sink, False)):
        I, J = np.repeat(np.arange(k), k), np.tile(np.arange(k), k)
        o_med, o_first, (values, viol) = timed(ott_pairs(discrete_geom, Pj, Pj, I, J, tol, max_iter, 1024, lse), args.reps)
        peers.append((label, o_med, o_first, np.asarray(values, np.float64), np.asarray(viol), k))
    sub = [(int(a), int(b)) for a, b in zip(rng.integers(0, n_d, n_pot), rng.integers(0, n_d, n_pot))]
    pot = pot_pairs(sub, P64, lambda a, b: line, eps_d, tol, max_iter)
    sinkhorn_section(add, wl + f" (line cost, ε={eps_d})", mine, mine_on_first, peers, pot, tuple(np.array(sub).T))
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
        f"Sinkhorn: the same tolerance {tol:g} and cap of {max_iter} iterations for every library (each its own "
        "stopping rule: smcflow and ott-jax an L1 marginal error, POT an L2 one); 2-D particles: ε = "
        f"{eps}, squared Euclidean cost (p = 2; smcflow's <P, C> is compared, not its square root); discrete: ε = "
        f"{eps_d}, cost |i − j| / {n_s - 1}. smcflow's Sinkhorn runs on all pairs; ott-jax's log mode on all "
        f"particle pairs and on the pairs of the first {n_ott} discrete beliefs, its kernel mode on the pairs of "
        f"the first {n_sink} beliefs (smcflow is timed on the same subsets: the 'x faster' column compares equal "
        f"pair sets); POT's Sinkhorn and EMD on {n_pot} random pairs. Exact OT (LPs) on {n_lp} random pairs.",
        "- Accuracy: \"marginal\" is the largest L1 marginal violation |P1 − a|₁ + |Pᵀ1 − b|₁ of the returned "
        "plans (smcflow: its reported error, the columns being exact; peers: measured from their plans); "
        "\"Δ\" the largest absolute difference of <P, C> (entropic bias vs emd ≤ ε log(nm)).",
        "- Time: median of warm calls (first call, with compilation, apart). POT's Sinkhorn and exact solvers "
        "are Python loops over pairs: timed on the stated subset and scaled to all pairs.",
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
