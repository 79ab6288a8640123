"""Particles sharded over the devices of a ``jax.sharding.Mesh``: global or island resampling.

``smcflow.run(model, key, N, mesh=mesh, scope=...)`` lays the particle axis along one mesh axis
(``mesh_axis``, default the first) of ``D`` devices; JAX's own partitioner (GSPMD) places the work
and inserts the collectives.

* ``scope="global"``: one SMC run over all ``N`` particles, exactly the single-device algorithm. Each
  resampling needs every log-weight (an all-gather of ``N`` floats), every device computes the same
  ancestors, and each device receives the distinct rows it needs from the others in one ``all_to_all``
  of fixed packets of ``ceil(n / D)`` rows (:func:`gather_needed`; an all-gather of the particles
  when some device needs more rows from another than a packet holds). ``log Z`` is bookkept as on one
  device, and with the default partitionable threefry keys the random numbers do not depend on ``D``.
* ``scope="island"``: ``D`` SMC runs ("islands") of ``N / D`` particles, island ``d`` on device ``d``
  and drawing from ``fold_in(key, d)``, each resampling inside itself (no collective in the loop).
  They combine at the end: with island estimates ``Ẑ_d``,

      Ẑ = (1/D) sum_d Ẑ_d,        W_{d,i} ∝ Ẑ_d W^{(d)}_i,

  so ``exp(log Ẑ)`` stays unbiased (a mean of unbiased estimates) and the weighted particles target
  the same law. Per-step outputs: ``ess`` is the sum of the islands' ESS, ``resampled`` whether any
  island resampled, ``log_evidence_increments`` the increments of the combined running estimate
  ``log((1/D) sum_d Ẑ_{d,t})``; ancestor indices refer to the concatenated particles.

**Island exchange** (``island_exchange=k``; the island particle filter, or "double bootstrap", of
Vergé, Dubarry, Del Moral & Moulines, 2015). Without it the islands never interact. With it, after the
steps into times ``k, 2k, ...`` (not the final time, where it would only add noise) the islands are
resampled as wholes (:class:`IslandExchange`): ``D`` island ancestors ``A_1..A_D`` are drawn by
systematic resampling with probabilities ``Ẑ_d / sum_e Ẑ_e`` (from ``fold_in(fold_in(key, D), t)`` at
time ``t``; ``D`` is the index after the last island's), island ``d`` takes island ``A_d``'s particles,
weights and ESS, and every island's running estimate becomes the mean
``log((1/D) sum_e Ẑ_e)``. Each island keeps its own failure record, so no failure is lost when
its particles are overwritten. The estimate above is unchanged in form: ``Ẑ`` is the product over
the periods between exchanges of the mean of the islands' increments over the period, and an
unbiased selection of islands (expected copies ``D Ẑ_d / sum_e Ẑ_e``) keeps ``E[Ẑ] = Z``. The
bookkeeping of the per-step outputs after an exchange at time ``t``: ``ancestors[t]`` composes the
island copy with the step's own resampling (particle ``i`` of island ``d`` descends from particle
``ancestors[t, A_d, i]`` of island ``A_d``), ``resampled[t]`` is true, ``ess[t]`` is the ESS after
the copy, and the combined running estimate is computed from the islands' running estimates (reset
included) instead of their increments. The other steps communicate nothing; an exchange (under
``lax.cond``) costs an all-gather of the ``D`` island estimates and the move of whole islands between
devices (GSPMD all-gathers the particles and weights).

Island runs trade variance for communication: their ``log Ẑ`` is less precise than a global run's with
the same ``N``, but no step waits for the other devices; exchanges buy part of the precision back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from .kernel import gather_rows
from .resampling import systematic

__all__ = ["SCOPES", "Placement", "ReplicatedResampler", "IslandExchange", "placement", "exchange_rule",
           "combine_islands", "gather_needed", "exchange_capacity"]

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
    devices costs tens of times the resampling itself). The kernel moves the particles with its
    :meth:`gather_particles`, which sends only the rows each device needs (:func:`gather_needed`)."""

    resampler: Any
    placement: Placement

    def __call__(self, key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
        return self.placement.replicate(self.resampler(key, self.placement.replicate(log_weights), num))

    def gather_particles(self, particles: Any, ancestors: jax.Array) -> Any:
        return gather_needed(particles, ancestors, self.placement)[0]


def exchange_capacity(n_local: int, n_devices: int) -> int:
    """Rows a device sends to each other device in one :func:`gather_needed`: ``c = ceil(n / D)``, so
    the exchange moves ``(D - 1) c`` rows per device (padding included), about ``1/D`` of what an
    all-gather of the particles moves."""
    return max(1, -(-n_local // n_devices))


@jax.custom_batching.custom_vmap
def _any_over_batch(flag: jax.Array) -> jax.Array:
    """``flag`` itself; under ``vmap``, one unbatched ``any`` over the batch. A ``lax.cond`` on a
    batched predicate becomes a select that runs both branches; with this the vmapped runs take one
    branch together (the all-gather if any run needs it, which is exact for every run)."""
    return flag


@_any_over_batch.def_vmap
def _any_over_batch_rule(axis_size, in_batched, flag):
    del axis_size
    return (jnp.any(flag) if in_batched[0] else flag), False


def gather_needed(particles: Any, ancestors: jax.Array, where: Placement) -> tuple[Any, jax.Array]:
    """``particles[ancestors]`` with the particles sharded along ``where.axis`` and the ``(N,)``
    ancestors replicated, moving only the rows each device needs. Returns the gathered particles
    (sharded like the input) and whether the all-gather fallback ran.

    Device ``d`` holds particles ``[d n, (d + 1) n)`` and must end up with ``x[a_i]`` for its positions
    ``i`` in the same range. Every device knows every ancestor, so each can work out, without talking,
    which *distinct* rows every other device needs from it. One ``all_to_all`` then sends to each other
    device those rows in a fixed packet of ``c = exchange_capacity(n, D)`` slots (padded), in the order
    of their local index; the receiver finds row ``a_i`` from source ``s`` at slot
    ``#{needed rows of s below a_i}``, and its own rows locally. If some device needs more than ``c``
    distinct rows from another (weights concentrated on one device's particles), every device takes the
    all-gather path instead: the predicate is the ``pmax`` of the devices' counts, so all agree, and
    under ``vmap`` (``n_runs``) it is one ``any`` over the runs, so a single branch runs. Pure data
    movement: the result is bitwise ``jnp.take(particles, ancestors, axis=0)``.
    """
    mesh, axis, n_devices = where.mesh, where.axis, where.n_devices
    if n_devices == 1:
        return gather_rows(particles, ancestors), jnp.bool_(False)
    n_total = ancestors.shape[0]
    n_local = n_total // n_devices
    cap = exchange_capacity(n_local, n_devices)
    target = jnp.arange(n_total, dtype=jnp.int32) // n_local  # (N,) the device each position lives on

    def local(x, ancestors):
        me = lax.axis_index(axis)
        source, offset = ancestors // n_local, ancestors % n_local  # (N,) device and row of each ancestor
        my_source, my_offset = (lax.dynamic_slice_in_dim(a, me * n_local, n_local) for a in (source, offset))
        needs = jnp.zeros((n_devices, n_local), bool).at[my_source, my_offset].set(True)  # I need row j of s
        off_device = jnp.where(jnp.arange(n_devices) == me, 0, needs.sum(axis=1))
        overflow = _any_over_batch(lax.pmax(jnp.max(off_device), axis) > cap)  # the same on every device

        def by_all_gather(x):
            full = jax.tree_util.tree_map(lambda leaf: lax.all_gather(leaf, axis, tiled=True), x)
            return gather_rows(full, my_source * n_local + my_offset)

        def by_all_to_all(x):
            wanted = jnp.zeros((n_devices, n_local), bool).at[target, offset].max(source == me)  # t needs my row j
            slots = jax.vmap(lambda w: jnp.nonzero(w, size=cap, fill_value=0)[0])(wanted)  # (D, c) rows to send
            rank = jnp.cumsum(needs, axis=1) - 1  # (D, n): slot of row j of device s in s's packet to me
            pool_index = jnp.where(my_source == me, my_offset, n_local + my_source * cap + rank[my_source, my_offset])

            def move(leaf):
                received = lax.all_to_all(jnp.take(leaf, slots, axis=0), axis, 0, 0, tiled=False)  # (D, c, ...)
                pool = jnp.concatenate([leaf, received.reshape((n_devices * cap,) + leaf.shape[1:])])
                return jnp.take(pool, pool_index, axis=0)

            return jax.tree_util.tree_map(move, x)

        return lax.cond(overflow, by_all_gather, by_all_to_all, x), overflow

    spec, replicated = jax.sharding.PartitionSpec(axis), jax.sharding.PartitionSpec()
    gathered, overflow = jax.shard_map(local, mesh=mesh, in_specs=(spec, replicated), out_specs=(spec, replicated),
                                       check_vma=False)(particles, ancestors.astype(jnp.int32))
    return gathered, overflow


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


@dataclass(frozen=True)
class IslandExchange:
    """Resample whole islands every ``every`` steps, as described in the module docstring."""

    every: int

    def due(self, time: jax.Array, n_steps: int) -> jax.Array:
        """Whether to exchange at ``time`` (after the step into it): a multiple of ``every`` before the end."""
        return (time % self.every == 0) & (time < n_steps)

    def select(self, key: jax.Array, log_z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Island ancestors ``(D,)`` drawn with probabilities ``∝ Ẑ_d`` and the islands' new running
        ``log Ẑ`` (all ``log((1/D) sum_d Ẑ_d)``); when every island is dead, no island moves."""
        n_islands = log_z.shape[0]
        total = logsumexp(log_z)
        dead = jnp.isneginf(total)
        ancestors = systematic(key, jnp.where(dead, 0.0, log_z - total), n_islands)
        ancestors = jnp.where(dead, jnp.arange(n_islands, dtype=ancestors.dtype), ancestors)
        return ancestors, jnp.full_like(log_z, total - jnp.log(n_islands).astype(log_z.dtype))

    def apply(self, key: jax.Array, state: Any, where: Placement) -> tuple[Any, jax.Array]:
        """The islands' state (an :class:`~smcflow.kernel.SMCState` with a leading island axis) after the
        exchange, and the island ancestors. The selection is computed on every device from the
        all-gathered island estimates; the failure record stays with each island."""
        ancestors, log_z = self.select(key, where.replicate(state.log_evidence))
        ancestors = where.replicate(ancestors)
        take = lambda a: jnp.take(a, ancestors, axis=0)
        return state._replace(particles=jax.tree_util.tree_map(take, state.particles),
                              log_weights=take(state.log_weights), ess=take(state.ess), log_evidence=log_z), ancestors


def exchange_rule(every: Any, where: Placement | None) -> IslandExchange | None:
    """Check ``island_exchange=every`` (None: no exchange) against the placement."""
    if every is None:
        return None
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)):
        raise TypeError(f"island_exchange must be a positive int (the steps between exchanges) or None, got {every!r}")
    if every < 1:
        raise ValueError(f"island_exchange must be a positive int (the steps between exchanges) or None, got {every!r}")
    if where is None or where.scope != "island":
        got = "no mesh" if where is None else f"scope={where.scope!r}"
        raise ValueError(f"island_exchange={every} exchanges between islands: it needs mesh=jax.sharding.Mesh(...) and "
                         f"scope='island' (got {got})")
    return IslandExchange(int(every))


def _island_major(a: jax.Array) -> jax.Array:
    """``(D, n, ...)`` -> ``(D * n, ...)``."""
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def _time_major(a: jax.Array) -> jax.Array:
    """``(D, T+1, n, ...)`` -> ``(T+1, D * n, ...)``."""
    a = jnp.moveaxis(a, 0, 1)
    return a.reshape(a.shape[:1] + (a.shape[1] * a.shape[2],) + a.shape[3:])


def combine_islands(fields: dict[str, Any]) -> dict[str, Any]:
    """One result's fields from ``D`` islands' (every leaf with a leading island axis), as described
    in the module docstring. Runs with exchanges also hand ``island_ancestors`` and
    ``running_log_evidence``, both ``(D, T+1)``: the island each island copied at each time (its own
    index where there was no exchange) and the islands' running ``log Ẑ_d`` after it."""
    log_z = fields["log_evidence"]  # (D,)
    n_islands, n = fields["log_weights"].shape
    log_d = jnp.log(n_islands).astype(log_z.dtype)
    total = logsumexp(log_z)
    log_w = fields["log_weights"] + jnp.where(jnp.isneginf(total), -log_d, log_z - total)[:, None]
    if fields.get("running_log_evidence") is not None:  # reset by the exchanges: not a sum of increments
        running = logsumexp(fields["running_log_evidence"], axis=0) - log_d
    else:
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
        source = fields.get("island_ancestors")
        source = jnp.arange(n_islands, dtype=jnp.int32)[:, None] if source is None else source.astype(jnp.int32)
        offsets = (source * n)[:, :, None]
        out["ancestors"] = _time_major(fields["ancestors"] + offsets)
    if fields.get("history") is not None:
        out["history"] = jax.tree_util.tree_map(_time_major, fields["history"])
    return out
