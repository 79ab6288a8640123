"""Learn an SDE from trajectories, then track the system from sparse noisy observations with it.

1. Simulate trajectories of a 2-D SDE with a nonlinear drift and a spatially varying, correlated diffusion
   (``smcflow_sde.CorrelatedDiffusion2D``) and estimate drift and diffusion from them with the kernel
   Kramers-Moyal estimator (plugin ``km_kernel``).
2. Observe a new trajectory sparsely: only ``x_1 + x_2``, with noise, every 0.5 time units.
3. Track both coordinates with the Girsanov-guided particle filter whose dynamics is the *learned* SDE
   (10 Euler-Maruyama substeps between observations), next to the bootstrap filter.
4. Plot the truth, the observations, the filter mean and its 90 % band (``out/examples/sde_track.png``).

Run: .venv/bin/python examples/sde_estimate_and_track.py   (about 20 s on 2 CPU cores). ``--quick``, or
running under pytest as tests/test_examples.py does, uses less data, fewer particles and only the
bootstrap filter (the cheaper one to compile): about 10 s.
"""
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import smcflow
from smcflow.sde_filters import filtering_log_weights
from smcflow_sde import CorrelatedDiffusion2D
from smcflow_sde.reference import relative_l2

OUT = Path(__file__).resolve().parents[1] / "out" / "examples" / "sde_track.png"
QUICK = "--quick" in sys.argv[1:] or "PYTEST_CURRENT_TEST" in os.environ
DT_DATA, DT_OBS, N_SUBSTEPS = 0.01, 0.5, 10
N_PATHS, N_DATA_STEPS, N_OBS, N_PARTICLES = (20, 1000, 20, 256) if QUICK else (40, 1500, 40, 512)
OBS_STD = 0.1

problem = CorrelatedDiffusion2D()

# 1. estimate the SDE from N_PATHS trajectories of N_DATA_STEPS * DT_DATA time units each
paths = problem.simulate(jax.random.key(0), N_PATHS, N_DATA_STEPS, DT_DATA)
learned = smcflow.plugins.get("estimator", "km_kernel").fit(np.asarray(paths), DT_DATA)
check = np.asarray(problem.simulate(jax.random.key(1), 10, 100, DT_DATA))[:, ::10].reshape(-1, 2)
drift_err, diffusion_err = relative_l2(learned, problem.sde, check)
print(f"learned from {paths.shape[0]} x {paths.shape[1] - 1} increments: relative L2 error "
      f"drift {drift_err:.3f}, diffusion {diffusion_err:.3f}")


# 2. a new trajectory of the true system, observed through x_1 + x_2 every DT_OBS
def observation(x, t):
    return dist.Normal(x[:, 0] + x[:, 1], OBS_STD)


def model(sde):
    return smcflow.SDEStateSpaceModel(lambda: dist.MultivariateNormal(jnp.zeros(2), 0.16 * jnp.eye(2)), sde,
                                      observation, DT_OBS, N_SUBSTEPS)


xs, ys = model(problem.sde).simulate(jax.random.key(2), N_OBS)


# 3. filter with the learned dynamics: weighted mean and 5 % / 95 % quantiles at every substep
def summary(point, log_w):
    # the Girsanov filter's weights carry a look-ahead twist towards the next observation: remove it to
    # get the filter p(x_t | y_0..t) (for the bootstrap filter this changes nothing)
    log_w = filtering_log_weights(point, log_w)
    return {"mean": jnp.exp(log_w) @ point.x, "band": smcflow.weights.quantiles(point.x, log_w)}


results = {}
filters = {"girsanov": smcflow.girsanov_filter, "bootstrap": smcflow.bootstrap_filter}
for name, build in list(filters.items())[1:] if QUICK else filters.items():  # quick: one (cheaper) filter
    fk = build(model(learned), ys)
    res = smcflow.run(fk, jax.random.key(3), N_PARTICLES, summary=summary)
    steps = fk.observation_steps
    mean, band = np.asarray(res.summaries["mean"])[steps], np.asarray(res.summaries["band"])[steps]
    rmse = np.sqrt(np.mean((mean - np.asarray(xs)) ** 2, axis=0))
    inside = np.mean((band[:, 0] <= xs) & (xs <= band[:, 1]), axis=0)
    results[name] = (mean, band)
    print(f"{name:9s} filter with the learned SDE: log Z_hat {float(res.log_evidence):8.3f}, RMSE "
          f"(x1, x2) = ({rmse[0]:.3f}, {rmse[1]:.3f}), 90 % band covers ({inside[0]:.0%}, {inside[1]:.0%})")

# 4. plot
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the plot extra is not installed
    plt = None
if plt is not None:
    t = np.arange(N_OBS) * DT_OBS
    shown = next(iter(results))
    mean, band = results[shown]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for i, ax in enumerate(axes[:2]):
        ax.fill_between(t, band[:, 0, i], band[:, 1, i], color="C0", alpha=0.25, label="90 % band")
        ax.plot(t, mean[:, i], color="C0", label="filter mean (learned SDE)")
        ax.plot(t, xs[:, i], "k--", lw=1, label="truth")
        ax.set_ylabel(f"x{i + 1}")
    axes[2].plot(t, ys, "r.", label="observation of x1 + x2")
    axes[2].plot(t, xs[:, 0] + xs[:, 1], "k--", lw=1, label="truth")
    axes[2].set_ylabel("x1 + x2")
    axes[2].set_xlabel("time")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(f"{shown} particle filter with an SDE learned by the kernel Kramers-Moyal estimator")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"plot: {OUT}")
