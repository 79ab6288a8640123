"""The component registry: the core's built-ins first, then one :class:`pluggy.PluginManager`.

:func:`get` answers a built-in name (the table of :mod:`smcflow.plugins.builtins`), or
``"smcflow:name"``, at once: no plugin manager is created and no entry point is read. Anything else
goes to the plugin manager, built on first use:

1. :mod:`smcflow.plugins.builtins` is registered as plugin ``"smcflow"``, so the built-ins are listed
   through the same hooks as everyone else's components;
2. the entry points of the group ``smcflow`` are loaded and validated one at a time
   (:mod:`smcflow.plugins.loading`): a plugin that fails is unregistered, reported
   (:class:`PluginLoadWarning`, :func:`load_errors`) and skipped; the others load.

Hook implementations are called one at a time, so a hook that raises or returns something other than
a mapping ``str -> callable`` loses only that plugin's contribution to that hook. The catalogue
``kind -> name -> [(plugin, factory)]`` is cached until the next :func:`register`, :func:`unregister`
or :func:`reset`. All of this runs in plain Python when a program is built, never in traced code.
"""
from __future__ import annotations

import threading
import traceback
import types
import warnings
from collections.abc import Mapping
from typing import Any, Callable

import pluggy

from . import builtins, hookspecs
from .errors import (PluginConflictError, PluginFailure, PluginLoadWarning, PluginRegistrationError,
                     UnknownComponentError, UnknownKindError, UnknownPluginError)
from .hookspecs import KIND_TO_HOOK, PROJECT
from .loading import error_text, load_entry_points, suggest, validate

#: plugin (and distribution) name of the core's own components
BUILTIN_PLUGIN_NAME = "smcflow"
Factory = Callable[..., Any]

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None  # stays None while only built-ins are asked for
_origin: dict[str, tuple[str, str | None]] = {}  # plugin name -> (source, entry-point value)
_failures: list[PluginFailure] = []
_reported: set[tuple[str, ...]] = set()  # (plugin, hook) failures, (plugin, kind, name) shadowings
_catalogue: dict[str, dict[str, list[tuple[str, Factory]]]] = {}
_notes: list[str] = []  # why some entry points were not loaded


def _check_kind(kind: str) -> str:
    if kind not in KIND_TO_HOOK:
        raise UnknownKindError(f"unknown plugin kind {kind!r}{suggest(str(kind), KIND_TO_HOOK)}; "
                               f"valid kinds: {', '.join(sorted(KIND_TO_HOOK))}")
    return kind


def _fail(plugin: str, dist: str | None, error: str, hook: str | None = None, tb: str | None = None):
    _failures.append(PluginFailure(plugin, dist, error, hook, tb))
    where = f" (distribution {dist!r})" if dist else ""
    what = f"hook {hook} failed, its components are ignored" if hook else "was skipped"
    warnings.warn(f"smcflow plugin {plugin!r}{where} {what}: {error}", PluginLoadWarning, stacklevel=4)


def _distribution(pm: pluggy.PluginManager, name: str) -> tuple[str | None, str | None]:
    """(distribution, version) of a plugin, from pluggy's record of the entry points it loaded."""
    if name == BUILTIN_PLUGIN_NAME:
        from .. import __version__

        return BUILTIN_PLUGIN_NAME, __version__
    plugin = pm.get_plugin(name)
    return next(((d.project_name, d.version) for p, d in pm.list_plugin_distinfo() if p is plugin),
                (None, None))


def plugin_manager() -> pluggy.PluginManager:
    """The :class:`pluggy.PluginManager`, built (built-ins, then entry points) on first call.

    Add plugins through :func:`register`, so that they are validated and the catalogue refreshed.
    """
    global _pm
    with _lock:
        if _pm is None:
            _pm = pm = pluggy.PluginManager(PROJECT)  # set first: a plugin may use smcflow.plugins
            pm.add_hookspecs(hookspecs)
            pm.register(builtins, name=BUILTIN_PLUGIN_NAME)
            _origin[BUILTIN_PLUGIN_NAME] = ("builtin", None)
            loaded, notes = load_entry_points(pm, _fail)
            _origin.update({name: ("entry_point", value) for name, value in loaded.items()})
            _notes.extend(notes)
        return _pm


