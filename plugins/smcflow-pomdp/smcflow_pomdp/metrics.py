"""Belief metrics (plugin kind ``belief_metric``): ``tv``, ``w1``, ``w2``, ``sinkhorn``, ``mmd``, ``hilbert``.

Every metric is called as ``metric(b1, b2) -> ()`` on two beliefs of the same kind (see
:mod:`smcflow_pomdp.beliefs`), as ``metric.pairwise(B1, B2=None) -> (n1, n2)`` on two batches (the
distance matrix; ``B2=None`` means ``B1``) and as ``metric.paired(B1, B2) -> (n,)`` on two batches of
equal size (``d(B1[i], B2[i])``). Beliefs are checked before anything is computed, and the
computation is one jitted program per metric configuration and input shape; a metric is a pytree
whose numbers (``epsilon``, ``bandwidth``, ``cost``, ...) are leaves, so changing them does not
recompile.

=============  ======================================  ==============================================
name           discrete beliefs ``p, q`` over S states  weighted particle sets ``(x, w), (y, v)``
=============  ======================================  ==============================================
``tv``         ``1/2 sum_s |p_s - q_s|``                 the same over the union of atoms (equal atoms
                                                        merged)
``w1``, ``w2`` ``W_p`` for the ground metric ``cost``    ``W_p`` for the Euclidean ground metric: sorted
               (default 0/1, then ``W_p = tv^(1/p)``);  closed form in 1-D, host LP in more dimensions
               otherwise a host LP
``sinkhorn``   ``<P_eps, C^p>^(1/p)``, ``C = cost``      the same with ``C_ij = ||x_i - y_j||``
               (default 0/1)
``mmd``        Gaussian-kernel MMD between the states'  ``sqrt`` of the weighted V-statistic
               embeddings ``points`` (default one-hot)  ``sum w w k + sum v v k - 2 sum w v k``
``hilbert``    ``log max_s p_s/q_s - log min_s p_s/q_s`` (not defined)
               over the common support; ``inf`` when
               the supports differ
=============  ======================================  ==============================================

The Gaussian kernel is ``k(x, y) = exp(-||x - y||^2 / (2 bandwidth^2))``. ``sinkhorn`` tends to
``W_p`` as ``epsilon -> 0`` (``0 <= <P_eps, C^p> - W_p^p <= epsilon log(n m)``); it is the
differentiable one (implicit gradients, :mod:`smcflow_pomdp.sinkhorn`). The exact LP paths run on the
host (:mod:`smcflow_pomdp.ot`) and are not differentiable.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from smcflow.errors import SMCNumericalError

from ._checks import positive
from .beliefs import ParticleBelief, as_pair
from .ot import SOLVERS, ot_cost, sorted_cdf, wasserstein_1d_power
from .sinkhorn import SinkhornOutput, sinkhorn_batch

__all__ = ["BeliefMetric", "TV", "Wasserstein", "Sinkhorn", "MMD", "Hilbert", "METRICS", "pair_map"]

#: how many entries of the ``(pairs, n, m)`` blocks a pairwise evaluation holds at once
CHUNK_ENTRIES = 1 << 22


def pair_map(fn, xs: Any, ys: Any, entries_per_pair: int) -> jax.Array:
    """``fn(x_i, y_j)`` for every pair of the leading axes of the pytrees ``xs``, ``ys``: ``(n1, n2)``.

    Pairs are evaluated in vmapped chunks of about ``CHUNK_ENTRIES / entries_per_pair`` pairs.
    """
    n1, n2 = (jax.tree_util.tree_leaves(t)[0].shape[0] for t in (xs, ys))
    i, j = jnp.repeat(jnp.arange(n1), n2), jnp.tile(jnp.arange(n2), n1)
    take = lambda tree, k: jax.tree_util.tree_map(lambda a: a[k], tree)  # noqa: E731
    batch = int(max(1, min(n1 * n2, CHUNK_ENTRIES // max(entries_per_pair, 1))))
    out = lax.map(lambda ij: fn(take(xs, ij[0]), take(ys, ij[1])), (i, j), batch_size=batch)
    return out.reshape(n1, n2)


def _row_map(fn, xs: jax.Array, ys: Any, entries_per_row: int) -> jax.Array:
    """``fn(x_i, ys) -> (n2,)`` for every row ``x_i`` of ``xs``, chunked like :func:`pair_map`."""
    batch = int(max(1, min(xs.shape[0], CHUNK_ENTRIES // max(entries_per_row, 1))))
    return lax.map(lambda x: fn(x, ys), xs, batch_size=batch)


def _concrete(value: Any) -> bool:
    return isinstance(value, (int, float, np.ndarray, np.generic, jax.Array)) and not isinstance(value, jax.core.Tracer)


def _cost_matrix(cost: Any) -> Any:
    """A checked ``(S, S)`` float32 cost matrix (finite, >= 0), or ``cost`` unchanged while tracing."""
    if cost is None or not _concrete(cost):
        return cost
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cost must be a square (S, S) matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("cost must hold finite entries >= 0")
    return jnp.asarray(c, jnp.float32)


def _power(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 1:
        raise ValueError(f"p must be a number >= 1 (1 or 2 for W1, W2), got {p!r}")
    return float(p)


def _sq_dist(x: jax.Array, y: jax.Array) -> jax.Array:
    """``||x_i - y_j||^2`` for particles ``(n, d)``, ``(m, d)``."""
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def _ground_cost(x: jax.Array, y: jax.Array, p: float) -> jax.Array:
    """``||x_i - y_j||^p`` (no square root for ``p = 2``)."""
    sq = _sq_dist(x, y)
    return sq if p == 2 else jnp.sqrt(sq) ** p


def _zero_one(n_states: int, dtype) -> jax.Array:
    return 1.0 - jnp.eye(n_states, dtype=dtype)


def _tv(p: jax.Array, q: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)


def _tv_pairwise(P: jax.Array, Q: jax.Array) -> jax.Array:
    return _row_map(lambda p, Q: _tv(p[None], Q), P, Q, Q.size)


class BeliefMetric:
    """Base class: checks the beliefs, then runs the jitted single-pair or pairwise kernel.

    Subclasses implement ``discrete(p, q)`` and ``particles(x, y)`` (checked inputs; ``x`` and ``y``
    are :class:`~smcflow_pomdp.beliefs.ParticleBelief` with particles ``(n, d)``), may override
    ``pairwise_discrete`` / ``pairwise_particles`` with faster batched forms, and refuse what they
    cannot measure in ``check(kind, belief)``.
    """

    name: ClassVar[str] = "metric"

    def __call__(self, b1: Any, b2: Any) -> jax.Array:
        kind, x, y = as_pair(b1, b2)
        self.check(kind, x)
        return _single(self, kind, x, y)

    def pairwise(self, beliefs1: Any, beliefs2: Any = None) -> jax.Array:
        """The distance matrix ``(n1, n2)`` between two batches of beliefs (``beliefs2=None``: ``beliefs1``)."""
        kind, xs, ys = as_pair(beliefs1, beliefs1 if beliefs2 is None else beliefs2, ("beliefs1", "beliefs2"), batch=True)
        self.check(kind, xs)
        return _pairwise(self, kind, xs, ys)

    def paired(self, beliefs1: Any, beliefs2: Any) -> jax.Array:
        """The distances ``(n,)`` between ``beliefs1[i]`` and ``beliefs2[i]`` (two batches of ``n``)."""
        kind, xs, ys = _checked_pair_batches(self, beliefs1, beliefs2)
        return _paired(self, kind, xs, ys)

    def check(self, kind: str, belief: Any) -> None:
        """Refuse, with a message naming the argument, a belief this metric cannot measure."""

    def discrete(self, p: jax.Array, q: jax.Array) -> jax.Array:
        raise NotImplementedError

    def particles(self, x: ParticleBelief, y: ParticleBelief) -> jax.Array:
        raise NotImplementedError

    def pairwise_discrete(self, P: jax.Array, Q: jax.Array) -> jax.Array:
        return pair_map(self.discrete, P, Q, P.shape[-1] ** 2)

    def pairwise_particles(self, X: ParticleBelief, Y: ParticleBelief) -> jax.Array:
        return pair_map(self.particles, X, Y, X.log_weights.shape[-1] * Y.log_weights.shape[-1])


@partial(jax.jit, static_argnames="kind")
def _single(metric: BeliefMetric, kind: str, x: Any, y: Any) -> jax.Array:
    return metric.discrete(x, y) if kind == "discrete" else metric.particles(x, y)


@partial(jax.jit, static_argnames="kind")
def _paired(metric: BeliefMetric, kind: str, xs: Any, ys: Any) -> jax.Array:
    return jax.vmap(metric.discrete if kind == "discrete" else metric.particles)(xs, ys)


def _checked_pair_batches(metric: Any, beliefs1: Any, beliefs2: Any) -> tuple[str, Any, Any]:
    """``(kind, xs, ys)`` of two batches of equally many beliefs, checked by ``metric``."""
    kind, xs, ys = as_pair(beliefs1, beliefs2, ("beliefs1", "beliefs2"), batch=True)
    n1, n2 = (jax.tree_util.tree_leaves(b)[0].shape[0] for b in (xs, ys))
    if n1 != n2:
        raise ValueError(f"paired distances need batches of equal size, got {n1} and {n2} beliefs")
    metric.check(kind, xs)
    return kind, xs, ys


@partial(jax.jit, static_argnames="kind")
def _pairwise(metric: BeliefMetric, kind: str, xs: Any, ys: Any) -> jax.Array:
    return metric.pairwise_discrete(xs, ys) if kind == "discrete" else metric.pairwise_particles(xs, ys)


def _check_cost(cost: Any, kind: str, belief: Any, metric: str) -> None:
    if cost is None:
        return
    if kind == "particles":
        raise ValueError(f"{metric}: cost= applies to discrete beliefs; particle beliefs use the Euclidean "
                         "ground metric")
    n_states = belief.shape[-1]
    if tuple(cost.shape) != (n_states, n_states):
        raise ValueError(f"{metric}: cost has shape {tuple(cost.shape)}, but the beliefs are over {n_states} "
                         f"states: it must be ({n_states}, {n_states})")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TV(BeliefMetric):
    """Total variation ``sup_A |P(A) - Q(A)|``."""

    name: ClassVar[str] = "tv"

    def discrete(self, p, q):
        return _tv(p, q)

    def particles(self, x, y):
        # 1 - sum over distinct atoms of min(P(atom), Q(atom)); particle i of x stands for the share
        # w_i / P(x_i) of its atom, so summing over particles counts each atom once
        w, v = jnp.exp(x.log_weights), jnp.exp(y.log_weights)
        same = lambda a, b: jnp.all(a[:, None, :] == b[None, :, :], axis=-1)  # noqa: E731
        p_at_x, q_at_x = same(x.particles, x.particles) @ w, same(x.particles, y.particles) @ v
        share = jnp.where(w > 0, w / jnp.where(p_at_x > 0, p_at_x, 1.0), 0.0)
        return jnp.clip(1.0 - jnp.sum(share * jnp.minimum(p_at_x, q_at_x)), 0.0, 1.0)

    def pairwise_discrete(self, P, Q):
        return _tv_pairwise(P, Q)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Hilbert(BeliefMetric):
    """Hilbert's projective metric on the simplex, over the common support (``inf`` if supports differ)."""

    name: ClassVar[str] = "hilbert"

    def check(self, kind, belief):
        if kind == "particles":
            raise TypeError("hilbert is defined for discrete beliefs (probability vectors), not particle sets")

    def discrete(self, p, q):
        both = (p > 0) & (q > 0)
        same_support = jnp.all(both == ((p > 0) | (q > 0)), axis=-1)
        ratio = jnp.log(jnp.where(both, p, 1.0)) - jnp.log(jnp.where(both, q, 1.0))
        spread = jnp.max(jnp.where(both, ratio, -jnp.inf), axis=-1) - jnp.min(jnp.where(both, ratio, jnp.inf), axis=-1)
        return jnp.where(same_support, spread, jnp.inf)

    def pairwise_discrete(self, P, Q):
        return _row_map(lambda p, Q: self.discrete(p[None], Q), P, Q, Q.size)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Wasserstein(BeliefMetric):
    """Exact ``W_p``: ``p`` and ``solver`` (``"auto"``, ``"pot"`` or ``"linprog"``) are static, ``cost`` a leaf."""

    p: float = field(default=1.0, metadata={"static": True})
    cost: Any = None
    solver: str = field(default="auto", metadata={"static": True})

    def __post_init__(self):
        object.__setattr__(self, "p", _power(self.p))
        object.__setattr__(self, "cost", _cost_matrix(self.cost))
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")

    @property
    def name(self) -> str:
        return f"w{self.p:g}"

    def check(self, kind, belief):
        _check_cost(self.cost, kind, belief, self.name)

    def _root(self, power):
        return power if self.p == 1 else jnp.maximum(power, 0.0) ** (1.0 / self.p)

    def discrete(self, p, q):
        if self.cost is None:
            return self._root(_tv(p, q))  # 0/1 ground metric: W_p^p = tv
        return self._root(ot_cost(p, q, self.cost**self.p, self.solver))

    def particles(self, x, y):
        if x.particles.shape[-1] == 1:
            return self._root(wasserstein_1d_power(*sorted_cdf(x.particles[:, 0], x.log_weights),
                                                   *sorted_cdf(y.particles[:, 0], y.log_weights), self.p))
        cost = _ground_cost(x.particles, y.particles, self.p)
        return self._root(ot_cost(jnp.exp(x.log_weights), jnp.exp(y.log_weights), cost, self.solver))

    def pairwise_discrete(self, P, Q):
        if self.cost is None:
            return self._root(_tv_pairwise(P, Q))
        return super().pairwise_discrete(P, Q)

    def pairwise_particles(self, X, Y):
        if X.particles.shape[-1] != 1:
            return super().pairwise_particles(X, Y)
        xs, ys = (jax.vmap(sorted_cdf)(B.particles[..., 0], B.log_weights) for B in (X, Y))
        n, m = X.log_weights.shape[-1], Y.log_weights.shape[-1]
        return self._root(pair_map(lambda a, b: wasserstein_1d_power(*a, *b, self.p), xs, ys, 4 * (n + m)))


