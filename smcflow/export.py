"""Export SMC results to arviz ``InferenceData`` and ``xarray.DataTree``.

arviz treats draws as equally weighted, so the ``posterior`` group holds the particles *after a final
resample*: dimension ``chain`` is the independent run, ``draw`` the resampled particle. The weights
are kept in ``sample_stats``:

=========================  ==================  ==================================================
variable                   dims                meaning
=========================  ==================  ==================================================
``log_weight``             chain, draw         normalised log-weight of the particle each draw
                                               was copied from
``log_evidence``           chain               log Z estimate of the run
``ess``                    chain, time         ESS after reweighting at each time
``resampled``              chain, time         resampling happened just before time t
``log_evidence_increment`` chain, time         log Z_t - log Z_{t-1}
``failure``                chain               numerical failure code (0: none)
=========================  ==================  ==================================================

Note: arviz's own ``ess`` (autocorrelation along ``draw``) is not an SMC effective sample size;
use ``sample_stats.ess``.
"""
from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["to_inference_data", "to_datatree", "variable_names"]


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


def _with_chain(result):
    """Fields with a run axis of length 1 added for a single run."""
    if result.n_runs is not None:
        return result
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], result)


def _draws(result, key, num):
    """Resampled particles and the log-weights of their sources, with a chain axis."""
    from .validation import resolve_resampler

    scheme = resolve_resampler("systematic")
    res = _with_chain(result)
    num = res.n_particles if num is None else int(num)

    def one(k, particles, log_w):
        idx = scheme(k, log_w, num)
        take = lambda a: jnp.take(a, idx, axis=0)  # noqa: E731
        return jax.tree_util.tree_map(take, particles), take(log_w)

    keys = jax.random.split(key, res.n_runs)
    draws, log_w = jax.vmap(one)(keys, res.particles, res.log_weights)
    return res, draws, log_w


def to_inference_data(result, key: jax.Array | None = None, num_draws: int | None = None):
    """arviz ``InferenceData`` with ``posterior`` (resampled draws) and ``sample_stats``.

    Args:
      result: an :class:`~smcflow.result.SMCResult`.
      key: PRNG key of the final resample (default ``jax.random.key(0)``, so exports are reproducible).
      num_draws: draws per chain (default N).
    """
    import arviz as az

    key = jax.random.key(0) if key is None else key
    res, draws, draw_log_w = _draws(result, key, num_draws)
    names = variable_names(draws)
    posterior = {name: np.asarray(leaf) for name, leaf in zip(names, jax.tree_util.tree_leaves(draws))}
    sample_stats = {
        "log_weight": np.asarray(draw_log_w),
        "log_evidence": np.asarray(res.log_evidence),
        "ess": np.asarray(res.ess),
        "resampled": np.asarray(res.resampled),
        "log_evidence_increment": np.asarray(res.log_evidence_increments),
        "failure": np.asarray(res.failure),
    }
    n_times = sample_stats["ess"].shape[-1]
    dims = {
        "log_evidence": [],
        "failure": [],
        "ess": ["time"],
        "resampled": ["time"],
        "log_evidence_increment": ["time"],
    }
    # arviz gives every variable (chain, draw) leading dims; run-level stats have no draw axis.
    ds_stats = az.dict_to_dataset(
        {"log_weight": sample_stats.pop("log_weight")}, library=None, attrs={"inference_library": "smcflow"}
    )
    import xarray as xr

    chain = np.arange(res.n_runs)
    extra = xr.Dataset(
        {name: (["chain", *dims[name]], value) for name, value in sample_stats.items()},
        coords={"chain": chain, "time": np.arange(n_times)},
    )
    ds_stats = xr.merge([ds_stats, extra], compat="override", join="outer")
    ds_post = az.dict_to_dataset(posterior, library=None, attrs={"inference_library": "smcflow", "weights": "equal (resampled)"})
    return az.InferenceData(posterior=ds_post, sample_stats=ds_stats)


def to_datatree(result, key: jax.Array | None = None, num_draws: int | None = None):
    """``xarray.DataTree`` with the same groups as :func:`to_inference_data`."""
    return to_inference_data(result, key=key, num_draws=num_draws).to_datatree()
