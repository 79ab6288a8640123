#!/usr/bin/env python
"""Data assimilation with a diffusion surrogate (SURGE) against the classical filters, at equal particle counts.

**Part ``guidance``.** The analytic 2-D linear-Gaussian surrogate (``smcflow_surrogates.linear_gaussian_surrogate``,
K = 20 diffusion steps; first coordinate observed, forecast sd 0.57 there), where the surrogate model's
exact log-likelihood is a Kalman filter's: Var(log Z_hat) and the bias of mean log Z_hat for the unguided
filter, the plain guidance grad log p(y | denoise(z)) and the default Tweedie guidance, at observation sd 0.2
(small against the forecast spread) and 0.7.

**Part ``lorenz``.** Stochastic Lorenz-63 observed in its first coordinate and in all three, and
stochastic Lorenz-96 (d = 40) observed at every fourth site, each along one fixed trajectory of the true
system. For N particles / ensemble members: the bootstrap filter with the *true* SDE, smcflow's EnKF with
the true SDE (localised on Lorenz-96), the surrogate as a plain transition (surrogate bootstrap) and SURGE
(the surrogate guided towards each observation, exact Girsanov weights), both with the shipped learned
surrogates (plugin ``smcflow-surrogates``). Reported over independent runs: the RMSE of the filter mean
against the truth (all coordinates and times), the coverage of the 90 % intervals (weighted 5 % / 95 %
quantiles; the EnKF's Gaussian interval), Var(log Z_hat) (the surrogate filters estimate the surrogate
model's likelihood, the true-SDE filters the true one's), the warm wall time of one run and the model
evaluations per particle and assimilation step (SDE drift evaluations for the true-SDE filters, network
passes for the surrogate filters). Plot: ``docs/img/assimilation_lorenz63.png``.

Timings depend on the machine and its load; the generated sections record both.

Usage::

    python benchmarks/bench_assimilation.py                  # both parts, writes docs/benchmarks.md
    python benchmarks/bench_assimilation.py --part guidance
    python benchmarks/bench_assimilation.py --quick          # smoke run, prints only
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _p in (str(REPO_ROOT), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

from bench_bootstrap import write_section  # noqa: E402
from bench_sde import fmt, header, run_enkf, run_particle_filter  # noqa: E402

import smcflow  # noqa: E402
from smcflow.enkf import gaspari_cohn  # noqa: E402
from smcflow.exact import kalman_filter  # noqa: E402
from smcflow_sde.reference import lorenz63, lorenz96  # noqa: E402
from smcflow_surrogates import exact_transition, linear_gaussian_surrogate  # noqa: E402
from smcflow_surrogates.lorenz import LORENZ63, LORENZ96  # noqa: E402

SECTIONS = {"guidance": "bench_assimilation_guidance", "lorenz": "bench_assimilation_lorenz"}
OBS_STD = 1.0


# -- part guidance ---------------------------------------------------------------------------------


def part_guidance(args) -> str:
    start = time.perf_counter()
    A = np.array([[0.9, 0.2], [-0.2, 0.9]])
    Q = np.array([[0.3, 0.05], [0.05, 0.2]])
    surrogate = linear_gaussian_surrogate(A, Q=Q, n_steps=20)
    F, _, S = exact_transition(surrogate)
    variants = {"unguided": dict(guidance="none"), "plain guidance": dict(uncertainty="none"),
                "Tweedie guidance (default)": {}}
    rows = []
    for obs_sd in (0.2, 0.7):
        ssm = smcflow.SurrogateStateSpaceModel(lambda: dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)), surrogate,
                                               lambda x, t, s=obs_sd: dist.Normal(x[:, :1], s).to_event(1))
        _, ys = ssm.simulate(jax.random.key(1), args.linear_times)
        exact = kalman_filter(np.asarray(ys), F, S, [[1.0, 0.0]], [[obs_sd**2]], np.zeros(2), np.eye(2)).log_likelihood
        for name, kwargs in variants.items():
            model = smcflow.surge_filter(ssm, ys, **kwargs)
            log_z = np.asarray(smcflow.run(model, jax.random.key(2), args.linear_particles,
                                           n_runs=args.linear_runs).log_evidence, np.float64)
            rows.append((obs_sd, name, log_z.var(ddof=1), log_z.mean() - exact,
                         log_z.std(ddof=1) / np.sqrt(log_z.size), model.nfe_per_evaluation))
            print(f"  obs sd {obs_sd}: {name:28s} Var log Z {rows[-1][2]:.3f}, bias {rows[-1][3]:+.3f}", flush=True)
    lines = header("Surrogate filter guidance: exact 2-D linear-Gaussian surrogate", args.command,
                   time.perf_counter() - start,
                   [f"- N = {args.linear_particles}, T = {args.linear_times}, {args.linear_runs} runs per row, "
                    "K = 20 diffusion steps; bias = mean log Z_hat - exact log Z (its standard error in brackets; "
                    "an unbiased Z_hat has mean log Z_hat = log Z - Var/2 to first order)."],
                   script="bench_assimilation.py")
    lines += ["| obs sd | filter | Var(log Ẑ) | mean log Ẑ − log Z | network passes / particle / diffusion step |",
              "|---|---|---|---|---|"]
    for obs_sd, name, var, bias, se, nfe in rows:
        lines.append(f"| {obs_sd} | {name} | {var:.3f} | {bias:+.3f} ({se:.3f}) | {nfe} |")
    lines.append("")
    return "\n".join(lines)


# -- part lorenz -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One assimilation problem: the true system, what is observed, the surrogate, the EnKF's settings."""

    name: str
    sde: Any
    settings: Any  # smcflow_surrogates.lorenz.LORENZ63 / LORENZ96: dt, n_substeps, initial mean and sd, names
    observe: Callable[[jax.Array], jax.Array]
    n_observed: int
    surrogate: str
    n_times: int
    inflation: float = 1.0
    localisation: Any = None

    def initial(self):
        return dist.Normal(jnp.asarray(self.settings.initial_mean, jnp.float32), self.settings.initial_sd).to_event(1)

    def observation(self, x, t):
        return dist.Normal(self.observe(x), OBS_STD).to_event(1)

    def true_model(self) -> smcflow.SDEStateSpaceModel:
        return smcflow.SDEStateSpaceModel(self.initial, self.sde, self.observation, self.settings.dt,
                                          self.settings.n_substeps)

    def surrogate_model(self) -> smcflow.SurrogateStateSpaceModel:
        return smcflow.SurrogateStateSpaceModel(self.initial, smcflow.plugins.get("sampler", self.surrogate),
                                                self.observation)


