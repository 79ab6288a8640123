"""The plugin registry: one :class:`pluggy.PluginManager` for the project ``smcflow``.

What it does, in order, the first time anything asks for a component:

1. registers :mod:`smcflow.plugins.builtins` (plugin ``"smcflow"``) through the ordinary hooks;
2. unless ``SMCFLOW_DISABLE_PLUGIN_AUTOLOAD`` is set, loads every entry point of the group
   ``smcflow`` (restricted to the names in ``SMCFLOW_PLUGINS`` when that is set) and registers each
   loaded object as a plugin named after its entry point.

Every plugin is validated as soon as it is registered (pluggy's own checks, plus: no hook
implementation without a hook specification, no un-decorated or misspelled ``smcflow_*`` function, no
wrapper). A plugin that fails to import or to validate is unregistered, reported with a
:class:`PluginLoadWarning` and recorded in :func:`load_errors`; the others load normally.

Hooks are called one implementation at a time, so that a hook that raises or returns something other
than a mapping ``str -> callable`` only loses that plugin's contribution to that hook (reported once).
The resulting catalogue ``kind -> name -> providers`` is cached and dropped by every
:func:`register`, :func:`unregister` and :func:`reset`; :func:`revision` changes at the same moments, so
callers that cache built programs can key on it.

All of this runs in plain Python when a program is built; nothing here may be called from traced code.
"""
from __future__ import annotations

import difflib
import importlib.metadata as metadata
import inspect
import os
import re
import sys
import threading
import traceback
import types
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import pluggy

from . import hookspecs
from .hookspecs import KIND_TO_HOOK, PROJECT

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
    "BUILTIN_PLUGIN_NAME",
    "PluginLoadWarning",
    "RegistryError",
    "UnknownKindError",
    "UnknownComponentError",
    "UnknownPluginError",
    "PluginConflictError",
    "PluginRegistrationError",
    "PluginFailure",
    "available",
    "get",
    "register",
    "unregister",
    "load_errors",
    "describe",
    "conflicts",
    "reset",
    "reload",
    "revision",
    "plugin_manager",
    "package_version",
]

#: entry-point group scanned for plugins
ENTRY_POINT_GROUP = "smcflow"
#: set (to anything but "", 0, false, no, off) to skip entry-point discovery entirely
ENV_DISABLE_AUTOLOAD = "SMCFLOW_DISABLE_PLUGIN_AUTOLOAD"
#: comma-separated entry-point or distribution names: when set, only those entry points are loaded
ENV_PLUGINS = "SMCFLOW_PLUGINS"
#: name (and distribution) under which the core's own components are registered
BUILTIN_PLUGIN_NAME = "smcflow"

_HOOK_TO_KIND = {hook: kind for kind, hook in KIND_TO_HOOK.items()}
_FALSY = {"", "0", "false", "no", "off"}

Factory = Callable[..., Any]


# ---------------------------------------------------------------------------------------------------
# errors and records


class PluginLoadWarning(UserWarning):
    """A plugin failed to load, failed validation, or one of its hooks failed; it was skipped."""


class RegistryError(Exception):
    """Base class of the registry's errors."""


class UnknownKindError(RegistryError, ValueError):
    """The plugin kind is not one of :data:`KIND_TO_HOOK`."""


class _KeyErrorMessage(KeyError):
    """A :class:`KeyError` whose ``str`` is its message (``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownComponentError(RegistryError, _KeyErrorMessage):
    """No plugin provides a component of that kind under that name."""


class UnknownPluginError(RegistryError, _KeyErrorMessage):
    """No plugin is registered under that name (or that object is not registered)."""


class PluginConflictError(RegistryError, LookupError):
    """Several plugins provide a component of the same kind under the same name."""


class PluginRegistrationError(RegistryError, ValueError):
    """:func:`register` refused a plugin (invalid hooks, name already taken, ...)."""


@dataclass(frozen=True)
class PluginFailure:
    """One problem met while loading plugins (see :func:`load_errors`).

    ``hook`` is ``None`` when the whole plugin was skipped (import or validation failure); otherwise
    the plugin stays registered and only its contribution to that hook is ignored.
    """

    plugin: str
    distribution: str | None
    error: str
    hook: str | None = None
    traceback: str | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-friendly dict."""
        return asdict(self)

    def describe(self) -> str:
        """One line: who failed and why."""
        where = f" (distribution {self.distribution!r})" if self.distribution else ""
        what = f"hook {self.hook} failed" if self.hook else "skipped"
        return f"plugin {self.plugin!r}{where}: {what}: {self.error}"


