"""Export SMC results to arviz ``InferenceData`` and ``xarray.DataTree``.

arviz treats draws as equally weighted, so the ``posterior`` group holds equally weighted draws: for
an engine result, the particles *after a final resample*; for a :func:`smcflow.scale` result, its
``samples`` (the resampled particles, or the picked ones for ``best_of_n``). Dimension ``chain`` is the
independent run, ``draw`` the draw, ``step`` the SMC time index ``0..T``. The weights and per-step
statistics are kept in ``sample_stats``:

=========================  ==================  ==================================================
variable                   dims                meaning
=========================  ==================  ==================================================
``log_weight``             chain, draw         normalised log-weight of the particle each draw
                                               was copied from
``log_evidence``           chain               log Z estimate of the run (NaN when the method
                                               has none; then attribute ``evidence = "none"``)
``ess``                    chain, step         ESS after reweighting at each step
``resampled``              chain, step         resampling happened just before step t
``log_evidence_increment`` chain, step         log Z_t - log Z_{t-1}
``failure``                chain               numerical failure code (0: none)
``failure_time``           chain               time of that failure (-1: none)
``particle_log_weight``    chain, particle     normalised log-weights of the final particles
                                               themselves (what :func:`smcflow.diagnose` reads)
=========================  ==================  ==================================================

A :func:`smcflow.scale` export adds, when the result has them:

=========================  ==================  ==================================================
``tempering``              chain, step         the exponent ``lambda_k`` that multiplied the
                                               intermediate potential at step k (the schedule
                                               used: ramp, adaptive or replayed; the last is 1)
``pareto_khat``            chain               Pareto k-hat of the run's final weights (NaN when
                                               not computed)
=========================  ==================  ==================================================

and the attribute ``tempering`` names the rule (``"ramp (k/K)^2"``, ``"adaptive (target ESS 0.5)"``,
...).

Provenance is in the attributes of every group: ``inference_library``, ``smcflow_version``,
``plugins`` (the installed plugin distributions with their versions), and for ``scale`` results the
method, ``beta``, NFE, exactness and the tempering rule.

Note: arviz's own ``ess`` (autocorrelation along ``draw``) is not an SMC effective sample size;
use ``sample_stats.ess``.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .resampling import systematic

__all__ = ["to_inference_data", "to_datatree", "scale_inference_data", "variable_names", "provenance"]


def variable_names(particles: Any) -> list[str]:
    """Names of the particle pytree's leaves: ``x`` for a bare array, else their key paths."""
    flat, _ = jax.tree_util.tree_flatten_with_path(particles)
    if len(flat) == 1 and not flat[0][0]:
        return ["x"]
    names = []
    for path, _leaf in flat:
        name = re.sub(r"[^0-9A-Za-z_]+", "_", jax.tree_util.keystr(path)).strip("_")
        names.append(name or "x")
    return names


def provenance() -> dict[str, str]:
    """``smcflow_version`` and ``plugins``: the distributions offering entry points in group ``smcflow``
    with their versions (read from the installed metadata; no plugin is imported)."""
    from importlib.metadata import entry_points

    from . import __version__

    dists = {}
    for ep in entry_points(group="smcflow"):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            dists[dist.metadata["Name"]] = dist.version
    return {"smcflow_version": __version__, "plugins": ", ".join(f"{k} {v}" for k, v in sorted(dists.items()))}


def _with_chain(tree: Any, has_runs: bool) -> Any:
    """Every leaf with a run axis of length 1 added for a single run."""
    return tree if has_runs else jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], tree)


_SELECTION = {"resample": "equal (resampled)", "best": "one draw: the highest-reward particle",
              "all": "equal (unweighted particles)"}


def _build(posterior: dict, dims: dict, draw_log_weights: Any, result: Any, attrs: dict, has_evidence: bool = True,
           selection: str = "resample"):
    """``InferenceData`` from posterior arrays ``(chain, draw, ...)`` and an :class:`SMCResult`'s statistics."""
    import arviz as az
    import xarray as xr

    res = _with_chain(result, result.n_runs is not None)
    log_evidence = np.asarray(res.log_evidence, dtype=np.float64)
    if not has_evidence:
        log_evidence = np.full_like(log_evidence, np.nan)
    common = {"inference_library": "smcflow", **provenance(), **attrs,
              "evidence": "estimate" if has_evidence else "none"}
    with warnings.catch_warnings():  # one draw per chain (best-of-N) is intended, not a transposed array
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        ds_post = az.dict_to_dataset(posterior, library=None, dims=dims,
                                     attrs={**common, "weights": _SELECTION[selection]})
        ds_stats = az.dict_to_dataset({"log_weight": np.asarray(draw_log_weights)}, library=None, attrs=common)
    per_time = {
        "ess": np.asarray(res.ess),
        "resampled": np.asarray(res.resampled),
        "log_evidence_increment": np.asarray(res.log_evidence_increments),
    }
    extra = xr.Dataset(
        {
            "log_evidence": (["chain"], log_evidence),
            "failure": (["chain"], np.asarray(res.failure)),
            "failure_time": (["chain"], np.asarray(res.failure_time)),
            "particle_log_weight": (["chain", "particle"], np.asarray(res.log_weights)),
            **{name: (["chain", "step"], value) for name, value in per_time.items()},
        },
        coords={"chain": np.arange(log_evidence.shape[0]), "step": np.arange(per_time["ess"].shape[-1]),
                "particle": np.arange(np.shape(res.log_weights)[-1])},
    )
    ds_stats = xr.merge([ds_stats, extra], compat="override", join="outer").assign_attrs(common)
    return az.InferenceData(posterior=ds_post, sample_stats=ds_stats)


