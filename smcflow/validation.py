"""Checks run before compilation, so bad input fails with a message naming the culprit."""
from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .contracts import FeynmanKac, require
from .errors import ModelShapeError

__all__ = [
    "check_n_particles",
    "check_threshold",
    "check_key",
    "check_model",
    "split_static",
    "merge_static",
    "StaticPart",
    "describe_shapes",
]


def check_n_particles(n: Any, name: str = "n_particles") -> int:
    """A positive int: a Python int or a concrete integer scalar (NumPy / JAX); it fixes array shapes."""
    if isinstance(n, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete int (it fixes array shapes), got a traced value; "
                        "pass it as a static argument of your jit")
    is_int_array = isinstance(n, (np.ndarray, np.generic, jax.Array)) and np.ndim(n) == 0 and \
        np.issubdtype(np.asarray(n).dtype, np.integer)
    if not is_int_array and (isinstance(n, bool) or not isinstance(n, numbers.Integral)):
        raise TypeError(f"{name} must be a positive int, got {n!r} ({type(n).__name__})")
    n = int(n)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def real_scalar(value: Any, name: str, what: str) -> float | None:
    """``value`` as a Python float, or None for a traced value (checked later, if at all).

    Raises ``TypeError`` / ``ValueError`` naming ``name`` and saying it must be ``what`` (e.g.
    ``"a number in [0, 1]"``) for strings, bools, None, non-numbers and non-scalars.
    """
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})") from None
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, {what}, got shape {arr.shape}")
    return float(arr)


def check_threshold(value: Any, name: str = "ess_threshold") -> None:
    """A real number in [0, 1] (traced values are accepted unchecked)."""
    v = real_scalar(value, name, "a number in [0, 1]")
    if v is None:
        return
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {v}")


def check_key(key: Any, name: str = "key", batch: bool = False) -> None:
    """One JAX PRNG key (a typed key of shape ``()`` or a raw ``uint32`` key), or a batch if ``batch``."""
    hint = "; make one with jax.random.key(0)"
    if isinstance(key, (numbers.Number, bool)) or not hasattr(key, "dtype"):
        raise TypeError(f"{name} must be a JAX PRNG key, got {key!r} ({type(key).__name__}){hint}")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        extra = key.shape
    elif key.dtype == jnp.uint32 and key.ndim >= 1:
        extra = key.shape[:-1]
    else:
        raise TypeError(f"{name} must be a JAX PRNG key, got an array of dtype {key.dtype} and shape "
                        f"{key.shape}{hint}")
    if not batch and extra != ():
        raise ValueError(f"{name} must be a single PRNG key, got a batch of shape {extra}; "
                         "for independent runs pass one key and n_runs=...")


def describe_shapes(tree: Any) -> str:
    return str(jax.tree_util.tree_map(lambda a: f"{a.dtype}{list(a.shape)}", tree))


def _model_name(model: Any) -> str:
    return type(model).__name__


def check_model(model: Any, n_particles: int) -> int:
    """Check a Feynman-Kac model's interface and shapes with ``jax.eval_shape``; return ``n_steps``."""
    name = _model_name(model)
    require(model, FeynmanKac, f"model {name}")
    validate = getattr(model, "validate", None)
    if callable(validate):
        validate()
    n_steps = model.n_steps
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 0:
        raise TypeError(f"{name}.n_steps must be a static int >= 0, got {n_steps!r}")
    # traced with the real particle count: a model that hard-codes a length fails here, not after compiling
    n = n_particles
    arrays, static = split_static(model)
    signature = (static, tuple((jnp.shape(a), jnp.result_type(a)) for a in arrays), n, int(n_steps))
    if signature not in _TRACED_OK:
        _check_traced_shapes(model, name, n, int(n_steps))
        if len(_TRACED_OK) >= _TRACED_OK_MAX:
            _TRACED_OK.pop(next(iter(_TRACED_OK)))
        _TRACED_OK[signature] = None
    return int(n_steps)


# Models whose traced shapes already passed, keyed by static part, array shapes/dtypes, particle count
# and n_steps (insertion-ordered; the oldest entry is dropped first). Repeated calls on the same model
# then skip two traces, which otherwise cost milliseconds per call.
_TRACED_OK: dict[tuple, None] = {}
_TRACED_OK_MAX = 256


