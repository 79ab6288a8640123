"""Time-homogeneous SDEs ``dX = b(X) dt + Sigma(X) dW`` with ``a = Sigma Sigma^T``, and their simulation.

An SDE (DESIGN.md section 3) is any object with ``drift(x) -> (n, d)`` and ``diffusion(x) -> (n, d, d)``,
the covariance *rate* ``a(x)`` (so ``Cov[X_{t+dt} - X_t | X_t = x] ~ a(x) dt``), symmetric positive
semi-definite everywhere. :class:`SDE` wraps two callables into such an object; a fitted estimator
(plugin kind ``estimator``) returns one, so it plugs straight into :func:`simulate_sde`, the SDE
filters (:mod:`smcflow.sde_filters`) and the ensemble Kalman filter (:mod:`smcflow.enkf`).

Every move is the one Euler-Maruyama step of :func:`smcflow.path.euler_maruyama` (``kind="full"``)
with ``Sigma(x) = diffusion_factor(a(x))``::

    x <- x + h b(x) + sqrt(h) Sigma(x) xi,      xi ~ N(0, I_d),   h = dt / n_substeps.

Any ``Sigma`` with ``Sigma Sigma^T = a`` gives the same transition law; the Cholesky factor is used,
and the symmetric square root (eigen-decomposition, negative eigenvalues clipped to 0) for the
particles whose ``a`` is only semi-definite (a singular Cholesky factor is NaN in JAX).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .path import euler_maruyama
from .validation import merge_static, real_scalar, split_static

__all__ = ["SDE", "simulate_sde", "diffusion_factor", "check_sde", "check_step", "check_count", "em_substeps"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SDE:
    """``dX = b(X) dt + Sigma(X) dW`` from ``drift(x) -> (n, d)`` and ``diffusion(x) -> (n, d, d)``.

    ``diffusion`` is the covariance rate ``a(x) = Sigma(x) Sigma(x)^T`` (not ``Sigma``), symmetric
    positive semi-definite. Both may be plain functions (static) or callable pytrees, whose array
    leaves (fitted coefficients, network weights) are traced, so a new fit does not recompile.
    """

    drift: Callable[[jax.Array], jax.Array]
    diffusion: Callable[[jax.Array], jax.Array]

    def __post_init__(self) -> None:
        for name in ("drift", "diffusion"):
            value = getattr(self, name)
            if not callable(value) and not _is_placeholder(value):
                raise TypeError(f"SDE.{name} must be callable {name}(x) -> (n, d{', d' * (name == 'diffusion')}), "
                                f"got {type(value).__name__}")


def _is_placeholder(value: Any) -> bool:
    """JAX rebuilds pytrees with placeholder leaves (``object()``, ``None``) while tracing."""
    return value is None or type(value) is object


def diffusion_factor(a: jax.Array) -> jax.Array:
    """A ``Sigma`` with ``Sigma Sigma^T = a`` for a batch ``(n, d, d)`` of PSD matrices.

    The Cholesky factor; where it fails (``a`` singular, or slightly indefinite from rounding) the
    symmetric square root ``V diag(sqrt(max(w, 0))) V^T`` of the eigen-decomposition ``a = V diag(w) V^T``
    is used for those particles (computed only when some particle needs it).
    """
    chol = jnp.linalg.cholesky(a)
    bad = jnp.any(~jnp.isfinite(chol), axis=(-2, -1))

    def repair(chol: jax.Array) -> jax.Array:
        w, v = jnp.linalg.eigh(0.5 * (a + jnp.swapaxes(a, -1, -2)))
        root = (v * jnp.sqrt(jnp.maximum(w, 0.0))[..., None, :]) @ jnp.swapaxes(v, -1, -2)
        return jnp.where(bad[..., None, None], root, chol)

    return lax.cond(jnp.any(bad), repair, lambda c: c, chol)


def em_substeps(sde: Any, key: jax.Array, x: jax.Array, h: jax.Array, n_substeps: int) -> jax.Array:
    """``n_substeps`` reference Euler-Maruyama steps of size ``h`` from ``x`` ``(n, d)`` (draws from
    ``fold_in(key, s)`` for substep ``s``)."""

    def body(s, x):
        xi = jax.random.normal(jax.random.fold_in(key, s), x.shape, x.dtype)
        sigma = diffusion_factor(sde.diffusion(x).astype(x.dtype))
        return euler_maruyama(x, sde.drift(x).astype(x.dtype), None, sigma, xi, h, "full")[0]

    return lax.fori_loop(0, n_substeps, body, x)


# -- checks before compiling ------------------------------------------------------------------------


def check_step(dt: Any, name: str = "dt") -> None:
    """``dt`` a finite real number > 0 (traced values pass unchecked)."""
    value = real_scalar(dt, name, "a number > 0")
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as a Python ``int >= minimum``, or a ``TypeError`` / ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum} (it fixes a loop length), got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def check_sde(sde: Any, x: Any, name: str = "sde") -> None:
    """Refuse an SDE whose ``drift``/``diffusion`` at the points ``x`` ``(n, d)`` have the wrong shape, or
    (when they can be evaluated now) are not finite, or whose ``diffusion`` is not symmetric PSD.

    Errors name ``name.drift`` / ``name.diffusion``. Shapes are checked with ``jax.eval_shape``; the
    values are checked when ``x`` and the SDE's parameters are concrete (skipped under a user's ``jit``).
    """
    for part in ("drift", "diffusion"):
        if not callable(getattr(sde, part, None)):
            raise TypeError(f"{name} has no callable {part!r}; an SDE needs drift(x) -> (n, d) and "
                            "diffusion(x) -> (n, d, d) (e.g. smcflow.SDE(drift, diffusion))")
    n, d = x.shape
    struct = jax.ShapeDtypeStruct(x.shape, x.dtype)
    for part, want in (("drift", (n, d)), ("diffusion", (n, d, d))):
        try:
            got = jax.eval_shape(getattr(sde, part), struct)
        except Exception as exc:
            raise ValueError(f"{name}.{part}(x) failed for x of shape {x.shape}: {exc}") from exc
        if getattr(got, "shape", None) != want:
            raise ValueError(f"{name}.{part}(x) must return shape {want} for x of shape {x.shape} "
                             f"(state dimension {d}), got {getattr(got, 'shape', type(got).__name__)}")
    if isinstance(x, jax.core.Tracer):
        return
    try:  # one compiled evaluation (op-by-op evaluation of a network or grid field compiles every op)
        b, a = (np.asarray(v, np.float64) for v in _coefficients(*split_static(sde), jnp.asarray(x)))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return  # parameters traced by a user's jit: shapes were checked, values cannot be
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name}.drift(x) is not finite at {_first_bad(~np.isfinite(b).all(-1), x)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}.diffusion(x) is not finite at {_first_bad(~np.isfinite(a).all((-2, -1)), x)}")
    scale = np.maximum(np.abs(a).max(axis=(-2, -1)), np.finfo(np.float32).tiny)
    asym = np.abs(a - np.swapaxes(a, -1, -2)).max(axis=(-2, -1)) / scale
    if np.any(asym > 1e-5):
        i = int(np.argmax(asym))
        raise ValueError(f"{name}.diffusion(x) must be symmetric (it is the covariance rate a = Sigma Sigma^T), "
                         f"got {a[i].tolist()} at x = {np.asarray(x)[i].tolist()}")
    low = np.linalg.eigvalsh(0.5 * (a + np.swapaxes(a, -1, -2)))[:, 0] / scale
    if np.any(low < -1e-5):
        i = int(np.argmin(low))
        raise ValueError(f"{name}.diffusion(x) must be positive semi-definite (a covariance rate), got "
                         f"{a[i].tolist()} with eigenvalue {low[i] * scale[i]:.4g} at x = {np.asarray(x)[i].tolist()}")


@partial(jax.jit, static_argnames=("static",))
def _coefficients(arrays, static, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    sde = merge_static(arrays, static)
    return sde.drift(x), sde.diffusion(x)


def _first_bad(bad: np.ndarray, x: Any) -> str:
    return f"x = {np.asarray(x)[int(np.argmax(bad))].tolist()}"


def as_points(x0: Any, name: str = "x0") -> jax.Array:
    """``x0`` as a floating ``(n, d)`` array (a single ``(d,)`` point becomes ``(1, d)``)."""
    x = jnp.asarray(x0)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) or (d,), got {jnp.shape(x0)}")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} has non-finite entries")
    return x


# -- simulation -------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("static", "n_steps", "n_substeps"))
def _simulate(arrays, static, key, x0, h, n_steps: int, n_substeps: int) -> jax.Array:
    sde = merge_static(arrays, static)

    def body(x, i):
        x = em_substeps(sde, jax.random.fold_in(key, i), x, h, n_substeps)
        return x, x

    _, xs = lax.scan(body, x0, jnp.arange(n_steps))
    return jnp.concatenate([x0[:, None], jnp.swapaxes(xs, 0, 1)], axis=1)


def simulate_sde(sde: Any, key: jax.Array, x0: Any, dt: Any, n_steps: int, n_substeps: int = 1) -> jax.Array:
    """Paths of ``sde`` recorded every ``dt`` from ``x0``, each interval made of ``n_substeps``
    Euler-Maruyama steps of size ``h = dt / n_substeps``.

    Args:
      sde: an object with ``drift(x) -> (n, d)`` and ``diffusion(x) -> (n, d, d)`` (:class:`SDE`).
      key: a JAX PRNG key (the same key gives the same paths).
      x0: ``(n, d)`` starting points (one path each), or one point ``(d,)``.
      dt: time between recorded points, > 0.
      n_steps: number of recorded intervals (int >= 1).
      n_substeps: Euler-Maruyama steps per interval (int >= 1).

    Returns:
      ``(n, n_steps + 1, d)`` paths (``(n_steps + 1, d)`` for a single ``(d,)`` start), ``x0`` first:
      the layout an estimator's ``fit(paths, dt)`` takes.
    """
    check_step(dt)
    n_steps = check_count(n_steps, "n_steps")
    n_substeps = check_count(n_substeps, "n_substeps")
    x = as_points(x0)
    check_sde(sde, x)
    paths = _simulate(*split_static(sde), key, x, jnp.asarray(dt, x.dtype) / n_substeps,
                      n_steps=n_steps, n_substeps=n_substeps)
    return paths[0] if jnp.ndim(x0) == 1 else paths
