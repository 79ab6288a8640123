"""Off-policy evaluation over beliefs of a finite POMDP, and the exact value it is judged against.

* :func:`simulate` logs episodes of a behaviour policy acting on its exact belief (hidden states,
  actions, observations, rewards, beliefs and the behaviour's action probabilities), all in JAX.
* :func:`importance_sampling_returns`: per-decision importance sampling over the logged beliefs,
  unbiased for the target's value over the logged horizon.
* :func:`policy_value` is the exact value ``V^pi(b_0)`` of a policy by policy evaluation on the
  belief MDP: the beliefs reachable from ``b_0`` are expanded level by level (equal beliefs merged, so
  a reset to ``b_0`` closes a cycle), expansion stops at beliefs whose discounted reach probability is
  below ``delta``, and the linear system ``V = r + discount P V`` is solved twice, with the unexpanded
  beliefs' values set to ``min R / (1 - discount)`` and to ``max R / (1 - discount)``. As
  ``(I - discount P)^{-1} >= 0``, the two solutions bracket the exact value; ``delta`` is lowered
  until the bracket is narrower than ``tol``.
* :func:`fqe_value` is fitted-Q evaluation on an epsilon-net of the logged beliefs: beliefs are
  aggregated into the cells of the greedy epsilon-net (nearest centre), and ``Q`` over (cell, action)
  pairs solves the empirical Bellman equation of the target policy

      Q(c, a) = mean over logged (b, a, r, b') with b in c of [ r + discount sum_a' pi(a' | b') Q(c(b'), a') ],

  where a pair (cell, action) without data borrows the ``Q`` of the nearest cell (by centre distance)
  where that action was logged. With ``epsilon = 0`` the cells are the distinct logged beliefs and the
  estimate is the certainty-equivalent value of the logged belief MDP; larger ``epsilon`` trades
  variance for an aggregation bias of order (Lipschitz constant of ``Q``) x ``epsilon``. The number of
  cells is the covering number of the logged beliefs at ``epsilon``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import lax
from scipy import sparse
from scipy.sparse.linalg import spsolve

from .analysis import greedy_net
from .filters import bayes_update
from .metrics import TV

__all__ = ["Trajectories", "simulate", "discounted_returns", "importance_sampling_returns", "PolicyValue",
           "policy_value", "FQEEstimate", "fqe_value"]


class Trajectories(NamedTuple):
    """Logged episodes: ``states (n, H + 1)``, ``actions``, ``observations``, ``rewards (n, H)``, exact
    ``beliefs (n, H + 1, S)`` and ``propensities (n, H)`` (the behaviour's probability of each action)."""

    states: jax.Array
    actions: jax.Array
    observations: jax.Array
    rewards: jax.Array
    beliefs: jax.Array
    propensities: jax.Array


@partial(jax.jit, static_argnames=("n_episodes", "horizon"))
def _simulate(pomdp, policy, key, n_episodes, horizon):
    T, Z = pomdp.transition_matrix, pomdp.observation_matrix

    def episode(key):
        k0, k_steps = jax.random.split(key)
        s0, b0 = pomdp.initial().sample(k0), pomdp.initial_belief

        def step(carry, t):
            s, b = carry
            ka, ks, ko = jax.random.split(jax.random.fold_in(k_steps, t), 3)
            probs = policy.probs(b)
            a = dist.Categorical(probs=probs).sample(ka)
            s_next = pomdp.transition(s, a).sample(ks)
            o = pomdp.observation(s_next, a).sample(ko)
            b_next, _ = bayes_update(T, Z, b, a, o)
            return (s_next, b_next), (s_next, a, o, pomdp.reward(s, a), b_next, probs[a])

        _, (s, a, o, r, b, prop) = lax.scan(step, (s0, b0), jnp.arange(horizon))
        return Trajectories(jnp.concatenate([s0[None], s]), a, o, r, jnp.concatenate([b0[None], b]), prop)

    return jax.vmap(episode)(jax.random.split(key, n_episodes))


def simulate(pomdp: Any, policy: Any, key: jax.Array, n_episodes: int, horizon: int) -> Trajectories:
    """``n_episodes`` episodes of ``horizon`` steps of ``policy`` (``probs(belief) -> (A,)``) acting on
    its exact belief, from ``s_0 ~ initial()``."""
    for name, value in (("n_episodes", n_episodes), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return _simulate(pomdp, policy, key, n_episodes=int(n_episodes), horizon=int(horizon))


def discounted_returns(rewards: Any, discount: float) -> jax.Array:
    """``sum_t discount^t r_t`` along the last axis."""
    rewards = jnp.asarray(rewards)
    return rewards @ (jnp.asarray(discount, rewards.dtype) ** jnp.arange(rewards.shape[-1]))


def importance_sampling_returns(data: Trajectories, target: Any, discount: float) -> jax.Array:
    """Per-decision importance-sampling returns ``(n,)`` of ``target`` from the logged episodes.

    With the ratios ``rho_t = prod_{k <= t} pi(a_k | b_k) / mu_k`` (``mu_k`` the logged propensities,
    ``b_k`` the logged beliefs), an episode contributes ``sum_{t < H} discount^t rho_t r_t``; its mean
    over episodes is unbiased for the target's ``H``-step value ``E_pi[sum_{t < H} discount^t r_t]``
    whenever ``mu > 0`` wherever ``pi > 0``. The mean is the estimator; the spread gives its error.
    """
    beliefs, actions = jnp.asarray(data.beliefs[:, :-1]), jnp.asarray(data.actions)
    pi = jnp.take_along_axis(target.probs(beliefs), actions[..., None], axis=-1)[..., 0]
    ratios = jnp.cumprod(pi / jnp.asarray(data.propensities), axis=-1)
    return discounted_returns(ratios * jnp.asarray(data.rewards), discount)


def _padded_length(n: int) -> int:
    """The next power of two: host loops over changing batch sizes reuse a few compiled shapes."""
    return 1 << max(int(np.ceil(np.log2(max(n, 1)))), 0)


@jax.jit
def _jit_probs(policy, beliefs):
    return policy.probs(beliefs)


def host_probs(policy: Any, beliefs: np.ndarray) -> np.ndarray:
    """``policy.probs`` of host beliefs ``(k, S)`` as float64 ``(k, A)``, evaluated on a batch padded to
    a power of two (with copies of the first belief) by one jitted call."""
    beliefs = np.asarray(beliefs)
    padded = np.concatenate([beliefs, np.repeat(beliefs[:1], _padded_length(len(beliefs)) - len(beliefs), 0)])
    return np.asarray(_jit_probs(policy, jnp.asarray(padded, jnp.float32)), dtype=np.float64)[:len(beliefs)]


class PolicyValue(NamedTuple):
    """``lower <= V^pi(b_0) <= upper``, ``value`` their midpoint, ``n_nodes`` beliefs in the graph."""

    value: float
    lower: float
    upper: float
    n_nodes: int


def _expand(T, Z, R, b0, gamma, policy, delta, max_nodes):
    """The belief graph from ``b0``: ``(n_nodes, expanded nodes, their expected rewards, edges (i, j, p))``.

    A level's nodes whose discounted reach probability (summed over the paths of that level) is below
    ``delta`` are left unexpanded; a child equal (to 1e-12) to a known belief is an edge to it.
    """
    index, beliefs = {np.round(b0, 12).tobytes(): 0}, [b0]
    level, level_weight = np.array([0]), np.array([1.0])
    expanded, rewards, edges = [], [], []
    while level.size:
        batch = level[level_weight >= delta]
        if not batch.size:
            break
        w = level_weight[level_weight >= delta]
        B = np.stack([beliefs[i] for i in batch])
        probs = host_probs(policy, B)
        rewards.append(np.einsum("ka,as,ks->k", probs, R, B))
        expanded.append(batch)
        new, src, dst, prob = [], [], [], []
        for a in range(T.shape[0]):
            predicted = B @ T[a]
            for o in range(Z.shape[2]):
                joint = predicted * Z[a, :, o]
                p_obs = joint.sum(axis=1)
                rows = np.flatnonzero(probs[:, a] * p_obs > 0)
                children = joint[rows] / p_obs[rows, None]
                targets = np.empty(rows.size, int)
                for k, key in enumerate(np.round(children, 12)):
                    j = index.setdefault(key.tobytes(), len(beliefs))
                    if j == len(beliefs):
                        beliefs.append(children[k])
                        new.append(j)
                    targets[k] = j
                src.append(rows)
                dst.append(targets)
                prob.append(probs[rows, a] * p_obs[rows])
        if len(beliefs) > max_nodes:
            raise RuntimeError(f"policy_value: more than max_nodes={max_nodes} beliefs; raise max_nodes or tol")
        src, dst, prob = np.concatenate(src), np.concatenate(dst), np.concatenate(prob)
        edges.append((batch[src], dst, prob))
        level = np.asarray(new, int)
        reach = np.bincount(dst, weights=w[src] * gamma * prob, minlength=len(beliefs))
        level_weight = reach[level]
    i, j, p = (np.concatenate(c) for c in zip(*edges))
    return len(beliefs), np.concatenate(expanded), np.concatenate(rewards), (i, j, p)


def policy_value(pomdp: Any, policy: Any, tol: float = 1e-3, max_nodes: int = 2_000_000) -> PolicyValue:
    """The exact ``V^pi(b_0)`` of a finite POMDP, bracketed to within ``tol`` (see the module)."""
    T, Z, R = (np.asarray(m, dtype=np.float64) for m in (pomdp.transition_matrix, pomdp.observation_matrix,
                                                          pomdp.rewards))
    b0, gamma = np.asarray(pomdp.initial_belief, dtype=np.float64), float(pomdp.discount)
    v_min, v_max = R.min() / (1 - gamma), R.max() / (1 - gamma)
    delta = tol * (1 - gamma) / max(v_max - v_min, 1e-12)
    while True:
        n_nodes, expanded, rewards, (i, j, p) = _expand(T, Z, R, b0, gamma, policy, delta, max_nodes)
        P = sparse.csr_matrix((p, (i, j)), shape=(n_nodes, n_nodes))
        inner = np.zeros(n_nodes, bool)
        inner[expanded] = True
        r = np.zeros(n_nodes)
        r[expanded] = rewards
        M = (sparse.eye(int(inner.sum())) - gamma * P[inner][:, inner]).tocsc()
        leak = gamma * np.asarray(P[inner][:, ~inner].sum(axis=1)).ravel()
        root = 0  # b0 is node 0, expanded first, and inner nodes keep their order
        lower, upper = (float(np.atleast_1d(spsolve(M, r[inner] + leak * v))[root]) for v in (v_min, v_max))
        if upper - lower <= tol:
            return PolicyValue(0.5 * (lower + upper), lower, upper, n_nodes)
        delta /= 10.0


class FQEEstimate(NamedTuple):
    """The estimate of ``V^pi(b_0)``, the number of cells (the covering number) and of (cell, action) pairs."""

    value: float
    n_cells: int
    n_pairs: int


def fqe_value(data: Trajectories, target: Any, epsilon: float, discount: float, metric: Any = None) -> FQEEstimate:
    """Fitted-Q evaluation of ``target`` on the epsilon-net of the logged beliefs (see the module).

    ``metric`` (default ``tv``) measures beliefs; exact duplicates (to 1e-7) are merged first.
    """
    metric = TV() if metric is None else metric
    beliefs = np.asarray(data.beliefs, dtype=np.float64)
    S = beliefs.shape[-1]
    before = beliefs[:, :-1].reshape(-1, S)
    after = beliefs[:, 1:].reshape(-1, S)
    actions = np.asarray(data.actions).ravel()
    rewards = np.asarray(data.rewards, dtype=np.float64).ravel()
    everything = np.concatenate([beliefs[:1, 0], before, after])
    unique, inverse = np.unique(np.round(everything, 7), axis=0, return_inverse=True)
    # padded to a power of two with copies of the first belief (covered by it: no extra centre), so
    # that data sets of similar size share one compiled distance and net program
    padded = np.concatenate([unique, np.repeat(unique[:1], _padded_length(len(unique)) - len(unique), 0)])
    distances = np.asarray(metric.pairwise(jnp.asarray(padded / padded.sum(1, keepdims=True), jnp.float32)))
    net = jax.tree_util.tree_map(lambda a: np.asarray(a)[:len(unique)], greedy_net(distances, epsilon))
    distances = distances[:len(unique), :len(unique)]
    centres = np.flatnonzero(np.asarray(net.centers))
    cell_of_unique = np.searchsorted(centres, np.asarray(net.assignment))
    cells = cell_of_unique[inverse.ravel()]
    cell_b0, cell_before, cell_after = cells[0], cells[1:1 + before.shape[0]], cells[1 + before.shape[0]:]
    n_cells, n_actions = centres.size, host_probs(target, unique[:1]).shape[-1]
    # (cell, action) pairs with data, and for every action the nearest cell where it was logged
    pair_of = -np.ones((n_cells, n_actions), int)
    logged = np.unique(np.stack([cell_before, actions], 1), axis=0)
    pair_of[logged[:, 0], logged[:, 1]] = np.arange(logged.shape[0])
    centre_d = distances[np.ix_(centres, centres)]
    for a in range(n_actions):
        have = np.flatnonzero(pair_of[:, a] >= 0)
        if have.size == 0:
            continue
        nearest = have[np.argmin(centre_d[:, have], axis=1)]
        pair_of[:, a] = pair_of[nearest, a]
    rows = pair_of[cell_before, actions]
    counts = np.bincount(rows, minlength=logged.shape[0]).astype(np.float64)
    r_bar = np.bincount(rows, weights=rewards, minlength=logged.shape[0]) / counts
    pi_next = host_probs(target, after)
    pi_b0 = host_probs(target, beliefs[0, :1])[0]
    missing = [a for a in range(n_actions) if (pi_next[:, a].any() or pi_b0[a] > 0) and pair_of[0, a] < 0]
    if missing:
        raise ValueError(f"fqe_value: the target policy takes actions {missing} that the logged data never take")
    # an action never logged has pi = 0 everywhere (checked above): its column is a placeholder
    cols = np.maximum(pair_of[cell_after[:, None], np.arange(n_actions)[None, :]], 0)
    weights = pi_next / counts[rows][:, None]
    P = sparse.csr_matrix((weights.ravel(), (np.repeat(rows, n_actions), cols.ravel())),
                          shape=(logged.shape[0],) * 2)
    q = spsolve((sparse.eye(logged.shape[0]) - discount * P).tocsc(), r_bar)
    value = float(pi_b0 @ q[np.maximum(pair_of[cell_b0], 0)])
    return FQEEstimate(value, int(n_cells), int(logged.shape[0]))
