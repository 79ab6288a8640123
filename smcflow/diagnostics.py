"""Did the run work? Weight, genealogy and across-run diagnostics with stated thresholds.

:func:`diagnose` reads an engine result (:class:`smcflow.SMCResult`), a :class:`smcflow.ScaleResult`
or a saved arviz ``InferenceData`` written by :mod:`smcflow.export`, and returns a :class:`Diagnosis`:
numbers per run, plus :class:`Finding` s that say in words what is wrong and at which step.

The quantities (``R`` runs, ``N`` particles, times ``0..T``):

* ``ess[r, t]``: effective sample size ``1 / sum_i W_i^2`` after reweighting at time ``t`` (before any
  resampling). Below ``max(ess_fraction * N, ess_floor)`` (5% of N, at least 2) the weights are
  *degenerate*: a few particles carry the estimate.
* ``max_weight`` and ``entropy`` (``-sum W log W``, nats; ``log N`` for equal weights): at the final
  time always, at every time when the run recorded ``summary=smcflow.weights.weight_statistics``.
* ``distinct_ancestors[r, t]``: how many different time-``t`` particles the final particles descend
  from (needs ``keep_ancestors=True``); ``coalescence[r]`` the latest time at which that number is one
  (``-1``: never). Coalescence is normal for filtering and a problem for smoothing along paths.
* ``pareto_khat[r]``: the Pareto shape ``k̂`` fitted to the tail of the final importance weights
  (arviz's PSIS). Above ``khat`` (0.7) their variance is effectively infinite: log Ẑ and weighted
  averages are unreliable. Not defined for equal weights or fewer than 20 live particles (NaN).
* ``log_evidence_sd``: the spread of log Ẑ across runs. Above ``log_evidence_sd`` (1 nat) exp(log Ẑ)
  is dominated by rare runs and the mean of log Ẑ sits about Var(log Ẑ)/2 below log Z.
* ``rhat``: rank-normalised R-hat (arviz) of every scalar coordinate of the equally weighted draws,
  one chain per run. For independent SMC runs ``R̂ ≈ 1 + 1/(2 ESS_run)``, so above ``rhat`` (1.01)
  a run is worth fewer than about 50 independent draws.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from .errors import describe_failures
from .resampling import systematic

__all__ = ["diagnose", "brief", "Diagnosis", "Finding", "Concern", "THRESHOLDS", "pareto_khat", "distinct_ancestors"]

#: Thresholds of the verdicts (documented in the module docstring and docs/diagnostics.md).
THRESHOLDS = {"ess_fraction": 0.05, "ess_floor": 2.0, "khat": 0.7, "log_evidence_sd": 1.0, "rhat": 1.01}

_MIN_PARTICLES_FOR_KHAT = 20
_MAX_RHAT_COORDINATES = 64


class Concern(enum.Enum):
    """What a :class:`Finding` is about. ``PATHS_COALESCED`` is a note; the others are warnings."""

    NUMERICAL_FAILURE = "numerical_failure"
    DEGENERATE_WEIGHTS = "degenerate_weights"
    HEAVY_TAILED_WEIGHTS = "heavy_tailed_weights"
    EVIDENCE_SPREAD = "evidence_spread"
    RUNS_DISAGREE = "runs_disagree"
    PATHS_COALESCED = "paths_coalesced"


_REMEDIES = {
    Concern.NUMERICAL_FAILURE: "see the failure message; errors='raise' stops at the first one",
    Concern.DEGENERATE_WEIGHTS: "more particles, resample more often, temper the potentials or guide the proposal",
    Concern.HEAVY_TAILED_WEIGHTS: "more particles, tempering of the potentials, or a proposal closer to the target",
    Concern.EVIDENCE_SPREAD: "more particles per run; compare log-mean-exp and mean of log Ẑ across runs",
    Concern.RUNS_DISAGREE: "more particles per run, or more resampling and moves to mix the runs",
    Concern.PATHS_COALESCED: "fine for filtering; for whole paths use more particles or resample less often",
}


@dataclass(frozen=True)
class Finding:
    """One verdict: ``concern``, a sentence ``message``, the step it refers to (or None) and a remedy."""

    concern: Concern
    message: str
    step: int | None = None

    @property
    def is_warning(self) -> bool:
        return self.concern is not Concern.PATHS_COALESCED

    @property
    def remedy(self) -> str:
        return _REMEDIES[self.concern]

    def __str__(self) -> str:
        return f"{'warning' if self.is_warning else 'note'}: {self.message} (remedy: {self.remedy})"


@dataclass(frozen=True)
class Diagnosis:
    """Per-run diagnostics (numpy, leading run axis ``R``; a single run has ``R = 1``) and findings."""

    source: str
    n_particles: int
    ess: np.ndarray  # (R, T+1)
    resampled: np.ndarray  # (R, T+1) bool
    log_evidence: np.ndarray  # (R,), NaN when the method has no evidence
    failure: np.ndarray  # (R,) int codes
    failure_time: np.ndarray  # (R,)
    final_max_weight: np.ndarray  # (R,)
    final_entropy: np.ndarray  # (R,)
    pareto_khat: np.ndarray  # (R,)
    max_weight: np.ndarray | None = None  # (R, T+1) when recorded
    entropy: np.ndarray | None = None  # (R, T+1) when recorded
    distinct_ancestors: np.ndarray | None = None  # (R, T+1) when ancestors were kept
    coalescence: np.ndarray | None = None  # (R,) latest single-ancestor time, -1 if none
    rhat: dict[str, float] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    final_log_weights: np.ndarray | None = field(default=None, repr=False)  # (R, N)
    images: np.ndarray | None = field(default=None, repr=False)  # (n, H, W): scale samples that are images

    @property
    def n_runs(self) -> int:
        return int(self.ess.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.ess.shape[1]) - 1

    @property
    def ok(self) -> bool:
        """No warnings (notes such as path coalescence do not count)."""
        return not any(f.is_warning for f in self.findings)

    @property
    def log_evidence_sd(self) -> float:
        """Standard deviation of log Ẑ across runs (NaN for one run or no evidence)."""
        finite = self.log_evidence[np.isfinite(self.log_evidence)]
        return float(np.std(finite, ddof=1)) if finite.size >= 2 else math.nan

    def summary(self) -> str:
        """A few readable lines: the numbers, then the verdict and every finding."""
        n, r = self.n_particles, self.n_runs
        lines = [f"smcflow diagnosis of {self.source}: {r} run(s) x {n} particles, {self.n_steps} steps"]
        le = self.log_evidence
        if np.all(np.isnan(le)):
            lines.append("  log Ẑ: none (the method has no evidence estimate)")
        elif r > 1:
            lines.append(f"  log Ẑ: mean {np.mean(le):.4g}, sd {self.log_evidence_sd:.3g} across runs")
        else:
            lines.append(f"  log Ẑ: {le[0]:.4g}")
        worst = np.unravel_index(np.nanargmin(self.ess), self.ess.shape)
        lines.append(f"  ESS: min {self.ess[worst]:.4g} of {n} at step {worst[1]}; "
                     f"resampled {np.mean(np.sum(self.resampled, axis=1)):.3g} times per run")
        khat = self.pareto_khat[np.isfinite(self.pareto_khat)]
        khat_text = f"Pareto k̂ worst {np.max(khat):.2f}" if khat.size else "Pareto k̂ not defined"
        lines.append(f"  final weights: largest {np.max(self.final_max_weight):.3g}, entropy "
                     f"{np.min(self.final_entropy):.3g} of log N = {math.log(n):.3g}, {khat_text}")
        if self.distinct_ancestors is not None:
            lines.append(f"  genealogy: {np.median(self.distinct_ancestors[:, 0]):.3g} distinct time-0 "
                         f"ancestors (median over runs)")
        if self.rhat:
            name = max(self.rhat, key=self.rhat.get)
            lines.append(f"  R-hat across runs: max {self.rhat[name]:.4f} ({name}, of {len(self.rhat)} coordinates)")
        lines.append(f"verdict: {'OK' if self.ok else 'PROBLEMS'}")
        lines.extend(f"  - {f}" for f in self.findings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def report(self, out_dir: Any) -> Any:
        """Write PNG plots and a self-contained ``index.html`` into ``out_dir`` (:mod:`smcflow.report`);
        returns the page's path."""
        from .report import write_report

        return write_report(self, out_dir, log_weights=self.final_log_weights, images=self.images)