@dataclass
class _PluginInfo:
    name: str
    source: str  # "builtin", "entry_point" or "register"
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None
    module: str | None = None
    resolved: bool = False  # distribution looked up (programmatic registrations only)


class _Invalid(Exception):
    """Internal: a plugin failed validation (message is user-facing)."""


# ---------------------------------------------------------------------------------------------------
# helpers


def package_version() -> str:
    """The installed (or source-tree) version of smcflow."""
    version = getattr(sys.modules.get("smcflow"), "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return metadata.version("smcflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def _normalise(name: str) -> str:
    """Distribution-name normalisation (PEP 503), applied to entry-point names too."""
    return re.sub(r"[-_.]+", "-", name).strip().lower()


def _autoload_disabled() -> bool:
    return os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() not in _FALSY


def _plugin_filter() -> list[str] | None:
    raw = os.environ.get(ENV_PLUGINS)
    if raw is None or not raw.strip():
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _module_of(plugin: object) -> str | None:
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    module = getattr(plugin, "__module__", None)
    if isinstance(module, str):
        return module
    return getattr(type(plugin), "__module__", None)


def _is_hookable(plugin: object, attr: str) -> Callable[..., Any] | None:
    """The function stored under ``attr`` without running descriptors, or ``None``."""
    try:
        value = inspect.getattr_static(plugin, attr)
    except AttributeError:
        return None
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, types.MethodType):
        value = value.__func__
    return value if inspect.isfunction(value) else None


