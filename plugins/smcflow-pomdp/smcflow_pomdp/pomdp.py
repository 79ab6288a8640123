"""Finite POMDPs stored as probability tensors, read through numpyro distributions.

Time convention (the one every filter and estimator of this package uses)::

    s_0 ~ initial()                          belief b_0 = initial_belief
    for t = 0, 1, ...:
        the agent takes a_t (a function of b_t), collects r_t = R[a_t, s_t]
        s_{t+1} ~ transition(s_t, a_t)       = Categorical(T[a_t, s_t])
        o_{t+1} ~ observation(s_{t+1}, a_t)  = Categorical(Z[a_t, s_{t+1}])

so a history of length ``H`` is ``a_0 .. a_{H-1}`` with ``o_1 .. o_H`` (both arrays of length ``H``,
``observations[t]`` being ``o_{t+1}``) and gives the beliefs ``b_0 .. b_H``. The value of a policy is
``E[sum_t discount^t r_t]``.

Shapes: ``T`` is ``(A, S, S)`` with ``T[a, s, s'] = p(s' | s, a)``, ``Z`` is ``(A, S, O)`` with
``Z[a, s', o] = p(o | s', a)``, ``R`` is ``(A, S)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

__all__ = ["DiscretePOMDP", "discrete_pomdp"]

_STOCHASTIC_TOL = 1e-6


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class DiscretePOMDP:
    """A finite POMDP (build it with :func:`discrete_pomdp`, which checks the tensors).

    The arrays are pytree leaves (a new reward table does not recompile); the names are static.
    ``initial()``, ``transition(s, a)`` and ``observation(s_next, a)`` return numpyro distributions
    batched over the leading axis of ``s`` (``a`` a scalar or an array broadcasting against ``s``).
    """

    transition_matrix: jax.Array  # (A, S, S)
    observation_matrix: jax.Array  # (A, S, O)
    rewards: jax.Array  # (A, S)
    initial_belief: jax.Array  # (S,)
    discount: jax.Array  # ()
    state_names: tuple[str, ...] = field(default=(), metadata={"static": True})
    action_names: tuple[str, ...] = field(default=(), metadata={"static": True})
    observation_names: tuple[str, ...] = field(default=(), metadata={"static": True})

    @property
    def n_states(self) -> int:
        return self.transition_matrix.shape[1]

    @property
    def n_actions(self) -> int:
        return self.transition_matrix.shape[0]

    @property
    def n_observations(self) -> int:
        return self.observation_matrix.shape[2]

    def initial(self) -> dist.Categorical:
        return dist.Categorical(probs=self.initial_belief)

    def transition(self, s: jax.Array, a: jax.Array) -> dist.Categorical:
        return dist.Categorical(probs=self.transition_matrix[a, s])

    def observation(self, s_next: jax.Array, a: jax.Array) -> dist.Categorical:
        return dist.Categorical(probs=self.observation_matrix[a, s_next])

    def reward(self, s: jax.Array, a: jax.Array) -> jax.Array:
        return self.rewards[a, s]



def _names(names, n: int, what: str) -> tuple[str, ...]:
    names = tuple(str(x) for x in names) if names else tuple(f"{what}{i}" for i in range(n))
    if len(names) != n:
        raise ValueError(f"{what}_names has {len(names)} entries for {n} {what}s")
    return names


def _stochastic(array: np.ndarray, name: str, axis: int = -1) -> None:
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must hold finite probabilities >= 0")
    sums = array.sum(axis=axis)
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > _STOCHASTIC_TOL:
        raise ValueError(f"{name} must sum to 1 along its last axis; the worst sum is off by {worst:.2e}")


def discrete_pomdp(transition_matrix, observation_matrix, rewards, initial_belief, discount, *,
                   state_names=(), action_names=(), observation_names=()) -> DiscretePOMDP:
    """Check the tensors (shapes, probabilities that sum to one, ``0 <= discount < 1``) and build
    a :class:`DiscretePOMDP` (float32 arrays)."""
    T = np.asarray(transition_matrix, dtype=np.float64)
    Z = np.asarray(observation_matrix, dtype=np.float64)
    R = np.asarray(rewards, dtype=np.float64)
    b0 = np.asarray(initial_belief, dtype=np.float64)
    if T.ndim != 3 or T.shape[1] != T.shape[2]:
        raise ValueError(f"transition_matrix must have shape (A, S, S), got {T.shape}")
    n_actions, n_states = T.shape[:2]
    if Z.ndim != 3 or Z.shape[:2] != (n_actions, n_states):
        raise ValueError(f"observation_matrix must have shape ({n_actions}, {n_states}, O), got {Z.shape}")
    if R.shape != (n_actions, n_states):
        raise ValueError(f"rewards must have shape ({n_actions}, {n_states}), got {R.shape}")
    if b0.shape != (n_states,):
        raise ValueError(f"initial_belief must have shape ({n_states},), got {b0.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError("rewards must be finite")
    _stochastic(T, "transition_matrix")
    _stochastic(Z, "observation_matrix")
    _stochastic(b0, "initial_belief")
    if not 0.0 <= float(discount) < 1.0:
        raise ValueError(f"discount must lie in [0, 1), got {discount}")
    return DiscretePOMDP(
        jnp.asarray(T, jnp.float32), jnp.asarray(Z, jnp.float32), jnp.asarray(R, jnp.float32),
        jnp.asarray(b0, jnp.float32), jnp.asarray(float(discount), jnp.float32),
        _names(state_names, n_states, "state"), _names(action_names, n_actions, "action"),
        _names(observation_names, Z.shape[2], "observation"),
    )
