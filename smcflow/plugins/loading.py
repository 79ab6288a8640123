"""How plugins get into the plugin manager: validation and entry-point discovery, through pluggy."""
from __future__ import annotations

import difflib
import importlib.metadata as metadata
import inspect
import os
import re
import traceback
from typing import Callable, Iterable

import pluggy

from .errors import PluginRegistrationError
from .hookspecs import KIND_TO_HOOK, PROJECT

#: entry-point group scanned for plugins
ENTRY_POINT_GROUP = "smcflow"
#: set it (to anything but "", 0, false, no, off) and no entry point is loaded
ENV_DISABLE_AUTOLOAD = "SMCFLOW_DISABLE_PLUGIN_AUTOLOAD"
#: comma-separated entry-point or distribution names: when set, only those entry points are loaded
ENV_PLUGINS = "SMCFLOW_PLUGINS"

HOOKS = sorted(KIND_TO_HOOK.values())


def suggest(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {text}" if (text := str(exc).strip()) else type(exc).__name__


def validate(pm: pluggy.PluginManager, name: str) -> None:
    """Check the plugin just registered as ``name``; if it is invalid, unregister it and raise
    :class:`PluginRegistrationError`.

    pluggy's ``check_pending`` finds hook implementations without a hook specification (a misspelled
    hook); pluggy ignores undecorated functions, so a ``smcflow_*`` function without
    ``@smcflow.hookimpl`` is looked for here.
    """
    plugin = pm.get_plugin(name)
    try:
        pm.check_pending()
        problems = []
    except pluggy.PluginValidationError:
        problems = [f"unknown hook {c.name!r}{suggest(c.name, HOOKS)}; valid hooks: {', '.join(HOOKS)}"
                    for c in pm.get_hookcallers(plugin) or [] if not c.has_spec()]
    for attr in dir(plugin):
        value = inspect.getattr_static(plugin, attr, None)
        if (attr.startswith(f"{PROJECT}_") and inspect.isfunction(getattr(value, "__func__", value))
                and pm.parse_hookimpl_opts(plugin, attr) is None):
            hint = "" if attr in HOOKS else f", and is no hook{suggest(attr, HOOKS)}"
            problems.append(f"function {attr!r} is not decorated with @smcflow.hookimpl{hint}")
    if problems:
        pm.unregister(plugin=plugin, name=name)
        raise PluginRegistrationError("; ".join(problems))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).strip().lower()  # PEP 503


def load_entry_points(pm: pluggy.PluginManager,
                      fail: Callable[..., None]) -> tuple[dict[str, str], list[str]]:
    """Load the entry points of :data:`ENTRY_POINT_GROUP` that the environment asks for.

    Each entry point is loaded on its own by ``pm.load_setuptools_entrypoints(group, name=...)`` and
    validated; one that fails is reported by ``fail(plugin, distribution, error, tb=...)`` and
    skipped. Returns ``({plugin name: entry-point value}, notes)``, the notes saying why some entry
    points were not loaded.
    """
    if os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() not in {"", "0", "false", "no", "off"}:
        return {}, [f"entry-point plugins were not loaded: {ENV_DISABLE_AUTOLOAD} is set"]
    wanted = {_normalise(w): w.strip() for w in os.environ.get(ENV_PLUGINS, "").split(",") if w.strip()}
    notes = [f"only plugins named in {ENV_PLUGINS}={','.join(wanted.values())} were loaded"] if wanted else []
    matched: set[str] = set()
    by_name: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        keys = {_normalise(ep.name), _normalise(ep.dist.name if ep.dist else "")} & wanted.keys()
        if keys or not wanted:
            matched |= keys
            by_name.setdefault(ep.name, []).append(ep)
    loaded = {}
    for name in sorted(by_name):  # one at a time: a broken plugin loses only itself
        ep, *others = by_name[name]
        dist = ep.dist.name if ep.dist else None
        try:
            if pm.has_plugin(name):
                raise PluginRegistrationError(f"the plugin name {name!r} is taken")
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            validate(pm, name)
        except PluginRegistrationError as exc:
            fail(name, dist, f"entry point {ep.value!r}: {exc}")
            continue
        except Exception as exc:  # any import-time or registration failure of a third-party module
            fail(name, dist, f"could not load entry point {ep.value!r}: {error_text(exc)}",
                 tb=traceback.format_exc())
            continue
        loaded[name] = ep.value
        for other in others:
            fail(name, other.dist.name if other.dist else None, f"entry point {other.value!r} ignored: "
                 f"the plugin name {name!r} is already taken by {ep.value!r}")
    for key, original in wanted.items():
        if key not in matched:
            fail(original, None, f"{ENV_PLUGINS} names {original!r}, but no plugin or distribution "
                 f"in the entry-point group {ENTRY_POINT_GROUP!r} has that name")
    return loaded, notes