def _default_name(plugin: object) -> str:
    """A module's ``__name__``; ``module.Qualname`` for a class or function, or an instance's class."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    target = plugin if hasattr(plugin, "__qualname__") else type(plugin)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", type(plugin).__name__)
    return f"{module}.{qualname}" if module else str(qualname)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_kind(kind: str) -> str:
    if kind not in KIND_TO_HOOK:
        valid = ", ".join(sorted(KIND_TO_HOOK))
        raise UnknownKindError(
            f"unknown plugin kind {kind!r}{_suggest(str(kind), KIND_TO_HOOK)}; valid kinds: {valid}"
        )
    return kind


def _validate_contribution(result: object) -> dict[str, Factory]:
    """Check that a hook returned a mapping ``str -> callable``; raise ``TypeError`` otherwise."""
    if result is None:
        raise TypeError("returned None; a hook must return a mapping name -> factory ({} for none)")
    if not isinstance(result, Mapping):
        raise TypeError(f"returned a {type(result).__name__}, expected a mapping name -> factory")
    bad = [
        repr(key)
        for key, value in result.items()
        if not isinstance(key, str) or not key or not callable(value)
    ]
    if bad:
        raise TypeError(
            "returned a mapping whose entries must be non-empty str -> callable factory; "
            f"invalid entries: {', '.join(bad)}"
        )
    return dict(result)


# ---------------------------------------------------------------------------------------------------
# the registry


class _Registry:
    """State behind the module-level functions (one instance, guarded by a re-entrant lock)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._info: dict[str, _PluginInfo] = {}
        self._failures: list[PluginFailure] = []
        self._reported: set[tuple[str, str]] = set()
        self._catalogue: dict[str, dict[str, list[tuple[str, Factory]]]] = {}
        self._revision = 0
        self._notes: list[str] = []

    # -- life cycle ---------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._pm = None
            self._info.clear()
            self._failures.clear()
            self._reported.clear()
            self._catalogue.clear()
            self._notes.clear()
            self._revision += 1

    def ensure(self) -> pluggy.PluginManager:
        with self._lock:
            if self._pm is not None:
                return self._pm
            pm = pluggy.PluginManager(PROJECT)
            pm.add_hookspecs(hookspecs)
            self._pm = pm  # set first: a plugin importing smcflow.plugins at load time sees it
            from . import builtins

            try:
                self._add(builtins, BUILTIN_PLUGIN_NAME, _PluginInfo(
                    BUILTIN_PLUGIN_NAME, "builtin", BUILTIN_PLUGIN_NAME, package_version(),
                    module=builtins.__name__, resolved=True,
                ))
            except _Invalid as exc:  # a bug in the core itself: do not hide it
                self._pm = None
                raise RuntimeError(f"smcflow's built-in plugin is invalid: {exc}") from None
            self._autoload()
            return pm

    def _autoload(self) -> None:
        if _autoload_disabled():
            self._notes.append(f"entry-point plugins were not loaded: {ENV_DISABLE_AUTOLOAD} is set")
            return
        wanted = _plugin_filter()
        if wanted is not None:
            self._notes.append(f"only plugins named in {ENV_PLUGINS}={','.join(wanted)} were loaded")
        wanted_norm = {_normalise(w): w for w in wanted} if wanted is not None else None
        matched: set[str] = {BUILTIN_PLUGIN_NAME}
        # sorted by name for a stable order; sort is stable, so for equal names sys.path order wins
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else None
            dist_version = dist.version if dist is not None else None
            if wanted_norm is not None:
                keys = {_normalise(ep.name)} | ({_normalise(dist_name)} if dist_name else set())
                hits = keys & set(wanted_norm)
                if not hits:
                    continue
                matched |= hits
            self._load_entry_point(ep, dist_name, dist_version)
        for norm, original in (wanted_norm or {}).items():
            if norm not in matched:
                self._fail(original, None, f"{ENV_PLUGINS} names {original!r}, but no installed "
                           f"plugin or distribution in the entry-point group {ENTRY_POINT_GROUP!r} "
                           "has that name")

    def _load_entry_point(self, ep: metadata.EntryPoint, dist: str | None, version: str | None) -> None:
        assert self._pm is not None
        if ep.name in self._info:
            other = self._info[ep.name].distribution
            self._fail(ep.name, dist, f"plugin name {ep.name!r} is already used by distribution "
                       f"{other!r}; entry point {ep.value!r} ignored")
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure of a third-party module
            self._fail(ep.name, dist, f"could not load entry point {ep.value!r}: {_error_text(exc)}",
                       tb=traceback.format_exc())
            return
        info = _PluginInfo(ep.name, "entry_point", dist, version, ep.value, _module_of(plugin), True)
        try:
            self._add(plugin, ep.name, info)
        except _Invalid as exc:
            self._fail(ep.name, dist, str(exc))

    # -- registration -------------------------------------------------------------------------------

    def _add(self, plugin: object, name: str, info: _PluginInfo) -> str:
        """Register and validate ``plugin``; on failure leave no trace and raise :class:`_Invalid`."""
        assert self._pm is not None
        pm = self._pm
        if plugin is None:
            raise _Invalid("the plugin object is None")
        try:
            registered = pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise _Invalid(f"invalid hook implementation: {exc}") from None
        except ValueError as exc:  # name or object already registered
            raise _Invalid(str(exc).splitlines()[0]) from None
        except Exception as exc:
            raise _Invalid(f"registration failed: {_error_text(exc)}") from None
        if registered is None:
            raise _Invalid(f"plugin name {name!r} is blocked")
        problems = self._problems(plugin)
        if problems:
            pm.unregister(plugin=plugin, name=registered)
            raise _Invalid("; ".join(problems))
        self._info[registered] = info
        self._catalogue.clear()
        self._revision += 1
        return registered

    def _problems(self, plugin: object) -> list[str]:
        """What is wrong with a freshly registered plugin (``check_pending``, per plugin, and more)."""
        assert self._pm is not None
        problems: list[str] = []
        specs = sorted(KIND_TO_HOOK.values())
        for caller in self._pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if not caller.has_spec() and not impl.optionalhook:
                    problems.append(f"unknown hook {caller.name!r}{_suggest(caller.name, specs)}; "
                                    f"valid hooks: {', '.join(specs)}")
                elif impl.hookwrapper or impl.wrapper:
                    problems.append(f"hook {caller.name!r} is a wrapper; smcflow hooks must return a "
                                    "mapping name -> factory")
        marker = f"{PROJECT}_impl"
        for attr in sorted(dir(plugin)):
            if not attr.startswith(f"{PROJECT}_"):
                continue
            func = _is_hookable(plugin, attr)
            if func is None or hasattr(func, marker) or hasattr(func, f"{PROJECT}_spec"):
                continue
            holder = inspect.getattr_static(plugin, attr, None)
            if getattr(holder, marker, None) is not None:
                continue
            if attr in KIND_TO_HOOK.values():
                problems.append(f"function {attr!r} is not decorated with @smcflow.hookimpl")
            else:
                problems.append(f"unknown hook {attr!r}{_suggest(attr, specs)} (and not decorated "
                                f"with @smcflow.hookimpl); valid hooks: {', '.join(specs)}")
        return problems

    def register(self, plugin: object, name: str | None) -> str:
        with self._lock:
            self.ensure()
            if name is None:
                name = _default_name(plugin)
            if name in self._info:
                raise PluginRegistrationError(f"a plugin named {name!r} is already registered; "
                                              "pass another name= or unregister it first")
            info = _PluginInfo(name, "register", module=_module_of(plugin))
            try:
                return self._add(plugin, name, info)
            except _Invalid as exc:
                raise PluginRegistrationError(f"cannot register plugin {name!r}: {exc}") from None

    def unregister(self, name_or_plugin: object) -> object:
        with self._lock:
            pm = self.ensure()
            if isinstance(name_or_plugin, str):
                name: str | None = name_or_plugin
                plugin = pm.get_plugin(name_or_plugin)
            else:
                plugin = name_or_plugin
                name = pm.get_name(plugin) if pm.is_registered(plugin) else None
            if plugin is None or name is None or name not in self._info:
                raise UnknownPluginError(f"no plugin {name_or_plugin!r} is registered; registered: "
                                         f"{', '.join(self._info)}")
            pm.unregister(plugin=plugin, name=name)
            del self._info[name]
            self._failures = [f for f in self._failures if not (f.plugin == name and f.hook)]
            self._reported = {key for key in self._reported if key[0] != name}
            self._catalogue.clear()
            self._revision += 1
            return plugin

    # -- failures -----------------------------------------------------------------------------------

    def _fail(self, plugin: str, dist: str | None, error: str, hook: str | None = None,
              tb: str | None = None) -> None:
        record = PluginFailure(plugin, dist, error, hook, tb)
        self._failures.append(record)
        where = f" (distribution {dist!r})" if dist else ""
        if hook is None:
            message = f"smcflow plugin {plugin!r}{where} was skipped: {error}"
        else:
            kind = _HOOK_TO_KIND.get(hook, hook)
            message = (f"smcflow plugin {plugin!r}{where}: hook {hook} failed, its {kind} "
                       f"components are ignored: {error}")
        warnings.warn(message, PluginLoadWarning, stacklevel=4)

    # -- catalogue ----------------------------------------------------------------------------------

    def catalogue(self, kind: str) -> dict[str, list[tuple[str, Factory]]]:
        """``name -> [(plugin name, factory), ...]`` for one kind (cached)."""
        with self._lock:
            pm = self.ensure()
            cached = self._catalogue.get(kind)
            if cached is not None:
                return cached
            hook_name = KIND_TO_HOOK[kind]
            entries: dict[str, list[tuple[str, Factory]]] = {}
            # pluggy keeps implementations in reverse call order; registration order reads better
            for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
                if impl.plugin_name not in self._info:
                    continue
                try:
                    contribution = _validate_contribution(impl.function())
                except Exception as exc:
                    key = (impl.plugin_name, hook_name)
                    if key not in self._reported:
                        self._reported.add(key)
                        self._fail(impl.plugin_name, self._info[impl.plugin_name].distribution,
                                   _error_text(exc), hook=hook_name, tb=traceback.format_exc())
                    continue
                for name, factory in contribution.items():
                    entries.setdefault(name, []).append((impl.plugin_name, factory))
            self._catalogue[kind] = entries
            return entries

    def dist_of(self, name: str) -> tuple[str | None, str | None]:
        """Distribution and version of a plugin; looked up lazily for programmatic registrations."""
        info = self._info[name]
        if not info.resolved:
            info.resolved = True
            top = (info.module or "").split(".")[0]
            if top:
                try:
                    dists = metadata.packages_distributions().get(top) or []
                except Exception:  # broken metadata somewhere on sys.path
                    dists = []
                if dists:
                    info.distribution = dists[0]
                    try:
                        info.version = metadata.version(dists[0])
                    except metadata.PackageNotFoundError:
                        info.version = None
        return info.distribution, info.version

    # -- queries ------------------------------------------------------------------------------------

    def get(self, kind: str, name: str, config: dict[str, Any]) -> Any:
        _check_kind(kind)
        with self._lock:
            entries = self.catalogue(kind)
            providers = entries.get(name)
            if not providers and ":" in name:  # "plugin:component" picks one provider of a conflict
                plugin, _, component = name.partition(":")
                providers = [p for p in entries.get(component, []) if p[0] == plugin] or None
            if not providers:
                raise UnknownComponentError(self._unknown_message(kind, name, entries))
            if len(providers) > 1:
                who = ", ".join(self._who(plugin) for plugin in sorted(p for p, _ in providers))
                raise PluginConflictError(
                    f"{kind} {name!r} is provided by several plugins: {who}. Uninstall or unregister "
                    f"one, or choose with get({kind!r}, '<plugin>:{name}')"
                )
            plugin, factory = providers[0]
        try:
            return factory(**config)
        except Exception as exc:
            exc.add_note(f"while building {kind} {name!r} from smcflow plugin {plugin!r}")
            raise

    def _who(self, plugin: str) -> str:
        dist, version = self.dist_of(plugin)
        return f"{plugin!r} (distribution {dist!r})" if dist else repr(plugin)

    def _unknown_message(self, kind: str, name: str, entries: Mapping[str, Any]) -> str:
        names = sorted(entries)
        message = (f"no {kind} named {name!r}{_suggest(name, names)}; available {kind} names: "
                   f"{', '.join(names) if names else '(none)'}")
        failed = [f for f in self._failures if f.hook in (None, KIND_TO_HOOK[kind])]
        if failed:
            message += ". Plugins that failed to load: " + "; ".join(f.describe() for f in failed)
        if self._notes:
            message += ". Note: " + "; ".join(self._notes)
        return message

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            self.ensure()
            by_kind = {kind: self.catalogue(kind) for kind in KIND_TO_HOOK}
            rows = []
            for name, info in self._info.items():
                dist, version = self.dist_of(name)
                components = {
                    kind: sorted(c for c, providers in entries.items()
                                 if any(p == name for p, _ in providers))
                    for kind, entries in by_kind.items()
                }
                rows.append({
                    "name": name,
                    "distribution": dist,
                    "version": version,
                    "source": info.source,
                    "entry_point": info.entry_point,
                    "module": info.module,
                    "components": components,
                    "errors": [f.error for f in self._failures if f.plugin == name and f.hook],
                })
            return rows

    def conflicts(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for kind in KIND_TO_HOOK:
                for name, providers in sorted(self.catalogue(kind).items()):
                    if len(providers) > 1:
                        out.append({"kind": kind, "name": name,
                                     "plugins": sorted(p for p, _ in providers)})
            return out

    def failures(self) -> list[PluginFailure]:
        with self._lock:
            self.ensure()
            return list(self._failures)

    def revision(self) -> int:
        with self._lock:
            return self._revision


_REGISTRY = _Registry()


# ---------------------------------------------------------------------------------------------------
# public functions


def available(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Names of the components on offer.

    ``available()`` returns ``{kind: sorted names}`` for every kind; ``available(kind)`` the sorted
    names of one kind. A name offered by several plugins is listed once (see :func:`get`).
    Raises :class:`UnknownKindError` (a ``ValueError``) for an unknown kind.
    """
    if kind is None:
        return {k: sorted(_REGISTRY.catalogue(k)) for k in KIND_TO_HOOK}
    return sorted(_REGISTRY.catalogue(_check_kind(kind)))


def get(kind: str, name: str, /, **config: Any) -> Any:
    """Build the component ``name`` of ``kind``: call its factory with ``config`` and return the result.

    ``name`` may be written ``"plugin:component"`` to pick one provider when several plugins offer
    the same name. Raises :class:`UnknownKindError`, :class:`UnknownComponentError` (a ``KeyError``
    whose message lists the available names and any plugin that failed to load) or
    :class:`PluginConflictError`. Exceptions raised by the factory propagate with a note naming the
    plugin.
    """
    return _REGISTRY.get(kind, name, config)


def register(plugin: object, name: str | None = None) -> str:
    """Register a module or object carrying ``@smcflow.hookimpl`` functions; return its name.

    The default name is pluggy's canonical name (a module's ``__name__``). The plugin is validated
    at once; an invalid plugin is not kept and :class:`PluginRegistrationError` (a ``ValueError``)
    is raised. Components it provides are visible to the next :func:`get`.
    """
    return _REGISTRY.register(plugin, name)


def unregister(name_or_plugin: object) -> object:
    """Remove a plugin given by name or by object; return the plugin object.

    Raises :class:`UnknownPluginError` (a ``KeyError``) when it is not registered.
    """
    return _REGISTRY.unregister(name_or_plugin)


def load_errors() -> list[PluginFailure]:
    """Problems met so far: plugins skipped at load time and hooks whose contribution was ignored.

    Hooks are called lazily, so call :func:`available` (or :func:`describe`) first to be sure every
    hook has run.
    """
    return _REGISTRY.failures()


def describe() -> list[dict[str, Any]]:
    """One dict per registered plugin, in registration order.

    Keys: ``name``, ``distribution``, ``version``, ``source`` (``"builtin"``, ``"entry_point"`` or
    ``"register"``), ``entry_point``, ``module``, ``components`` (``{kind: sorted names}`` for every
    kind) and ``errors`` (hook failures of that plugin). The built-ins are plugin ``"smcflow"`` of
    distribution ``"smcflow"``.
    """
    return _REGISTRY.describe()


def conflicts() -> list[dict[str, Any]]:
    """Names offered by more than one plugin: ``{"kind", "name", "plugins"}`` dicts."""
    return _REGISTRY.conflicts()


def reset() -> None:
    """Forget every plugin, failure and cached catalogue; everything reloads lazily on next use.

    The environment variables are read again at that point.
    """
    _REGISTRY.reset()


def reload() -> None:
    """:func:`reset`, then load the built-ins and entry points at once."""
    _REGISTRY.reset()
    _REGISTRY.ensure()


def revision() -> int:
    """A counter that changes whenever the set of plugins changes (for keying caches of builds)."""
    return _REGISTRY.revision()


def plugin_manager() -> pluggy.PluginManager:
    """The underlying :class:`pluggy.PluginManager` (loaded). Register through :func:`register`."""
    return _REGISTRY.ensure()
