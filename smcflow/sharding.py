"""Particles sharded over the devices of a ``jax.sharding.Mesh``: global or island resampling.

``smcflow.run(model, key, N, mesh=mesh, scope=...)`` lays the particle axis along one mesh axis
(``mesh_axis``, default the first) of ``D`` devices; JAX's own partitioner (GSPMD) places the work
and inserts the collectives.

* ``scope="global"``: one SMC run over all ``N`` particles, exactly the single-device algorithm. Each
  resampling needs every log-weight (an all-gather of ``N`` floats), every device computes the same
  ancestors, and the particles a device needs are moved to it. ``log Z`` is bookkept as on one device,
  and with the default partitionable threefry keys the random numbers do not depend on ``D``.
* ``scope="island"``: ``D`` independent SMC runs ("islands") of ``N / D`` particles, island ``d`` on
  device ``d``, each resampling inside itself (no collective in the loop). They combine at the end:
  with island estimates ``Ẑ_d``,

      Ẑ = (1/D) sum_d Ẑ_d,        W_{d,i} ∝ Ẑ_d W^{(d)}_i,

  so ``exp(log Ẑ)`` stays unbiased (a mean of unbiased estimates) and the weighted particles target
  the same law. Per-step outputs: ``ess`` is the sum of the islands' ESS, ``resampled`` whether any
  island resampled, ``log_evidence_increments`` the increments of the combined running estimate
  ``log((1/D) sum_d Ẑ_{d,t})``; ancestor indices refer to the concatenated particles.

Island runs trade variance for communication: their ``log Ẑ`` is less precise than a global run's with
the same ``N``, but no step waits for the other devices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp

__all__ = ["SCOPES", "Placement", "ReplicatedResampler", "placement", "combine_islands"]

SCOPES = ("global", "island")


@dataclass(frozen=True)
class Placement:
    """Where the particles live: ``mesh``, the particle axis name ``axis`` and the ``scope``."""

    mesh: Any
    axis: str
    scope: str

    @property
    def n_devices(self) -> int:
        return int(self.mesh.shape[self.axis])

    def replicate(self, tree: Any) -> Any:
        """Every array leaf of ``tree`` on every device (the log-weights before a resampling)."""
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.tree_util.tree_map(lambda a: lax.with_sharding_constraint(a, sharding), tree)

    def constrain(self, tree: Any) -> Any:
        """Shard the leading axis of every array leaf of ``tree`` along the particle axis."""
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(self.axis))
        return jax.tree_util.tree_map(lambda a: lax.with_sharding_constraint(a, sharding) if jnp.ndim(a) else a, tree)


@dataclass(frozen=True)
class ReplicatedResampler:
    """``resampler`` computed on every device from the all-gathered log-weights, so that every device
    holds the same ancestors and only the particle gather crosses devices (left alone, the partitioner
    may shard the resampler's own prefix sums and scatters along the particle axis, which on host
    devices costs tens of times the resampling itself)."""

    resampler: Any
    placement: Placement

    def __call__(self, key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
        return self.placement.replicate(self.resampler(key, self.placement.replicate(log_weights), num))


def placement(mesh: Any, scope: str, n_particles: int, mesh_axis: str | None = None) -> Placement | None:
    """Check ``mesh`` / ``scope`` / ``mesh_axis`` against ``n_particles``; None without a mesh."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}; use one of {SCOPES}")
    if mesh is None:
        if scope != "global" or mesh_axis is not None:
            raise ValueError(f"scope={scope!r} / mesh_axis={mesh_axis!r} need a mesh=jax.sharding.Mesh(...)")
        return None
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    axis = mesh.axis_names[0] if mesh_axis is None else mesh_axis
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh_axis={axis!r} is not an axis of the mesh (its axes: {mesh.axis_names})")
    n_devices = int(mesh.shape[axis])
    if n_particles % n_devices:
        raise ValueError(f"n_particles={n_particles} is not divisible by the {n_devices} devices of mesh axis "
                         f"{axis!r}; use a multiple of {n_devices} (e.g. {n_devices * -(-n_particles // n_devices)})")
    return Placement(mesh, axis, scope)


def _island_major(a: jax.Array) -> jax.Array:
    """``(D, n, ...)`` -> ``(D * n, ...)``."""
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def _time_major(a: jax.Array) -> jax.Array:
    """``(D, T+1, n, ...)`` -> ``(T+1, D * n, ...)``."""
    a = jnp.moveaxis(a, 0, 1)
    return a.reshape(a.shape[:1] + (a.shape[1] * a.shape[2],) + a.shape[3:])


def combine_islands(fields: dict[str, Any]) -> dict[str, Any]:
    """One result's fields from ``D`` islands' (every leaf with a leading island axis), as described
    in the module docstring."""
    log_z = fields["log_evidence"]  # (D,)
    n_islands, n = fields["log_weights"].shape
    log_d = jnp.log(n_islands).astype(log_z.dtype)
    total = logsumexp(log_z)
    log_w = fields["log_weights"] + jnp.where(jnp.isneginf(total), -log_d, log_z - total)[:, None]
    running = logsumexp(jnp.cumsum(fields["log_evidence_increments"], axis=1), axis=0) - log_d
    failed = fields["failure"] != 0
    first = jnp.argmin(jnp.where(failed, fields["failure_time"], jnp.iinfo(jnp.int32).max))
    out = {
        "particles": jax.tree_util.tree_map(_island_major, fields["particles"]),
        "log_weights": _island_major(log_w),
        "log_evidence": total - log_d,
        "ess": jnp.sum(fields["ess"], axis=0),
        "resampled": jnp.any(fields["resampled"], axis=0),
        "log_evidence_increments": jnp.concatenate([running[:1], jnp.diff(running)]),
        "failure": fields["failure"][first],
        "failure_time": fields["failure_time"][first],
        "ancestors": None,
        "history": None,
        "summaries": None,
    }
    if fields.get("ancestors") is not None:
        offsets = (jnp.arange(n_islands, dtype=jnp.int32) * n)[:, None, None]
        out["ancestors"] = _time_major(fields["ancestors"] + offsets)
    if fields.get("history") is not None:
        out["history"] = jax.tree_util.tree_map(_time_major, fields["history"])
    return out