def _catalogue_of(kind: str) -> dict[str, list[tuple[str, Factory]]]:
    """``name -> [(plugin, factory), ...]`` for one kind, in registration order (cached)."""
    with _lock:
        pm = plugin_manager()
        if kind in _catalogue:
            return _catalogue[kind]
        hook, builtin, entries = KIND_TO_HOOK[kind], builtins.table().get(kind, {}), {}
        for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):  # pluggy keeps them LIFO
            plugin = impl.plugin_name
            try:
                result = impl.function()
                if not isinstance(result, Mapping) or not all(
                        isinstance(k, str) and k and callable(v) for k, v in result.items()):
                    raise TypeError(f"returned {type(result).__name__} {result!r:.80}; a hook must "
                                    "return a mapping of non-empty str names to callable factories")
            except Exception as exc:
                if (plugin, hook) not in _reported:
                    _reported.add((plugin, hook))
                    _fail(plugin, _distribution(pm, plugin)[0], error_text(exc), hook,
                          traceback.format_exc())
                continue
            for name, factory in result.items():
                entries.setdefault(name, []).append((plugin, factory))
                shadowing = (plugin, kind, name)
                if name in builtin and plugin != BUILTIN_PLUGIN_NAME and shadowing not in _reported:
                    _reported.add(shadowing)
                    warnings.warn(f"smcflow plugin {plugin!r} offers the {kind} {name!r}, a built-in's "
                                  f"name: the built-in wins; get {plugin + ':' + name!r} for the plugin's",
                                  PluginLoadWarning, stacklevel=4)
        _catalogue[kind] = entries
        return entries


def _lookup(kind: str, name: str) -> tuple[str, Factory]:
    """(plugin, factory) of a name that is not a built-in's: one provider, or an error."""
    entries = _catalogue_of(kind)
    owner, qualified, component = name.partition(":")
    providers = entries.get(name) or [p for p in entries.get(component, []) if qualified and p[0] == owner]
    if not providers:
        failed = [f"{f.plugin} ({f.error})" for f in _failures if f.hook in (None, KIND_TO_HOOK[kind])]
        raise UnknownComponentError(
            f"no {kind} named {name!r}{suggest(name, entries)}; available {kind} names: "
            f"{', '.join(sorted(entries)) or '(none)'}"
            + (f". Plugins that failed to load: {'; '.join(failed)}" if failed else "")
            + (f". Note: {'; '.join(_notes)}" if _notes else ""))
    if len(providers) > 1:
        who = ", ".join(f"{p!r} (distribution {_distribution(plugin_manager(), p)[0]!r})"
                        for p, _ in providers)
        raise PluginConflictError(f"{kind} {name!r} is offered by several plugins: {who}; uninstall or "
                                  f"unregister one, or choose with get({kind!r}, '<plugin>:{name}')")
    return providers[0]


def get(kind: str, name: str, /, **config: Any) -> Any:
    """Build the component ``name`` of ``kind``: call its factory with ``config``, return the result.

    A built-in name gives the built-in whatever plugins are installed, and loads none;
    ``"plugin:name"`` picks that plugin's component (``"smcflow:name"``: the built-in). Raises
    :class:`UnknownKindError`, :class:`UnknownComponentError` (a ``KeyError`` whose message lists the
    available names and the plugins that failed to load) or :class:`PluginConflictError`. An
    exception raised by the factory propagates with a note naming the plugin.
    """
    builtin = builtins.table().get(_check_kind(kind), {})
    bare = name[len(BUILTIN_PLUGIN_NAME) + 1:] if name.startswith(f"{BUILTIN_PLUGIN_NAME}:") else name
    if bare in builtin:
        plugin, factory = BUILTIN_PLUGIN_NAME, builtin[bare]
    else:
        with _lock:
            plugin, factory = _lookup(kind, name)
    try:
        return factory(**config)
    except Exception as exc:
        exc.add_note(f"while building {kind} {name!r} from smcflow plugin {plugin!r}")
        raise