def _check_traced_shapes(model: Any, name: str, n: int, n_steps: int) -> None:
    """Trace ``init`` and one ``step`` abstractly with ``n`` particles and check what they return."""
    key = jax.random.key(0)
    try:
        out = jax.eval_shape(lambda k: model.init(k, n), key)
    except Exception as exc:  # re-raised with the model named
        raise ModelShapeError(f"{name}.init(key, n={n}) failed while tracing: {exc}") from exc
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ModelShapeError(f"{name}.init(key, n) must return (x, log_w), got {describe_shapes(out)}")
    x, log_w = out
    _check_particles(x, n, f"{name}.init(key, n={n}) particles")
    _check_log_weights(log_w, n, f"{name}.init(key, n={n}) log-weights")
    if n_steps == 0:
        return
    x_struct = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)
    try:
        out = jax.eval_shape(lambda k, x: model.step(k, jnp.int32(0), x), key, x_struct)
    except Exception as exc:
        raise ModelShapeError(f"{name}.step(key, t, x) failed while tracing with x={describe_shapes(x)}: {exc}") from exc
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ModelShapeError(f"{name}.step(key, t, x) must return (x, log_g), got {describe_shapes(out)}")
    x_new, log_g = out
    if jax.tree_util.tree_structure(x_new) != jax.tree_util.tree_structure(x) or any(
        a.shape != b.shape or a.dtype != b.dtype
        for a, b in zip(jax.tree_util.tree_leaves(x_new), jax.tree_util.tree_leaves(x))
    ):
        raise ModelShapeError(
            f"{name}.step must return particles like its input: got {describe_shapes(x_new)} "
            f"for input {describe_shapes(x)}"
        )
    _check_log_weights(log_g, n, f"{name}.step(key, t, x) log-potentials")


def _check_particles(x: Any, n: int, what: str) -> None:
    leaves = jax.tree_util.tree_leaves(x)
    if not leaves:
        raise ModelShapeError(f"{what}: no arrays")
    for leaf in leaves:
        if leaf.ndim == 0 or leaf.shape[0] != n:
            raise ModelShapeError(f"{what} must have leading axis {n} (one row per particle); got {describe_shapes(x)}")


def _check_log_weights(log_w: Any, n: int, what: str) -> None:
    shape = getattr(log_w, "shape", None)
    dtype = getattr(log_w, "dtype", None)
    if shape != (n,):
        hint = ""
        if shape is not None and len(shape) > 1 and shape[0] == n:
            hint = " (for a vector-valued variable make the distribution's event shape hold it, e.g. .to_event(1))"
        raise ModelShapeError(f"{what} must have shape ({n},), got {shape}{hint}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ModelShapeError(f"{what} must be floating point, got {dtype}")


def _is_array_leaf(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, numbers.Number)) and not isinstance(leaf, bool)


def _static_hash(obj: Any) -> int:
    try:
        return hash((type(obj), obj))
    except TypeError:  # unhashable: fall back to identity (a new object then recompiles, never aliases)
        return id(obj)


def _static_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # e.g. an object holding arrays whose == is elementwise
        return False


@jax.tree_util.register_static
class StaticPart:
    """The non-array part of a pytree (its structure and non-array leaves such as functions).

    Compared by value (``type`` and ``==`` of each non-array leaf, identity when ``==`` fails), so
    ``jit`` reuses a compiled program for a new model built from equal parts: the same functions, equal
    frozen-dataclass configurations (a noise schedule, say), equal strings and tuples.
    """

    def __init__(self, treedef: Any, is_array: tuple[bool, ...], others: tuple[Any, ...]):
        self.treedef = treedef
        self.is_array = is_array
        self.others = others

    def __hash__(self) -> int:
        return hash((self.treedef, self.is_array, tuple(_static_hash(o) for o in self.others)))

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, StaticPart)
            and self.treedef == other.treedef
            and self.is_array == other.is_array
            and len(self.others) == len(other.others)
            and all(_static_equal(a, b) for a, b in zip(self.others, other.others))
        )


def split_static(obj: Any) -> tuple[list[Any], StaticPart]:
    """Split ``obj`` into its array leaves (traced under ``jit``) and a hashable static part.

    An object that is not a registered pytree is a single non-array leaf: wholly static.
    """
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    is_array = tuple(_is_array_leaf(leaf) for leaf in leaves)
    arrays = [leaf for leaf, a in zip(leaves, is_array) if a]
    others = tuple(leaf for leaf, a in zip(leaves, is_array) if not a)
    return arrays, StaticPart(treedef, is_array, others)


def merge_static(arrays: list[Any], static: StaticPart) -> Any:
    """Inverse of :func:`split_static`."""
    arrays_iter, others_iter = iter(arrays), iter(static.others)
    leaves = [next(arrays_iter) if a else next(others_iter) for a in static.is_array]
    return jax.tree_util.tree_unflatten(static.treedef, leaves)


def register_model_pytree(cls: type, children: tuple[str, ...], static: tuple[str, ...] = ()) -> type:
    """Register a frozen model dataclass as a pytree whose unflatten skips its construction check.

    The pytree is what ``jax.tree_util.register_dataclass`` gives (``children`` as children under
    attribute keys, ``static`` as auxiliary data), but JAX rebuilds pytrees with placeholder leaves
    (``object()`` proxies, axis specs, ``None`` from a ``tree_map``), so unflattening sets the fields
    directly instead of calling ``__init__`` (and ``__post_init__``'s checks), as a dataclass copy would.
    """

    def flatten_with_keys(obj):
        return (tuple((jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in children),
                tuple(getattr(obj, n) for n in static))

    def flatten(obj):
        return tuple(getattr(obj, n) for n in children), tuple(getattr(obj, n) for n in static)

    def unflatten(aux, values):
        obj = object.__new__(cls)
        for name, value in zip(children + static, tuple(values) + tuple(aux)):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten_func=flatten)
    return cls