ERRORS = ("flag", "raise")


def _pair_batches(fn, xs: Any, ys: Any, entries_per_pair: int) -> Any:
    """``fn(X, Y)`` on batches of pairs ``(x_i, y_j)``, every pair of the leading axes: leaves ``(n1, n2, ...)``.

    Unlike :func:`pair_map`, ``fn`` gets whole chunks of about ``CHUNK_ENTRIES / entries_per_pair`` pairs
    (a batched solver), the last chunk padded with repeats of the first pair.
    """
    n1, n2 = (jax.tree_util.tree_leaves(t)[0].shape[0] for t in (xs, ys))
    total = n1 * n2
    chunk = int(max(1, min(total, CHUNK_ENTRIES // max(entries_per_pair, 1))))
    n_chunks = -(-total // chunk)
    k = jnp.arange(n_chunks * chunk) % total
    i, j = (k // n2).reshape(n_chunks, chunk), (k % n2).reshape(n_chunks, chunk)
    take = lambda tree, idx: jax.tree_util.tree_map(lambda a: a[idx], tree)  # noqa: E731
    out = lax.map(lambda ij: fn(take(xs, ij[0]), take(ys, ij[1])), (i, j))
    return jax.tree_util.tree_map(lambda a: a.reshape(n_chunks * chunk, *a.shape[2:])[:total].reshape(n1, n2, *a.shape[2:]), out)


def _paired_batches(fn, xs: Any, ys: Any, entries_per_pair: int) -> Any:
    """``fn(X, Y)`` on chunks of the pairs ``(x_i, y_i)``: leaves ``(n, ...)``."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    chunk = int(max(1, min(n, CHUNK_ENTRIES // max(entries_per_pair, 1))))
    n_chunks = -(-n // chunk)
    k = (jnp.arange(n_chunks * chunk) % n).reshape(n_chunks, chunk)
    take = lambda tree, idx: jax.tree_util.tree_map(lambda a: a[idx], tree)  # noqa: E731
    out = lax.map(lambda idx: fn(take(xs, idx), take(ys, idx)), k)
    return jax.tree_util.tree_map(lambda a: a.reshape(n_chunks * chunk, *a.shape[2:])[:n], out)


def _unconverged_message(n_bad: int, n_all: int, worst: float, tol: Any, max_iter: int) -> str:
    return (f"sinkhorn: {n_bad} of {n_all} pair(s) did not reach tol={float(tol):g} within max_iter={max_iter} "
            f"sweeps (largest L1 marginal error {worst:.3g}); their values are not converged and may lie "
            "below W_p. Raise max_iter or epsilon; Sinkhorn.solve / solve_pairwise give the per-pair "
            "error and converged flags.")


def _host_report(converged, error, tol, *, max_iter: int, errors: str) -> None:
    converged, error = np.asarray(converged), np.asarray(error)
    bad = ~converged
    if not bad.any():
        return
    worst = float(np.max(np.where(bad, error, 0.0)))
    message = _unconverged_message(int(bad.sum()), bad.size, worst, tol, max_iter)
    if errors == "raise":
        raise SMCNumericalError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Sinkhorn(BeliefMetric):
    """``<P_eps, C^p>^(1/p)`` by batched Sinkhorn (differentiable); see :mod:`smcflow_pomdp.sinkhorn`.

    ``errors`` says what happens when a pair runs out of ``max_iter`` sweeps before its L1 marginal
    error reaches ``tol``: ``"flag"`` (default) warns (a ``RuntimeWarning``, also from inside a user's
    ``jit`` through a host callback) and returns the values; ``"raise"`` raises
    :class:`smcflow.SMCNumericalError` (inside a ``jit``: a ``JaxRuntimeError`` with the same message).
    :meth:`solve` and :meth:`solve_pairwise` return the per-pair ``error`` and ``converged`` flags.
    The raw kernels ``discrete`` / ``particles`` (for composing inside other programs) do not report.
    """

    name: ClassVar[str] = "sinkhorn"
    epsilon: Any = 0.05
    p: float = field(default=1.0, metadata={"static": True})
    cost: Any = None
    tol: Any = 1e-4
    max_iter: int = field(default=10000, metadata={"static": True})
    errors: str = field(default="flag", metadata={"static": True})

    def __post_init__(self):
        positive(self.epsilon, "epsilon")
        positive(self.tol, "tol")
        object.__setattr__(self, "p", _power(self.p))
        object.__setattr__(self, "cost", _cost_matrix(self.cost))
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.errors not in ERRORS:
            raise ValueError(f"errors={self.errors!r}; use 'flag' or 'raise'")

    def check(self, kind, belief):
        _check_cost(self.cost, kind, belief, self.name)

    def problem(self, kind: str, x: Any, y: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(log_a, log_b, C^p)`` of two checked beliefs (or batches of them) of ``kind``; a discrete
        problem's cost is the shared ``(S, S)`` matrix."""
        if kind == "discrete":
            ground = _zero_one(x.shape[-1], x.dtype) if self.cost is None else self.cost
            return jnp.log(x), jnp.log(y), ground**self.p
        cost = jax.vmap(_ground_cost, in_axes=(0, 0, None))(x.particles, y.particles, self.p) \
            if x.particles.ndim == 3 else _ground_cost(x.particles, y.particles, self.p)
        return x.log_weights, y.log_weights, cost

    def _root(self, power):
        return power if self.p == 1 else jnp.maximum(power, 0.0) ** (1.0 / self.p)

    def _batch(self, kind, xs, ys) -> SinkhornOutput:
        return sinkhorn_batch(*self.problem(kind, xs, ys), self.epsilon, self.tol, self.max_iter)

    def _entries(self, kind, xs) -> int:
        n = xs.shape[-1] if kind == "discrete" else xs.log_weights.shape[-1]
        return n * n

    # raw kernels: values only
    def discrete(self, p, q):
        return self._root(self._batch("discrete", p[None], q[None]).cost[0])

    def particles(self, x, y):
        one = lambda b: jax.tree_util.tree_map(lambda a: a[None], b)  # noqa: E731
        return self._root(self._batch("particles", one(x), one(y)).cost[0])

    def pairwise_discrete(self, P, Q):
        return self._root(_pair_batches(partial(self._batch, "discrete"), P, Q, self._entries("discrete", P)).cost)

    def pairwise_particles(self, X, Y):
        return self._root(_pair_batches(partial(self._batch, "particles"), X, Y, self._entries("particles", X)).cost)

    # checked entry points: values, with unconverged pairs reported
    def _report(self, out: SinkhornOutput) -> None:
        report = partial(_host_report, max_iter=self.max_iter, errors=self.errors)
        if any(isinstance(v, jax.core.Tracer) for v in (out.converged, self.tol)):
            jax.debug.callback(report, out.converged, out.error, jnp.asarray(self.tol))
        else:
            report(out.converged, out.error, self.tol)

    def __call__(self, b1: Any, b2: Any) -> jax.Array:
        out = self.solve(b1, b2)
        return self._root(out.cost)

    def pairwise(self, beliefs1: Any, beliefs2: Any = None) -> jax.Array:
        return self._root(self.solve_pairwise(beliefs1, beliefs2).cost)

    def paired(self, beliefs1: Any, beliefs2: Any) -> jax.Array:
        kind, xs, ys = _checked_pair_batches(self, beliefs1, beliefs2)
        out = _sinkhorn_paired(self, kind, xs, ys)
        self._report(out)
        return self._root(out.cost)

    def solve(self, b1: Any, b2: Any) -> SinkhornOutput:
        """The solver's whole output for one pair: ``cost = <P_eps, C^p>`` (not its root), the potentials,
        ``n_iter``, the plan's L1 marginal ``error`` and ``converged`` (``error <= tol``); an
        unconverged pair is also reported as ``errors=`` says."""
        kind, x, y = as_pair(b1, b2)
        self.check(kind, x)
        out = _sinkhorn_solve(self, kind, x, y)
        self._report(out)
        return out

    def solve_pairwise(self, beliefs1: Any, beliefs2: Any = None) -> SinkhornOutput:
        """:meth:`solve` for every pair of two batches: every field with leading axes ``(n1, n2)``."""
        kind, xs, ys = as_pair(beliefs1, beliefs1 if beliefs2 is None else beliefs2, ("beliefs1", "beliefs2"),
                               batch=True)
        self.check(kind, xs)
        out = _sinkhorn_pairwise(self, kind, xs, ys)
        self._report(out)
        return out


@partial(jax.jit, static_argnames="kind")
def _sinkhorn_solve(metric: Sinkhorn, kind: str, x: Any, y: Any) -> SinkhornOutput:
    one = lambda b: jax.tree_util.tree_map(lambda a: a[None], b)  # noqa: E731
    return SinkhornOutput(*(v[0] for v in metric._batch(kind, one(x), one(y))))


@partial(jax.jit, static_argnames="kind")
def _sinkhorn_pairwise(metric: Sinkhorn, kind: str, xs: Any, ys: Any) -> SinkhornOutput:
    return _pair_batches(partial(metric._batch, kind), xs, ys, metric._entries(kind, xs))


@partial(jax.jit, static_argnames="kind")
def _sinkhorn_paired(metric: Sinkhorn, kind: str, xs: Any, ys: Any) -> SinkhornOutput:
    return _paired_batches(partial(metric._batch, kind), xs, ys, metric._entries(kind, xs))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class MMD(BeliefMetric):
    """Maximum mean discrepancy with a Gaussian kernel of width ``bandwidth``.

    Discrete beliefs are measures on the states' embeddings ``points (S, d)`` (default: one-hot, every
    two states at distance ``sqrt 2``); the feature map ``K = L L^T`` (eigendecomposition) makes the
    distance ``||(p - q) L||``, free of cancellation.
    """

    name: ClassVar[str] = "mmd"
    bandwidth: Any = 1.0
    points: Any = None

    def __post_init__(self):
        positive(self.bandwidth, "bandwidth")
        if _concrete(self.points):
            pts = np.asarray(self.points, dtype=np.float64)
            if pts.ndim != 2 or not np.all(np.isfinite(pts)):
                raise ValueError(f"points must be a finite (S, d) array of state embeddings, got shape {pts.shape}")
            object.__setattr__(self, "points", jnp.asarray(pts, jnp.float32))

    def check(self, kind, belief):
        if self.points is None:
            return
        if kind == "particles":
            raise ValueError("mmd: points= applies to discrete beliefs; particles are their own embedding")
        if self.points.shape[0] != belief.shape[-1]:
            raise ValueError(f"mmd: points has {self.points.shape[0]} rows, but the beliefs are over "
                             f"{belief.shape[-1]} states")

    def _kernel(self, x, y):
        return jnp.exp(-_sq_dist(x, y) / (2.0 * self.bandwidth**2))

    def _features(self, n_states: int, dtype) -> jax.Array:
        z = jnp.eye(n_states, dtype=dtype) if self.points is None else self.points
        lam, vec = jnp.linalg.eigh(self._kernel(z, z))
        return vec * jnp.sqrt(jnp.maximum(lam, 0.0))

    def discrete(self, p, q):
        return jnp.linalg.norm((p - q) @ self._features(p.shape[-1], p.dtype))

    def pairwise_discrete(self, P, Q):
        L = self._features(P.shape[-1], P.dtype)
        return _row_map(lambda e, F: jnp.linalg.norm(e[None] - F, axis=-1), P @ L, Q @ L, Q.size)

    def _cross(self, x, y):
        return jnp.exp(x.log_weights) @ self._kernel(x.particles, y.particles) @ jnp.exp(y.log_weights)

    def particles(self, x, y):
        return jnp.sqrt(jnp.maximum(self._cross(x, x) + self._cross(y, y) - 2.0 * self._cross(x, y), 0.0))

    def pairwise_particles(self, X, Y):
        n, m = X.log_weights.shape[-1], Y.log_weights.shape[-1]
        self_x, self_y = jax.vmap(lambda b: self._cross(b, b))(X), jax.vmap(lambda b: self._cross(b, b))(Y)
        cross = pair_map(self._cross, X, Y, n * m)
        return jnp.sqrt(jnp.maximum(self_x[:, None] + self_y[None, :] - 2.0 * cross, 0.0))


def w1(cost: Any = None, solver: str = "auto") -> Wasserstein:
    """``W_1`` (exact; on discrete beliefs with the default 0/1 ground metric it equals ``tv``)."""
    return Wasserstein(1.0, cost, solver)


def w2(cost: Any = None, solver: str = "auto") -> Wasserstein:
    """``W_2`` (exact)."""
    return Wasserstein(2.0, cost, solver)


#: name -> factory, as offered through the ``smcflow_belief_metrics`` hook
METRICS = {"tv": TV, "w1": w1, "w2": w2, "sinkhorn": Sinkhorn, "mmd": MMD, "hilbert": Hilbert}