def available(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Sorted component names of one ``kind``, or ``{kind: names}`` for every kind; each name once."""
    if kind is None:
        return {k: sorted(_catalogue_of(k)) for k in KIND_TO_HOOK}
    return sorted(_catalogue_of(_check_kind(kind)))


def register(plugin: object, name: str | None = None) -> str:
    """Register a module or object carrying ``@smcflow.hookimpl`` functions; return its name.

    The default name is a module's ``__name__``, or ``module.QualifiedName`` of a class or of an
    instance's class. The plugin is validated at once; an invalid one is not kept and
    :class:`PluginRegistrationError` (a ``ValueError``) is raised. The next :func:`get` sees it.
    """
    if name is None and isinstance(plugin, types.ModuleType):
        name = plugin.__name__
    elif name is None:
        target = plugin if hasattr(plugin, "__qualname__") else type(plugin)
        name = f"{target.__module__}.{target.__qualname__}"
    with _lock:
        pm = plugin_manager()
        try:
            if plugin is None or pm.has_plugin(name):
                raise ValueError("the plugin is None" if plugin is None else "a plugin of that name is "
                                 "already registered; pass another name= or unregister it first")
            if pm.register(plugin, name=name) is None:
                raise ValueError("that name is blocked")
            validate(pm, name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            reason = str(exc).splitlines()[0]
            raise PluginRegistrationError(f"cannot register plugin {name!r}: {reason}") from None
        _origin[name] = ("register", None)
        _catalogue.clear()
        return name


def unregister(name_or_plugin: object) -> object:
    """Remove a plugin given by name or by object and return it; raise :class:`UnknownPluginError`
    (a ``KeyError``) when it is not registered. The built-ins cannot be removed."""
    with _lock:
        pm = plugin_manager()
        name = name_or_plugin if isinstance(name_or_plugin, str) else pm.get_name(name_or_plugin)
        plugin = pm.get_plugin(name) if name and name != BUILTIN_PLUGIN_NAME else None
        if plugin is None:
            raise UnknownPluginError(f"no plugin {name_or_plugin!r} can be unregistered; registered: "
                                     f"{', '.join(n for n, _ in pm.list_name_plugin())}")
        pm.unregister(plugin=plugin, name=name)
        _origin.pop(name, None)
        _failures[:] = [f for f in _failures if not (f.plugin == name and f.hook)]
        _reported.difference_update({key for key in _reported if key[0] == name})
        _catalogue.clear()
        return plugin


def load_errors() -> list[PluginFailure]:
    """Plugins skipped at load time and hooks whose contribution was ignored, so far.

    Hooks are called lazily: call :func:`available` or :func:`describe` first to run them all.
    """
    with _lock:
        plugin_manager()
        return list(_failures)


def describe() -> list[dict[str, Any]]:
    """One dict per registered plugin, in registration order (the built-ins are plugin ``"smcflow"``).

    Keys: ``name``, ``distribution``, ``version``, ``source`` (``"builtin"``, ``"entry_point"`` or
    ``"register"``), ``entry_point``, ``module``, ``components`` (``{kind: sorted names}`` for every
    kind) and ``errors`` (that plugin's hook failures).
    """
    with _lock:
        pm, catalogues, rows = plugin_manager(), {k: _catalogue_of(k) for k in KIND_TO_HOOK}, []
        for name, plugin in pm.list_name_plugin():
            source, entry_point = _origin.get(name, ("register", None))
            rows.append({
                "name": name, **dict(zip(("distribution", "version"), _distribution(pm, name))),
                "source": source, "entry_point": entry_point,
                "module": plugin.__name__ if isinstance(plugin, types.ModuleType) else plugin.__module__,
                "components": {kind: sorted(n for n, providers in entries.items()
                                            if any(p == name for p, _ in providers))
                               for kind, entries in catalogues.items()},
                "errors": [f.error for f in _failures if f.plugin == name and f.hook],
            })
        return rows


def conflicts() -> list[dict[str, Any]]:
    """Names offered by several plugins: ``{"kind", "name", "plugins", "builtin_wins"}`` dicts.

    ``builtin_wins``: the name is a built-in's, so :func:`get` gives the built-in and the plugins'
    are reachable as ``"plugin:name"``; otherwise :func:`get` refuses the bare name.
    """
    with _lock:
        return [{"kind": kind, "name": name, "plugins": sorted(p for p, _ in providers),
                 "builtin_wins": name in builtins.table().get(kind, {})}
                for kind in KIND_TO_HOOK for name, providers in sorted(_catalogue_of(kind).items())
                if len(providers) > 1]


def reset() -> None:
    """Forget every plugin, failure and cached catalogue; everything reloads lazily on next use,
    reading the environment variables again."""
    global _pm
    with _lock:
        _pm = None
        for state in (_origin, _failures, _reported, _catalogue, _notes):
            state.clear()