# -- the quantities -------------------------------------------------------------------------------

def pareto_khat(log_weights: Any) -> np.ndarray:
    """Pareto ``k̂`` of importance weights, per run: ``log_weights`` ``(N,)`` or ``(R, N)``.

    Dead particles (``-inf``) are dropped; NaN for equal weights or fewer than 20 live particles.
    """
    import arviz as az

    lw = np.atleast_2d(np.asarray(log_weights, dtype=np.float64))
    out = np.full(lw.shape[0], np.nan)
    for r, row in enumerate(lw):
        live = row[np.isfinite(row)]
        if live.size < _MIN_PARTICLES_FOR_KHAT or np.ptp(live) < 1e-9:
            continue
        _, khat = az.psislw(live - np.max(live))
        out[r] = float(khat)
    return out


def distinct_ancestors(ancestors: Any) -> np.ndarray:
    """Number of distinct time-``t`` ancestors of the final particles, ``(R, T+1)``.

    ``ancestors`` ``(T+1, N)`` or ``(R, T+1, N)``, with ``ancestors[t, i]`` the time ``t-1`` parent
    of particle ``i`` at time ``t`` (as in :class:`smcflow.SMCResult`).
    """
    anc = np.asarray(ancestors)
    anc = anc[None] if anc.ndim == 2 else anc
    n_runs, n_times, n = anc.shape
    lineage = np.broadcast_to(np.arange(n), (n_runs, n)).copy()
    counts = np.empty((n_runs, n_times), dtype=np.int64)
    for t in range(n_times - 1, -1, -1):
        ordered = np.sort(lineage, axis=1)
        counts[:, t] = 1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1)
        if t > 0:
            lineage = np.take_along_axis(anc[:, t], lineage, axis=1)
    return counts


