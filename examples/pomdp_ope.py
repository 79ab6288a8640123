"""Off-policy evaluation on the switching Tiger over belief states, against the exact value.

A behaviour policy (listen until one side reaches 0.9, then open the other door, with 30 %
exploration) logs episodes; we estimate the value of the greedy threshold policy from them with

* per-decision importance sampling over the logged beliefs (unbiased, high variance), and
* fitted-Q evaluation on an epsilon-net of the logged beliefs (TV metric): the net's size is the
  covering number of the logged beliefs at epsilon, which trades variance (small cells) for
  aggregation bias (large cells),

and compare both with the exact value of the target policy, computed by policy evaluation on the
belief MDP (with --full also checked by Monte Carlo rollouts of the hidden states).

Run: .venv/bin/python examples/pomdp_ope.py            (about 10 s on 2 cores)
     .venv/bin/python examples/pomdp_ope.py --full --plot docs/img/pomdp_ope.png
"""
import argparse

import jax
import numpy as np
from smcflow_pomdp import switching_tiger
from smcflow_pomdp.ope import (
    discounted_returns,
    fqe_value,
    importance_sampling_returns,
    policy_value,
    simulate,
)
from smcflow_pomdp.policies import Softened, TigerThreshold

parser = argparse.ArgumentParser(description="OPE on the switching Tiger")
parser.add_argument("--full", action="store_true", help="more data sizes and seeds (a few minutes)")
parser.add_argument("--plot", default=None, help="write the error-vs-data figure here (needs --full)")
args, _ = parser.parse_known_args()  # tolerant of a test runner's own arguments

model = switching_tiger(flip=0.1)  # listen -1, wrong door -100, right door +10, accuracy 0.85, γ = 0.95
target, behaviour = TigerThreshold(0.9), Softened(TigerThreshold(0.9), exploration=0.3)
gamma, horizon = 0.95, 60

exact = policy_value(model, target, tol=1e-4)
print(f"exact value of the target policy: {exact.value:.4f}  (bracket [{exact.lower:.4f}, {exact.upper:.4f}], "
      f"{exact.n_nodes} beliefs in the graph)")
if args.full:  # a second route to the value (the tests check two)
    rollouts = discounted_returns(simulate(model, target, jax.random.key(0), 20_000, 250).rewards, gamma)
    se = float(rollouts.std()) / np.sqrt(rollouts.size)
    print(f"Monte Carlo rollouts of the hidden states: {float(rollouts.mean()):.3f} ± {se:.3f} (1 s.e., 20,000 episodes)")

sizes = (100, 300, 1000, 3000, 10000) if args.full else (100, 1000)
seeds = 8 if args.full else 1
epsilons = (0.0, 0.01, 0.03, 0.1) if args.full else (0.0, 0.03)
data = simulate(model, behaviour, jax.random.key(1), seeds * sum(sizes), horizon)

results = {}  # (n, estimator) -> list of (error, covering number)
start = 0
for n in sizes:
    for _ in range(seeds):  # disjoint slices: independent data sets
        part = jax.tree_util.tree_map(lambda a, lo=start, hi=start + n: a[lo:hi], data)
        start += n
        is_value = float(importance_sampling_returns(part, target, gamma).mean())
        results.setdefault((n, "IS"), []).append((is_value - exact.value, np.nan))
        for eps in epsilons:
            est = fqe_value(part, target, eps, gamma)
            results.setdefault((n, f"FQE ε={eps:g}"), []).append((est.value - exact.value, est.n_cells))

names = ["IS"] + [f"FQE ε={e:g}" for e in epsilons]
print(f"\nroot-mean-square error over {seeds} data set(s) per size (covering number of the logged beliefs)")
print("episodes " + "".join(f"{name:>22s}" for name in names))
for n in sizes:
    cells = []
    for name in names:
        err = np.array([e for e, _ in results[(n, name)]])
        cov = np.array([c for _, c in results[(n, name)]])
        cells.append(f"{np.sqrt(np.mean(err ** 2)):9.3f}" + ("" if name == "IS" else f" (N={np.mean(cov):6.0f})"))
    print(f"{n:>8d} " + "".join(f"{c:>22s}" for c in cells))

if args.plot:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, name in enumerate(names):
        rmse = [np.sqrt(np.mean([e**2 for e, _ in results[(n, name)]])) for n in sizes]
        ax1.loglog(sizes, rmse, "o-", color=f"C{k}", label=name)
        if name != "IS":
            cov = [np.mean([c for _, c in results[(n, name)]]) for n in sizes]
            ax2.loglog(cov, rmse, "o-", color=f"C{k}", label=name)
    ax1.set(xlabel="logged episodes", ylabel="RMSE of the value estimate", title="error against data size")
    ax2.set(xlabel="covering number of the logged beliefs (TV)", ylabel="RMSE",
            title="FQE error against the covering number")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")