def plain_surge(ssm, ys):
    return smcflow.surge_filter(ssm, ys, uncertainty="none")


def problems(args) -> list[Problem]:
    sites = np.arange(0, LORENZ96.d, 4)
    distance = np.abs(np.arange(LORENZ96.d)[:, None] - sites[None, :])
    distance = np.minimum(distance, LORENZ96.d - distance)  # periodic
    taper = gaspari_cohn(distance, 4.0)
    return [
        Problem("Lorenz-63, x1 observed", lorenz63(LORENZ63.noise), LORENZ63, lambda x: x[:, :1], 1, "lorenz63",
                args.n_times),
        Problem("Lorenz-63, all observed", lorenz63(LORENZ63.noise), LORENZ63, lambda x: x, 3, "lorenz63",
                args.n_times),
        Problem("Lorenz-96 (d = 40), every 4th site observed", lorenz96(LORENZ96.d, LORENZ96.forcing, LORENZ96.noise),
                LORENZ96, lambda x: x[:, ::4], len(sites), "lorenz96", args.n_times_96, inflation=1.05,
                localisation=(jnp.asarray(taper, jnp.float32), jnp.asarray(gaspari_cohn(
                    np.minimum(np.abs(sites[:, None] - sites[None, :]), LORENZ96.d - np.abs(sites[:, None] - sites[None, :])),
                    4.0), jnp.float32))),
    ]


