"""Saving and loading parameter pytrees (nested dicts of arrays) as ``.npz`` files, without pickle.

A pytree ``{"net": {"w": w, "b": b}, "beta": 0.5}`` is stored as the arrays ``"net/w"``, ``"net/b"``
and ``"beta"`` of one ``.npz`` archive (readable by :func:`numpy.load`), plus one small text entry
``__smcflow_meta__`` (a JSON string) recording empty sub-dicts and dtypes NumPy does not know natively
(``bfloat16`` and the other ``ml_dtypes`` types, stored as raw bits). Files are read with
``allow_pickle=False``: an archive holding an object array is refused, never unpickled.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

__all__ = ["save_weights", "load_weights", "SEPARATOR"]

#: separator between the keys of nested dicts in the flattened names
SEPARATOR = "/"
_META = "__smcflow_meta__"
_FORMAT = 1
_NUMERIC_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex

PathLike = Union[str, "os.PathLike[str]"]


def _as_array(value: Any, where: str) -> np.ndarray:
    """``value`` as a NumPy array of a numeric dtype, or a ``TypeError`` naming ``where``."""
    if isinstance(value, (bool, int, float, complex, np.generic)):
        arr = np.asarray(value)
    elif hasattr(value, "__array__") and hasattr(value, "dtype") and hasattr(value, "shape"):
        arr = np.asarray(value)  # numpy and jax arrays (jax arrays are copied to the host)
    else:
        raise TypeError(
            f"leaf {where!r} is a {type(value).__name__}; expected an array or a number "
            "(containers other than dicts of str keys are not supported)"
        )
    if arr.dtype.kind in _NUMERIC_KINDS or _extended_dtype_name(arr.dtype) is not None:
        return arr
    raise TypeError(
        f"leaf {where!r} has dtype {arr.dtype}; only numeric and boolean arrays can be saved "
        "(object arrays would need pickle)"
    )


def _extended_dtype_name(dtype: np.dtype) -> str | None:
    """Name of an ``ml_dtypes`` dtype (``bfloat16``, ``float8_*``, ``int4``, ...), else ``None``."""
    if dtype.kind in _NUMERIC_KINDS or dtype.kind == "O":
        return None
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes ships with jax
        return None
    candidate = getattr(ml_dtypes, dtype.name, None)
    return dtype.name if candidate is not None and np.dtype(candidate) == dtype else None


def _flatten(tree: Mapping[str, Any], prefix: str, out: dict[str, np.ndarray],
             empty: list[str]) -> None:
    if not tree and prefix:
        empty.append(prefix[:-1])
    for key, value in tree.items():
        if not isinstance(key, str):
            raise TypeError(f"key {key!r} under {prefix[:-1] or '<root>'!r} is not a str")
        if not key or SEPARATOR in key or key == _META:
            raise ValueError(f"invalid key {key!r} under {prefix[:-1] or '<root>'!r}: keys must be "
                             f"non-empty, without {SEPARATOR!r}, and not {_META!r}")
        name = prefix + key
        if isinstance(value, Mapping):
            _flatten(value, name + SEPARATOR, out, empty)
        else:
            out[name] = _as_array(value, name)


def save_weights(path: PathLike, params: Mapping[str, Any], *, compress: bool = False) -> Path:
    """Write a nested dict of arrays to an ``.npz`` file and return the path written.

    Keys must be non-empty ``str`` without ``"/"``; leaves must be arrays (NumPy, JAX) or numbers of
    a numeric or boolean dtype. ``".npz"`` is appended to ``path`` when it has another suffix. The
    file is written to a temporary name first and then moved into place, so a crash never leaves a
    half-written file. ``compress=True`` deflates the arrays.

    Raises ``TypeError`` for a non-dict ``params``, a non-str key or a non-array leaf (object arrays
    included) and ``ValueError`` for an invalid key.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of str -> array, got {type(params).__name__}")
    flat: dict[str, np.ndarray] = {}
    empty: list[str] = []
    _flatten(params, "", flat, empty)
    dtypes: dict[str, str] = {}
    for name, arr in flat.items():
        extended = _extended_dtype_name(arr.dtype)
        if extended is not None:  # store the raw bits; NumPy cannot describe the dtype itself
            dtypes[name] = extended
            flat[name] = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    meta = json.dumps({"format": _FORMAT, "empty": empty, "dtypes": dtypes})

    target = Path(os.fspath(path))
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=mode) as archive:
            entries = {**flat, _META: np.asarray(meta)}
            for name, arr in entries.items():
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _insert(tree: dict[str, Any], name: str, value: Any, source: Path) -> None:
    parts = name.split(SEPARATOR)
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{source}: entry {name!r} lies under the array "
                             f"{SEPARATOR.join(parts[: i + 1])!r}")
        node = child
    if parts[-1] in node:
        raise ValueError(f"{source}: entry {name!r} is both an array and a group")
    node[parts[-1]] = value


