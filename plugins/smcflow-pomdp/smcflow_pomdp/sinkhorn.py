"""Entropic optimal transport by Sinkhorn's algorithm, batched, with implicit gradients.

For weights ``a (n,)``, ``b (m,)`` and a cost ``C (n, m)``, the entropic plan is

    P_eps = argmin { <P, C> - eps H(P) : P 1 = a, P^T 1 = b },
    P_ij  = a_i b_j exp((f_i + g_j - C_ij) / eps)

for dual potentials ``f, g``. Sinkhorn's iteration alternates the two exact marginal fits

    g_j <- -eps log sum_i a_i exp((f_i - C_ij) / eps)         (columns sum to b)
    f_i <- -eps log sum_j b_j exp((g_j - C_ij) / eps)         (rows sum to a)

**How the sweeps are computed.** Each sum is evaluated as a matrix product with a stored kernel, not
as a log-sum-exp over ``(n, m)`` exponentials, but with the exponents shifted so that nothing
underflows or overflows in float32:

* with a kernel ``K_ij = exp((f0_i + g0_j - C_ij) / eps)`` (``f0 = g0 = 0`` at first) and the update
  written for the increments ``df = f - f0``, ``dg = g - g0``, a sweep is
  ``dg_j = -eps (s + log sum_i K_ij w_i)`` with ``w_i = exp(log a_i + df_i / eps - s)`` and ``s`` the
  largest of those exponents, so ``max w = 1``;
* the sum is at least ``exp(-R / eps)`` where ``R`` bounds the spread of the exponents (the cost's
  range ``max C - min C`` for the plain kernel, the spread of the increments for an absorbed one).
  While ``R / eps <= SAFE_EXPONENT = 60`` the sum is far above float32's smallest normal number
  (``exp(-87)``) and every term it drops is below ``exp(-27)`` of it: the sweep equals the log-domain
  one to float32 rounding.
* **Shared cost** (discrete beliefs: every pair of a batch has the same ``(S, S)`` cost) with
  ``(max C - min C) / eps <= 60``: one kernel for the whole batch, never re-formed, and a sweep is two
  ``(B, S) @ (S, S)`` matrix products (this also bounds the spread of ``g``: ``g_j - g_k <= max C``).
* **Otherwise** (particle beliefs, each pair with its own cost, or a small ``eps``): each pair has its
  own kernel, the sweeps are batched matrix-vector products, and the potentials are *absorbed* into
  the kernel (it is re-formed with ``f0, g0 <- f, g``, one exact log-domain sweep first) whenever the
  increments' spread passes ``ABSORB_EXPONENT * eps`` or a sweep is not finite. **Epsilon scaling**:
  a pair whose cost range exceeds ``START_EXPONENT * eps`` starts at ``eps0 = range / START_EXPONENT``
  and halves it every block of sweeps down to ``eps`` (each change absorbs), a warm start that keeps
  the kernels well scaled; only sweeps at the final ``eps`` count towards convergence.

**Convergence** is checked once every ``check_every`` sweeps (a ``lax.while_loop`` over blocks of
unrolled sweeps): the check sweep gives the L1 row-marginal error ``sum_i |P_eps 1 - a|_i`` of the plan
``(f, g(f))`` that is returned, so the reported ``error`` is that plan's (its columns fit exactly).
The loop stops when every pair of the batch has ``error <= tol``, or after ``max_iter`` sweeps;
``converged`` says which pairs made it. **Over-relaxation** (``f <- f + omega (T f - f)``, Thibault et
al. 2017): from the second check at the final ``eps`` on, a pair's ``omega`` is set at every check from
the contraction ``r`` per sweep seen with the current factor ``w``: Young's relation
``(r + w - 1)^2 = r w^2 lam`` gives the plain sweeps' rate ``lam`` and ``omega = 2 / (1 + sqrt(1 - lam))``
(at most ``OMEGA_MAX``); should its
error then grow past ``DIVERGED`` times its best, ``omega`` goes back to 1 for good (plain Sinkhorn
converges from any start). Fixed points, hence the result, are those of plain Sinkhorn.

**Gradients** (implicit function theorem, not back-propagation through the loop). The potential
``f`` is the root of ``R(f) = f - T(f) + <a, f> 1`` with ``T`` one log-domain Sinkhorn sweep;
``T(f + c) = T(f) + c``, and the term ``<a, f> 1`` fixes that free constant, so the root is unique and
``dR/df`` is invertible. The solver above finds the root (without gradients); ``lax.custom_root``
then differentiates ``<P_eps, C>`` through that linear system, in ``C`` (hence in particle
positions), ``a`` and ``b``, at the cost of one ``(n, n)`` solve per pair in the backward pass.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp

__all__ = ["SinkhornOutput", "sinkhorn", "sinkhorn_cost", "sinkhorn_batch", "SAFE_EXPONENT"]

#: largest (cost range) / eps for which one unabsorbed kernel ``exp(-C / eps)`` is exact in float32
SAFE_EXPONENT = 60.0
#: spread of the potential increments (in units of eps) at which a per-pair kernel is re-formed
ABSORB_EXPONENT = 40.0
#: cost range / eps above which epsilon scaling starts (below it one kernel is exact)
START_EXPONENT = SAFE_EXPONENT
#: epsilon scaling: eps is multiplied by this every block of sweeps until it reaches its target
EPS_DECAY = 0.5
#: the largest over-relaxation factor
OMEGA_MAX = 1.9
#: over-relaxation is dropped for good when a pair's error grows past this multiple of its best
DIVERGED = 10.0
#: sweeps per convergence check
CHECK_EVERY = 5


class SinkhornOutput(NamedTuple):
    """``cost = <P_eps, C>``, potentials ``f (n,)``, ``g (m,)``, sweeps used, the returned plan's L1
    marginal error and whether it is ``<= tol`` (each with a leading batch axis from
    :func:`sinkhorn_batch`)."""

    cost: jax.Array
    f: jax.Array
    g: jax.Array
    n_iter: jax.Array
    error: jax.Array
    converged: jax.Array


# ---------------------------------------------------------------------------------------------------
# the log-domain sweep (used for gradients, absorption and the returned plan)
# ---------------------------------------------------------------------------------------------------


def _g_update(f, log_a, cost, eps):
    return -eps * logsumexp(log_a[..., :, None] + (f[..., :, None] - cost) / eps, axis=-2)


def _f_update(g, log_b, cost, eps):
    return -eps * logsumexp(log_b[..., None, :] + (g[..., None, :] - cost) / eps, axis=-1)


# ---------------------------------------------------------------------------------------------------
# the batched solver (no gradients)
# ---------------------------------------------------------------------------------------------------


def _kernel_half(kernel, log_w, transpose: bool):
    """``-(s + log sum K w)`` with ``w = exp(log_w - s)``, ``s = max log_w``: one half sweep in units of eps.

    ``kernel`` is ``(n, m)`` (shared: a matrix product) or ``(B, n, m)``; ``log_w`` is ``(B, n)`` for
    the column sums (``transpose=False``) or ``(B, m)`` for the row sums.
    """
    s = jnp.max(log_w, axis=-1, keepdims=True)
    s = jnp.where(jnp.isfinite(s), s, 0.0)
    w = jnp.exp(log_w - s)
    if kernel.ndim == 2:
        total = w @ (kernel.T if transpose else kernel)
    else:
        total = jnp.einsum("bij,bj->bi" if transpose else "bij,bi->bj", kernel, w)
    return -(s + jnp.log(total))


def _spread(x, mask):
    big = jnp.finfo(x.dtype).max
    return jnp.max(jnp.where(mask, x, -big), axis=-1) - jnp.min(jnp.where(mask, x, big), axis=-1)


class _State(NamedTuple):
    it: jax.Array        # sweeps done
    stage_eps: jax.Array  # (B, 1) current eps of each pair
    f0: jax.Array        # (B, n) absorbed potentials (cost units)
    g0: jax.Array        # (B, m)
    kernel: jax.Array    # (n, m) shared or (B, n, m)
    df: jax.Array        # (B, n) increments
    dg: jax.Array        # (B, m)
    f_out: jax.Array     # (B, n) the potential whose plan's error was measured last
    error: jax.Array     # (B,)
    prev_error: jax.Array  # (B,) error at the previous check
    best_error: jax.Array  # (B,) smallest error seen at the final eps
    checks: jax.Array    # (B,) checks done at the final eps
    omega: jax.Array     # (B, 1)
    relax_off: jax.Array  # (B,) over-relaxation disabled
    n_iter: jax.Array    # (B,) sweeps when first converged


def _solve(log_a, log_b, cost, eps, tol, max_iter, check_every, absorbing: bool):
    """Potentials ``f (B, n)`` of the plans ``(f, g(f))``, their errors and sweep counts.

    ``absorbing=False``: one shared kernel (the caller checked the cost range); ``True``: per-pair
    kernels with absorption and epsilon scaling.
    """
    batch, n = log_a.shape
    m = log_b.shape[-1]
    dtype = log_a.dtype
    mask_a, mask_b = jnp.isfinite(log_a), jnp.isfinite(log_b)
    a = jnp.exp(log_a)
    cmin = jnp.min(cost, axis=(-2, -1), keepdims=True)
    span = jnp.max(cost, axis=(-2, -1), keepdims=True) - cmin
    cost0 = cost - cmin  # a constant shift of the cost only shifts the potentials
    if absorbing:
        cost0 = jnp.broadcast_to(cost0, (batch, n, m))
        eps_start = jnp.maximum(eps, span.reshape(-1, 1) / START_EXPONENT) * jnp.ones((batch, 1), dtype)
    else:
        eps_start = jnp.full((batch, 1), eps, dtype)
    kernel0 = jnp.exp(-cost0 / (eps_start[:, :, None] if absorbing else eps))
    zeros_f, zeros_g = jnp.zeros((batch, n), dtype), jnp.zeros((batch, m), dtype)

    def half_g(kernel, df, e):
        return e * _kernel_half(kernel, log_a + df / e, transpose=False)

    def half_f(kernel, dg, e):
        return e * _kernel_half(kernel, log_b + dg / e, transpose=True)

    def block(s: _State) -> _State:
        e = s.stage_eps
        df, dg = s.df, s.dg
        for _ in range(check_every - 1):  # relaxed sweeps
            dg = dg + s.omega * (half_g(s.kernel, df, e) - dg)
            df = df + s.omega * (half_f(s.kernel, dg, e) - df)
        # the check sweep: the plan (f, g(f)) has rows a_i exp((f_i - T(f)_i) / eps)
        dg = half_g(s.kernel, df, e)
        df_next = half_f(s.kernel, dg, e)
        final = e[:, 0] <= eps
        error = jnp.sum(jnp.where(mask_a, a * jnp.abs(jnp.expm1((df - df_next) / e)), 0.0), axis=-1)
        ok = jnp.all(jnp.isfinite(df_next) | ~mask_a, axis=-1) & jnp.all(jnp.isfinite(dg) | ~mask_b, axis=-1)
        error = jnp.where(ok & final, error, jnp.inf)
        it = s.it + check_every
        f_out = jnp.where(ok[:, None], s.f0 + df, s.f_out)
        checks = s.checks + final.astype(s.checks.dtype)
        n_iter = jnp.where((s.n_iter < 0) & (error <= tol), it, s.n_iter)
        # over-relaxation: set once from the observed contraction, dropped for good if the error rises
        rate = (error / s.prev_error) ** (1.0 / check_every)
        rose = (s.omega[:, 0] > 1.0) & (error > DIVERGED * s.best_error)
        relax_off = s.relax_off | rose | ~ok
        # Young's relation for over-relaxed alternating sweeps, (r + w - 1)^2 = r w^2 lam, gives the plain
        # sweep's rate lam from the rate r seen with factor w; its best factor is 2 / (1 + sqrt(1 - lam))
        w = s.omega[:, 0]
        lam = jnp.minimum((rate + w - 1.0) ** 2 / (rate * w**2), 0.9999)
        fresh = (checks >= 2) & (rate > 0.0) & (rate < 1.0) & ~relax_off
        omega = jnp.where(fresh, jnp.clip(2.0 / (1.0 + jnp.sqrt(1.0 - lam)), 1.0, OMEGA_MAX), w)
        omega = jnp.where(relax_off, 1.0, omega)[:, None].astype(dtype)
        new_eps = jnp.maximum(e * EPS_DECAY, eps)
        state = _State(it, e, s.f0, s.g0, s.kernel, jnp.where(ok[:, None], df_next, s.df),
                       jnp.where(ok[:, None], dg, s.dg), f_out, error, jnp.where(final, error, s.prev_error),
                       jnp.where(final, jnp.minimum(error, s.best_error), s.best_error), checks, omega, relax_off, n_iter)
        if not absorbing:
            return state
        spread = jnp.maximum(_spread(df_next, mask_a), _spread(dg, mask_b)) / e[:, 0]
        need = ~ok | (spread > ABSORB_EXPONENT) | (new_eps[:, 0] < e[:, 0])
        return lax.cond(jnp.any(need), lambda st: _absorb(st, new_eps, ok), lambda st: st, state)

    def _absorb(s: _State, new_eps, finite) -> _State:
        # a fresh kernel around the current potentials; after a sweep that was not finite, around one
        # exact log-domain sweep from the last finite potentials
        f, g, e = s.f0 + s.df, s.g0 + s.dg, new_eps[:, :, None]

        def exact_sweep(f, g):
            g = -e[:, 0] * logsumexp(log_a[:, :, None] + (f[:, :, None] - cost0) / e, axis=1)
            return -e[:, 0] * logsumexp(log_b[:, None, :] + (g[:, None, :] - cost0) / e, axis=2), g

        f, g = lax.cond(jnp.all(finite), lambda f, g: (f, g), exact_sweep, f, g)
        kernel = jnp.exp((f[:, :, None] + g[:, None, :] - cost0) / e)
        return s._replace(stage_eps=new_eps, f0=f, g0=g, kernel=kernel, df=zeros_f, dg=zeros_g,
                          omega=jnp.where(new_eps < s.stage_eps, 1.0, s.omega))

    def cond(s: _State):
        return (s.it < max_iter) & jnp.any(~(s.error <= tol))

    init = _State(jnp.int32(0), eps_start, zeros_f, zeros_g, kernel0, zeros_f, zeros_g, zeros_f,
                  jnp.full((batch,), jnp.inf, dtype), jnp.full((batch,), jnp.inf, dtype),
                  jnp.full((batch,), jnp.inf, dtype), jnp.zeros((batch,), jnp.int32), jnp.ones((batch, 1), dtype), jnp.zeros((batch,), bool),
                  jnp.full((batch,), -1, jnp.int32))
    out = lax.while_loop(cond, block, init)
    n_iter = jnp.where(out.n_iter < 0, out.it, out.n_iter)
    return out.f_out, out.error, n_iter


def _solve_any(log_a, log_b, cost, eps, tol, max_iter, check_every):
    if cost.ndim == 2:  # shared: one kernel when its range allows, else per-pair kernels
        span = jnp.max(cost) - jnp.min(cost)
        return lax.cond(span <= SAFE_EXPONENT * eps,
                        lambda: _solve(log_a, log_b, cost, eps, tol, max_iter, check_every, absorbing=False),
                        lambda: _solve(log_a, log_b, cost, eps, tol, max_iter, check_every, absorbing=True))
    return _solve(log_a, log_b, cost, eps, tol, max_iter, check_every, absorbing=True)


# ---------------------------------------------------------------------------------------------------
# the differentiable value at the solver's root
# ---------------------------------------------------------------------------------------------------


def _value_at(log_a, log_b, cost, eps, f_root):
    """``(<P_eps, C>, f, g)`` at the root ``f_root`` (gauge fixed), implicitly differentiable."""
    a = jnp.exp(log_a)

    def residual(f):
        return f - _f_update(_g_update(f, log_a, cost, eps), log_b, cost, eps) + jnp.sum(a * f)

    def solve(_, f0):
        return f0  # the root was found by the batched solver

    def tangent_solve(linear, y):
        return jnp.linalg.solve(jax.jacfwd(linear)(y), y)

    f = lax.custom_root(residual, f_root, solve, tangent_solve)
    # g = g(f) and the plan P_ij = b_j softmax_i(log a_i + (f_i - C_ij) / eps) from one pass of exponentials
    z = log_a[:, None] + (f[:, None] - cost) / eps
    top = lax.stop_gradient(jnp.max(z, axis=0))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(z - top)
    total = jnp.sum(e, axis=0)
    g = -eps * (top + jnp.log(total))
    value = jnp.sum(jnp.exp(log_b) / total * jnp.sum(e * cost, axis=0))
    return value, f, g


def sinkhorn_batch(log_a: jax.Array, log_b: jax.Array, cost: jax.Array, epsilon, tol=1e-4, max_iter=10000,
                   check_every: int = CHECK_EVERY) -> SinkhornOutput:
    """Entropic OT for a batch: log-weights ``(B, n)``, ``(B, m)``, cost ``(n, m)`` shared or ``(B, n, m)``.

    Every field of the output has a leading batch axis. ``converged`` is ``error <= tol``; a pair
    that is not converged ran out of ``max_iter`` sweeps and its ``cost`` may lie below the OT cost.
    """
    eps = jnp.asarray(epsilon, cost.dtype)
    tol = jnp.asarray(tol, cost.dtype)
    stop = lax.stop_gradient
    f, error, n_iter = _solve_any(stop(log_a), stop(log_b), stop(cost), stop(eps), stop(tol), max_iter,
                                  check_every)
    f = stop(f - jnp.sum(jnp.exp(stop(log_a)) * f, axis=-1, keepdims=True))  # gauge: <a, f> = 0
    shared = cost.ndim == 2
    value, f, g = jax.vmap(_value_at, in_axes=(0, 0, None if shared else 0, None, 0))(log_a, log_b, cost, eps, f)
    error = stop(error)
    return SinkhornOutput(value, f, g, n_iter, error, error <= tol)


def sinkhorn(log_a: jax.Array, log_b: jax.Array, cost: jax.Array, epsilon, tol=1e-4, max_iter=10000) -> SinkhornOutput:
    """Entropic OT between log-weights ``log_a (n,)``, ``log_b (m,)`` for a cost ``(n, m)``."""
    out = sinkhorn_batch(log_a[None], log_b[None], cost, epsilon, tol, max_iter)
    return SinkhornOutput(*(v[0] for v in out))


def sinkhorn_cost(log_a, log_b, cost, epsilon, tol=1e-4, max_iter=10000) -> jax.Array:
    """``<P_eps, C>`` alone (see :func:`sinkhorn`)."""
    return sinkhorn(log_a, log_b, cost, epsilon, tol, max_iter).cost