def part_lorenz(args) -> str:
    start = time.perf_counter()
    lines_all, plots = [], {}
    for problem in problems(args):
        truth_model = problem.true_model()
        xs, ys = truth_model.simulate(jax.random.key(0), problem.n_times)
        xs = np.asarray(xs)
        surrogate_model = problem.surrogate_model()
        K = surrogate_model.n_diffusion_steps
        runs = args.runs if problem.surrogate == "lorenz63" else max(2, args.runs // 2)  # Lorenz-96: half (cost)
        rows = []
        for n in args.particles:
            entries = [
                ("bootstrap, true SDE", problem.settings.n_substeps,
                 lambda: run_particle_filter(smcflow.bootstrap_filter, truth_model, ys, xs, n, runs)),
                ("EnKF, true SDE", problem.settings.n_substeps,
                 lambda: run_enkf(truth_model, ys, xs, n, runs, inflation=problem.inflation,
                                  localisation=problem.localisation)),
                ("surrogate bootstrap", K,
                 lambda: run_particle_filter(smcflow.bootstrap_filter, surrogate_model, ys, xs, n, runs)),
                ("SURGE, plain guidance", K * smcflow.surge_filter(surrogate_model, ys, uncertainty="none").nfe_per_evaluation,
                 lambda: run_particle_filter(plain_surge, surrogate_model, ys, xs, n, runs)),
                ("SURGE (default: Tweedie guidance)", K * smcflow.surge_filter(surrogate_model, ys).nfe_per_evaluation,
                 lambda: run_particle_filter(smcflow.surge_filter, surrogate_model, ys, xs, n, runs)),
            ]
            for method, nfe, fn in entries:
                out = fn()
                rows.append((method, n, nfe, *out))
                print(f"  {problem.name:40s} {method:22s} N = {n:4d}: RMSE {out[0]:.3f}, coverage {out[1]:.3f}, "
                      f"Var log Z {out[2]:.2f}, {out[4] * 1e3:.0f} ms/run", flush=True)
        lines_all += [f"### {problem.name}", "",
                      f"T = {problem.n_times} observations every {problem.settings.dt} (y = observed coordinates + "
                      f"N(0, {OBS_STD**2:g})); surrogate `{problem.surrogate}` with K = {K} diffusion steps; "
                      f"{runs} runs per cell.", "",
                      "| method | N | evaluations / particle / step | RMSE | 90 % coverage | Var(log Ẑ) | time / run |",
                      "|---|---|---|---|---|---|---|"]
        for method, n, nfe, rmse, cover, var, _mean, elapsed in rows:
            lines_all.append(f"| {method} | {n} | {nfe} | {rmse:.3f} | {cover:.3f} | {fmt(var)} | "
                             f"{elapsed * 1e3:.0f} ms |")
        lines_all.append("")
        if problem.surrogate == "lorenz63" and problem.n_observed == 1:
            plots = dict(xs=xs, ys=np.asarray(ys), problem=problem, truth_model=truth_model,
                         surrogate_model=surrogate_model)
    lines = header("Surrogate data assimilation: Lorenz-63 and Lorenz-96", args.command, time.perf_counter() - start,
                   ["- RMSE and coverage: means over runs; evaluations: SDE drift evaluations (true-SDE filters) or "
                    "network passes (surrogate filters: forward, plus the guidance's reverse passes) per particle "
                    "and assimilation step."], script="bench_assimilation.py")
    if plots and args.img_dir is not None:
        _plot(plots, args)
        lines_all += ["![Lorenz-63 filter bands](img/assimilation_lorenz63.png)", ""]
    return "\n".join(lines + lines_all)


def _plot(p, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench_sde import _summary

    n = max(args.particles)
    filters = {"bootstrap, true SDE": smcflow.bootstrap_filter(p["truth_model"], p["ys"]),
               "SURGE": smcflow.surge_filter(p["surrogate_model"], p["ys"])}
    xs, t = p["xs"], np.arange(p["xs"].shape[0]) * p["problem"].settings.dt
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for (name, model), colour in zip(filters.items(), ("tab:orange", "tab:blue")):
        res = smcflow.run(model, jax.random.key(3), n, summary=_summary)
        steps = model.observation_steps
        mean, band = np.asarray(res.summaries["mean"])[steps], np.asarray(res.summaries["band"])[steps]
        for i, ax in enumerate(axes):
            ax.fill_between(t, band[:, 0, i], band[:, 1, i], color=colour, alpha=0.25, label=f"{name} 90 %")
            ax.plot(t, mean[:, i], color=colour, lw=1)
    for i, ax in enumerate(axes):
        ax.plot(t, xs[:, i], "k", lw=1, label="truth")
        ax.set_ylabel(f"x{i + 1}")
    axes[0].plot(t, p["ys"][:, 0], ".", color="tab:red", ms=3, label="observations")
    axes[0].legend(fontsize=7, ncol=4)
    axes[-1].set_xlabel("time")
    fig.suptitle(f"Lorenz-63, x1 observed (sd {OBS_STD:g}), N = {n}")
    fig.tight_layout()
    Path(args.img_dir).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(args.img_dir) / "assimilation_lorenz63.png", dpi=110)


# -- command line ----------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("guidance", "lorenz", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes; prints only unless --out is given")
    parser.add_argument("--particles", type=_ints, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--n-times", type=int, default=None, help="observations (Lorenz-63)")
    parser.add_argument("--n-times-96", type=int, default=None, help="observations (Lorenz-96)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--img-dir", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/bench_assimilation.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    args.particles = args.particles or ([64] if args.quick else [64, 256])
    args.runs = args.runs or (2 if args.quick else 8)
    args.n_times = args.n_times or (20 if args.quick else 100)
    args.n_times_96 = args.n_times_96 or (10 if args.quick else 50)
    args.linear_times, args.linear_particles, args.linear_runs = (20, 128, 16) if args.quick else (100, 512, 64)
    out = args.out if args.out is not None else (None if args.quick else REPO_ROOT / "docs" / "benchmarks.md")
    if args.no_write:
        out = None
    if out is not None and args.img_dir is None:
        args.img_dir = Path(out).parent / "img"
    for part in (("guidance", "lorenz") if args.part == "all" else (args.part,)):
        print(f"== {part}", flush=True)
        body = part_guidance(args) if part == "guidance" else part_lorenz(args)
        print(body)
        if out is not None:
            write_section(Path(out), body, section=SECTIONS[part])


if __name__ == "__main__":
    main()