def _coalescence(counts: np.ndarray) -> np.ndarray:
    """Latest time with a single common ancestor per run (``-1`` when the lineages never merge)."""
    single = counts == 1
    latest = counts.shape[1] - 1 - np.argmax(single[:, ::-1], axis=1)
    return np.where(single.any(axis=1), latest, -1)


def _final_weight_stats(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.exp(log_w - np.max(log_w, axis=1, keepdims=True))
    w /= np.sum(w, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(w > 0, w * np.log(w), 0.0), axis=1)
    return np.max(w, axis=1), entropy


@jax.jit
def _equally_weighted(particles: Any, log_w: jax.Array) -> Any:
    """A systematic resample (key 0) of each run's particles ``(R, N, ...)`` by ``log_w`` ``(R, N)``."""
    keys = jax.random.split(jax.random.key(0), log_w.shape[0])
    idx = jax.vmap(lambda k, lw: systematic(k, lw, lw.shape[0]))(keys, log_w)
    return jax.tree_util.tree_map(lambda a: jax.vmap(lambda ar, i: ar[i])(a, idx), particles)


def _rhat(draws: dict[str, np.ndarray]) -> dict[str, float]:
    """Rank-normalised R-hat of each scalar coordinate of ``draws[name]`` ``(R, D, ...)``."""
    import arviz as az

    scalars: dict[str, np.ndarray] = {}
    for name, a in draws.items():
        a = np.asarray(a, dtype=np.float64)
        if a.ndim < 2 or a.shape[0] < 2 or a.shape[1] < 4:
            continue
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        for j in range(min(flat.shape[2], _MAX_RHAT_COORDINATES - len(scalars))):
            label = name if flat.shape[2] == 1 else f"{name}[{j}]"
            scalars[label] = flat[:, :, j]
    out = {}
    for label, a in scalars.items():
        if np.ptp(a) == 0 or not np.all(np.isfinite(a)):
            continue
        out[label] = float(az.rhat(a))
    return out


# -- the verdicts ---------------------------------------------------------------------------------

def _findings(d: Diagnosis) -> tuple[Finding, ...]:
    th = THRESHOLDS
    out: list[Finding] = []
    failed = d.failure != 0
    if failed.any():
        out.append(Finding(Concern.NUMERICAL_FAILURE,
                           describe_failures(d.failure, d.failure_time, limit=3), int(np.min(d.failure_time[failed]))))
    low = d.ess < max(th["ess_fraction"] * d.n_particles, th["ess_floor"])
    if low.any():
        step = int(np.argmax(low.any(axis=0)))
        runs = int(np.sum(low[:, step]))
        out.append(Finding(Concern.DEGENERATE_WEIGHTS,
                           f"weights degenerate at step {step}: ESS = {np.min(d.ess[:, step]):.3g} of "
                           f"{d.n_particles} (< {th['ess_fraction']:.0%} of N, at least {th['ess_floor']:g}) in {runs} of {d.n_runs} run(s)", step))
    khat = d.pareto_khat
    if np.any(khat > th["khat"]):
        out.append(Finding(Concern.HEAVY_TAILED_WEIGHTS,
                           f"log Ẑ and weighted averages unreliable: Pareto k̂ = {np.nanmax(khat):.2f} > {th['khat']} "
                           f"in {int(np.sum(khat > th['khat']))} of {d.n_runs} run(s)", d.n_steps))
    sd = d.log_evidence_sd
    if sd > th["log_evidence_sd"]:
        out.append(Finding(Concern.EVIDENCE_SPREAD,
                           f"log Ẑ unreliable: sd across runs = {sd:.3g} nats > {th['log_evidence_sd']:g}"))
    bad = {k: v for k, v in d.rhat.items() if v > th["rhat"]}
    if bad:
        name = max(bad, key=bad.get)
        out.append(Finding(Concern.RUNS_DISAGREE,
                           f"runs disagree: R-hat = {bad[name]:.3f} > {th['rhat']} for {name} "
                           f"({len(bad)} of {len(d.rhat)} coordinates)"))
    if d.coalescence is not None and np.any(d.coalescence > 0):
        step = int(np.min(d.coalescence[d.coalescence > 0]))
        out.append(Finding(Concern.PATHS_COALESCED,
                           f"all final particles share one ancestor at step {step} or later in "
                           f"{int(np.sum(d.coalescence > 0))} of {d.n_runs} run(s)", step))
    return tuple(out)


# -- reading each kind of result ------------------------------------------------------------------

def _runs(a: Any, has_runs: bool) -> np.ndarray:
    a = np.asarray(a)
    return a if has_runs else a[None]


def _from_smc(result: Any, draws: dict[str, np.ndarray] | None, has_evidence: bool, source: str,
              images: np.ndarray | None = None) -> Diagnosis:
    has_runs = result.n_runs is not None
    log_w = _runs(result.log_weights, has_runs).astype(np.float64)
    max_w, entropy = _final_weight_stats(log_w)
    log_evidence = _runs(result.log_evidence, has_runs).astype(np.float64)
    if not has_evidence:
        log_evidence = np.full_like(log_evidence, np.nan)
    per_time = {}
    if isinstance(result.summaries, dict) and {"max_weight", "entropy"} <= set(result.summaries):
        per_time = {k: _runs(result.summaries[k], has_runs) for k in ("max_weight", "entropy")}
    counts = distinct_ancestors(_runs(result.ancestors, has_runs)) if result.ancestors is not None else None
    if draws is None:
        particles = jax.tree_util.tree_map(lambda a: _runs(a, has_runs), result.particles)
        leaves = jax.tree_util.tree_leaves(_equally_weighted(particles, log_w))
        draws = {f"x{i}" if len(leaves) > 1 else "x": np.asarray(leaf) for i, leaf in enumerate(leaves)
                 if np.issubdtype(np.asarray(leaf).dtype, np.floating)}
    d = Diagnosis(
        source=source, n_particles=int(log_w.shape[1]), ess=_runs(result.ess, has_runs).astype(np.float64),
        resampled=_runs(result.resampled, has_runs).astype(bool), log_evidence=log_evidence,
        failure=_runs(result.failure, has_runs), failure_time=_runs(result.failure_time, has_runs),
        final_max_weight=max_w, final_entropy=entropy, pareto_khat=pareto_khat(log_w),
        max_weight=per_time.get("max_weight"), entropy=per_time.get("entropy"),
        distinct_ancestors=counts, coalescence=None if counts is None else _coalescence(counts),
        rhat=_rhat(draws), final_log_weights=log_w, images=images)
    return _with_findings(d)


def _from_inference_data(idata: Any) -> Diagnosis:
    stats = idata.sample_stats
    if "particle_log_weight" in stats:
        log_w = np.asarray(stats["particle_log_weight"], dtype=np.float64)
    else:  # older exports: the weights of the resampled draws stand in for the particles'
        log_w = np.asarray(stats["log_weight"], dtype=np.float64)
    max_w, entropy = _final_weight_stats(log_w)
    n_chains = log_w.shape[0]
    failure = np.asarray(stats["failure"]) if "failure" in stats else np.zeros(n_chains, np.int32)
    failure_time = np.asarray(stats["failure_time"]) if "failure_time" in stats else np.full_like(failure, -1)
    ess = np.asarray(stats["ess"], dtype=np.float64)  # NaN past a run's last step (tempering stages)
    resampled = (np.asarray(stats["resampled"]).astype(bool) if "resampled" in stats
                 else np.zeros(ess.shape, bool))
    draws = {name: np.asarray(idata.posterior[name]) for name in idata.posterior.data_vars}
    images = _as_images(draws["x"], tuple(idata.posterior["x"].dims[2:])) if "x" in draws else None
    d = Diagnosis(
        source="InferenceData", n_particles=int(log_w.shape[1]), ess=ess, resampled=resampled,
        log_evidence=np.asarray(stats["log_evidence"], dtype=np.float64), failure=failure, failure_time=failure_time,
        final_max_weight=max_w, final_entropy=entropy, pareto_khat=pareto_khat(log_w), rhat=_rhat(draws),
        final_log_weights=log_w, images=images)
    return _with_findings(d)


def _as_images(samples: np.ndarray | None, event_dims: tuple[str, ...], limit: int = 16) -> np.ndarray | None:
    """Up to ``limit`` samples of run 0 as ``(n, H, W)`` images when they are images: a 2-D event, or a
    square number of ``pixel`` s; else None."""
    if samples is None:
        return None
    first = np.asarray(samples)[0, :limit]
    event = first.shape[1:]
    if len(event) == 2:
        return first
    side = math.isqrt(event[0]) if len(event) == 1 else 0
    if tuple(event_dims) == ("pixel",) and side * side == event[0] and side >= 4:
        return first.reshape(len(first), side, side)
    return None


def _with_findings(d: Diagnosis) -> Diagnosis:
    return dataclasses.replace(d, findings=_findings(d))


def diagnose(result: Any) -> Diagnosis:
    """Diagnose an :class:`smcflow.SMCResult`, a :class:`smcflow.ScaleResult`, an arviz
    ``InferenceData`` exported by smcflow, or any result with a ``to_inference_data()`` that writes the
    same groups. See the module docstring for every quantity and threshold.

    Engine results give R-hat on a final systematic resample (key 0) of their particles; ``scale``
    results on their ``samples`` (so the reward and the sampler output are what is compared).
    """
    from .result import SMCResult
    from .scaling.api import ScaleResult

    if isinstance(result, ScaleResult):
        has_runs = result.smc.n_runs is not None
        draws = {"x": _runs(result.samples, has_runs), "reward": _runs(result.sample_rewards, has_runs)}
        return _from_smc(result.smc, draws, result.has_evidence, f"scale({result.method})",
                         images=_as_images(draws["x"], result.event_dims))
    if isinstance(result, SMCResult):
        return _from_smc(result, None, True, "SMCResult")
    if hasattr(result, "sample_stats") and hasattr(result, "posterior"):
        return _from_inference_data(result)
    if callable(getattr(result, "to_inference_data", None)):  # other result types export what is needed
        return _from_inference_data(result.to_inference_data())
    raise TypeError(f"diagnose() takes an SMCResult, a ScaleResult or an smcflow InferenceData, got {type(result).__name__}")


def brief(result: Any, label: str = "SMCResult") -> str:
    """One line about an :class:`smcflow.SMCResult` (its ``repr``): sizes, log Ẑ, worst ESS, failures.

    Cheap (no arviz); a traced result (inside a ``jit``) says only that it is traced.
    """
    try:
        has_runs = result.n_runs is not None
        le = _runs(result.log_evidence, has_runs).astype(np.float64)
        ess = _runs(result.ess, has_runs)
        resampled = _runs(result.resampled, has_runs)
        failures = int(np.count_nonzero(_runs(result.failure, has_runs)))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError, TypeError):
        return f"{label}(traced)"
    r, n_times = ess.shape
    sizes = f"{r} runs x " if has_runs else ""
    if has_runs and r > 1:
        evidence = f"log Ẑ {np.mean(le):.4g} ± {np.std(le, ddof=1) / math.sqrt(r):.2g} (s.e. over runs)"
    else:
        evidence = f"log Ẑ {le[0]:.4g}"
    fail = "no failure" if failures == 0 else f"{failures} run(s) failed"
    return (f"{label}({sizes}{result.n_particles} particles, {n_times - 1} steps; {evidence}; min ESS "
            f"{np.min(ess):.3g}; {np.mean(np.sum(resampled, axis=1)):.3g} resamplings per run; {fail})")
