"""Entropic optimal transport by Sinkhorn's algorithm in the log domain, with implicit gradients.

For weights ``a (n,)``, ``b (m,)`` and a cost ``C (n, m)``, the entropic plan is

    P_eps = argmin { <P, C> - eps H(P) : P 1 = a, P^T 1 = b },
    P_ij  = a_i b_j exp((f_i + g_j - C_ij) / eps)

for dual potentials ``f, g``. Sinkhorn's iteration alternates the two exact marginal fits

    g_j <- -eps logsumexp_i(log a_i + (f_i - C_ij) / eps)         (columns sum to b)
    f_i <- -eps logsumexp_j(log b_j + (g_j - C_ij) / eps)         (rows sum to a)

all in log space, so no kernel ``exp(-C / eps)`` underflows however small ``eps`` is. After a
``g`` update the row sums are ``a_i exp((f_i - f_i^new) / eps)``, so the L1 marginal error
``sum_i a_i |exp((f_i - f_i^new) / eps) - 1|`` comes for free with the next ``f`` update; the loop
(``lax.while_loop``) stops when it is at most ``tol`` or after ``max_iter`` iterations.

**Gradients** (implicit function theorem, not back-propagation through the loop). The potential
``f`` is the root of ``R(f) = f - T(f) + <a, f> 1`` with ``T`` one Sinkhorn sweep; ``T(f + c) =
T(f) + c``, and the term ``<a, f> 1`` fixes that free constant, so the root is unique and ``dR/df``
is invertible. ``lax.custom_root`` differentiates the root through that linear system, so
``<P_eps, C>`` is differentiable in ``C`` (hence in particle positions), ``a`` and ``b``, at the cost of
one ``(n, n)`` solve in the backward pass, whatever the number of iterations.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp

__all__ = ["SinkhornOutput", "sinkhorn", "sinkhorn_cost"]


class SinkhornOutput(NamedTuple):
    """``cost = <P_eps, C>``, potentials ``f (n,)``, ``g (m,)``, iterations used, final L1 marginal error."""

    cost: jax.Array
    f: jax.Array
    g: jax.Array
    n_iter: jax.Array
    error: jax.Array


def _g_update(f, log_a, cost, eps):
    return -eps * logsumexp(log_a[:, None] + (f[:, None] - cost) / eps, axis=0)


def _f_update(g, log_b, cost, eps):
    return -eps * logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, axis=1)


def _iterate(log_a, log_b, cost, eps, tol, max_iter):
    """Sinkhorn sweeps from ``f = 0`` until the L1 marginal error is ``<= tol``: ``(f, n_iter, error)``."""
    a = jnp.exp(log_a)

    def body(state):
        it, f, _ = state
        f_new = _f_update(_g_update(f, log_a, cost, eps), log_b, cost, eps)
        error = jnp.sum(jnp.where(a > 0, a * jnp.abs(jnp.expm1((f - f_new) / eps)), 0.0))
        return it + 1, f_new, error

    def cond(state):
        it, _, error = state
        return (it < max_iter) & (error > tol)

    init = (jnp.int32(0), jnp.zeros_like(log_a), jnp.asarray(jnp.inf, log_a.dtype))
    return lax.while_loop(cond, body, init)


def _potential(log_a, log_b, cost, eps, tol, max_iter):
    """The gauge-fixed potential ``f`` (``<a, f> = 0``), implicitly differentiable; and the loop's
    ``(n_iter, error)``."""
    a = jnp.exp(log_a)

    def residual(f):
        return f - _f_update(_g_update(f, log_a, cost, eps), log_b, cost, eps) + jnp.sum(a * f)

    def solve(_, f0):
        it, f, error = _iterate(log_a, log_b, cost, eps, tol, max_iter)
        # aux as floats: custom_root's JVP would give an int aux a float tangent
        return f - jnp.sum(a * f), jnp.stack([it.astype(error.dtype), error])

    def tangent_solve(linear, y):
        return jnp.linalg.solve(jax.jacfwd(linear)(y), y)

    return lax.custom_root(residual, jnp.zeros_like(log_a), solve, tangent_solve, has_aux=True)


def sinkhorn(log_a: jax.Array, log_b: jax.Array, cost: jax.Array, epsilon, tol=1e-4, max_iter=2000) -> SinkhornOutput:
    """Entropic OT between log-weights ``log_a (n,)``, ``log_b (m,)`` for a cost ``(n, m)``."""
    eps = jnp.asarray(epsilon, cost.dtype)
    f, info = _potential(log_a, log_b, cost, eps, tol, max_iter)
    n_iter, error = lax.stop_gradient(info[0]).astype(jnp.int32), lax.stop_gradient(info[1])
    g = _g_update(f, log_a, cost, eps)
    plan = jnp.exp(log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - cost) / eps)
    return SinkhornOutput(jnp.sum(plan * cost), f, g, n_iter, error)


def sinkhorn_cost(log_a, log_b, cost, epsilon, tol=1e-4, max_iter=2000) -> jax.Array:
    """``<P_eps, C>`` alone (see :func:`sinkhorn`)."""
    return sinkhorn(log_a, log_b, cost, epsilon, tol, max_iter).cost