def _not_an_archive(source: Path, exc: BaseException) -> ValueError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ValueError(f"{source} is not a valid smcflow weights archive (.npz): {detail} "
                      "(the file is truncated, corrupted or of another format)")


#: what NumPy and zipfile raise on a damaged archive: a missing or bad central directory, a bad CRC,
#: a truncated member (``EOFError``, ``ValueError`` from the ``.npy`` reader), corrupt deflate data
#: (``zlib.error``), a damaged header field (``struct.error``, ``NotImplementedError`` for an unknown
#: compression method, ``OSError`` for a seek outside the file), undecodable names or metadata
_CORRUPTION_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error,
                      struct.error, OSError, KeyError, UnicodeDecodeError)


def load_weights(path: PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_weights` back into a nested dict of NumPy arrays.

    Any ``.npz`` file of numeric arrays works; names containing ``"/"`` become nested dicts. When
    ``path`` does not exist but ``path + ".npz"`` does, that file is read. Arrays come back as NumPy
    arrays on the host (``jax.device_put`` or ``jnp.asarray`` them as needed), with their saved dtype.

    Raises ``FileNotFoundError`` when there is no such file, and ``ValueError`` naming the file when
    it is not a valid ``.npz`` archive (empty, truncated, corrupted, random bytes, a single ``.npy``
    array, members that are not ``.npy`` arrays, damaged metadata; the original error is chained as
    ``__cause__``) or when it holds object arrays (which would need pickle and are never loaded).
    An unreadable file (``PermissionError``) propagates as it is.
    """
    source = Path(os.fspath(path))
    if not source.exists() and source.suffix != ".npz":
        alternative = source.with_name(source.name + ".npz")
        source = alternative if alternative.exists() else source
    if not source.is_file():
        raise FileNotFoundError(f"no weights file at {os.fspath(path)!r}")
    with open(source, "rb"):  # a PermissionError here is not a corrupted archive
        pass
    try:
        archive = np.load(source, allow_pickle=False)
    except _CORRUPTION_ERRORS as exc:
        raise _not_an_archive(source, exc) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{source} holds a single .npy array, not an .npz archive of named arrays "
                         "(not a valid smcflow weights archive)")
    tree: dict[str, Any] = {}
    with archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise _not_an_archive(source, exc) from exc
                raise ValueError(f"{source} holds object arrays, which are refused because loading "
                                 f"them would need pickle: {exc}") from exc
            except _CORRUPTION_ERRORS as exc:
                raise _not_an_archive(source, exc) from exc
            if not isinstance(arrays[name], np.ndarray):  # NpzFile hands back non-.npy members as bytes
                raise _not_an_archive(source, ValueError(f"member {name!r} is not a .npy array"))
    meta = {"empty": [], "dtypes": {}}
    if _META in arrays:
        try:
            stored = json.loads(str(arrays.pop(_META).item()))
            if not isinstance(stored, dict):
                raise ValueError(f"{_META} is not a JSON object")
            meta.update(stored)
            if not isinstance(meta["dtypes"], dict) or not isinstance(meta["empty"], list):
                raise ValueError(f"{_META} has malformed 'dtypes' or 'empty' entries")
        except ValueError as exc:  # json.JSONDecodeError included
            raise _not_an_archive(source, exc) from exc
    for name, arr in arrays.items():
        extended = meta["dtypes"].get(name)
        if extended is not None:
            import ml_dtypes

            dtype = getattr(ml_dtypes, str(extended), None)
            if dtype is None:
                raise _not_an_archive(source, ValueError(f"unknown dtype {extended!r} for {name!r}"))
            try:
                arr = arr.view(np.dtype(dtype))
            except (TypeError, ValueError) as exc:
                raise _not_an_archive(source, exc) from exc
        _insert(tree, name, arr, source)
    for name in meta["empty"]:
        node = tree
        for part in str(name).split(SEPARATOR):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise _not_an_archive(source, ValueError(f"empty group {name!r} lies under an array"))
    return tree