def to_inference_data(result, key: jax.Array | None = None, num_draws: int | None = None, model: Any = None,
                      attrs: dict[str, Any] | None = None):
    """arviz ``InferenceData`` with ``posterior`` (resampled draws) and ``sample_stats``.

    Args:
      result: an :class:`~smcflow.result.SMCResult`.
      key: PRNG key of the final resample (default ``jax.random.key(0)``, so exports are reproducible).
      num_draws: draws per chain (default N).
      model: the Feynman-Kac model that made ``result``. When it has ``observations`` and
        ``pointwise_log_likelihood(paths)`` (the filters of :mod:`smcflow.ssm` do) and the run kept its
        history and ancestors, the export also holds ``observed_data`` and ``log_likelihood`` (dims
        chain, draw, step: ``log p(y_t | x_t)`` along each draw's ancestral path), so that
        ``arviz.loo`` and ``arviz.waic`` run on it.
      attrs: more provenance for the attributes of every group (e.g. the model's name, the
        resampling scheme), next to ``smcflow_version`` and ``plugins``.
    """
    key = jax.random.key(0) if key is None else key
    has_runs = result.n_runs is not None
    particles, log_w = _with_chain(result.particles, has_runs), _with_chain(result.log_weights, has_runs)
    num = result.n_particles if num_draws is None else int(num_draws)

    def one(k, particles, log_w):
        idx = systematic(k, log_w, num)
        take = lambda a: jnp.take(a, idx, axis=0)  # noqa: E731
        return jax.tree_util.tree_map(take, particles), take(log_w), idx

    draws, draw_log_w, idx = jax.vmap(one)(jax.random.split(key, log_w.shape[0]), particles, log_w)
    posterior = {name: np.asarray(leaf) for name, leaf in zip(variable_names(draws), jax.tree_util.tree_leaves(draws))}
    idata = _build(posterior, {}, draw_log_w, result, dict(attrs or {}))
    if model is not None and hasattr(model, "pointwise_log_likelihood") and result.history is not None \
            and result.ancestors is not None:
        idata = _with_log_likelihood(idata, model, result, idx)
    return idata


def _with_log_likelihood(idata, model: Any, result: Any, idx: jax.Array):
    """Add ``observed_data`` and ``log_likelihood`` (chain, draw, step) to ``idata``."""
    import arviz as az

    has_runs = result.n_runs is not None
    paths = _with_chain(result.paths(), has_runs)  # leading (R, T+1, N)
    drawn = jax.tree_util.tree_map(lambda p, i: jax.vmap(lambda pr, ir: jnp.take(pr, ir, axis=1))(p, i),
                                   paths, jax.tree_util.tree_map(lambda _: idx, paths))
    log_lik = np.asarray(jax.vmap(model.pointwise_log_likelihood)(drawn))  # (R, draws, T+1)
    observed = np.asarray(jax.tree_util.tree_leaves(model.observations)[0])
    idata.add_groups(
        log_likelihood=az.dict_to_dataset({"y": log_lik}, library=None, dims={"y": ["step"]},
                                          coords={"step": np.arange(log_lik.shape[-1])}),
        observed_data=az.dict_to_dataset({"y": observed}, library=None, default_dims=[],
                                         dims={"y": ["step", *[f"y_dim_{i}" for i in range(observed.ndim - 1)]]},
                                         coords={"step": np.arange(observed.shape[0])}),
    )
    return idata


def to_datatree(result, key: jax.Array | None = None, num_draws: int | None = None):
    """``xarray.DataTree`` with the same groups as :func:`to_inference_data`."""
    return to_inference_data(result, key=key, num_draws=num_draws).to_datatree()


def scale_inference_data(result):
    """``InferenceData`` of a :class:`~smcflow.ScaleResult`: posterior ``x`` (its ``samples``, event
    axes named by ``result.event_dims``) and ``reward``; ``tempering`` (chain, step) and ``pareto_khat``
    (chain) in ``sample_stats`` next to the SMC statistics; method, beta, NFE, exactness and the
    tempering rule in attrs."""
    has_runs = result.smc.n_runs is not None
    samples = np.asarray(_with_chain(result.samples, has_runs))
    posterior = {"x": samples, "reward": np.asarray(_with_chain(result.sample_rewards, has_runs))}
    attrs = {"method": result.method, "exact": int(result.exact), "beta": float(np.mean(np.asarray(result.beta))),
             "nfe": int(result.nfe), "reward_evaluations": int(result.reward_evaluations),
             "tempering": str(getattr(result, "tempering_rule", "n/a"))}
    idata = _build(posterior, {"x": list(result.event_dims)}, _with_chain(result.sample_log_weights, has_runs),
                   result.smc, attrs, has_evidence=result.has_evidence, selection=result.selection)
    stats = idata.sample_stats
    extra = {}
    tempering = getattr(result, "tempering", None)
    if tempering is not None:
        table = np.asarray(_with_chain(tempering, has_runs), dtype=np.float64)
        if table.shape == (stats.sizes["chain"], stats.sizes["step"]):
            extra["tempering"] = (["chain", "step"], table)
    khat = getattr(result, "pareto_khat", None)
    if khat is not None:
        extra["pareto_khat"] = (["chain"], np.asarray(_with_chain(khat, has_runs), dtype=np.float64).reshape(-1))
    if extra:
        idata.sample_stats = stats.assign(extra).assign_attrs(stats.attrs)
    return idata
