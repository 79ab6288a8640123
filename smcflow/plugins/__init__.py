"""smcflow's plugin system: pluggy hooks, entry-point discovery and the component registry.

:func:`get` builds a component (built-ins first, without loading any plugin), :func:`available`
lists names, :func:`register` adds a plugin from Python, :func:`describe`, :func:`conflicts` and
:func:`load_errors` report what was loaded (the CLI ``smcflow plugins`` prints the same). Plugins are
modules or objects with functions decorated by :data:`hookimpl`; see ``docs/plugins.md``.
"""
from __future__ import annotations

from .errors import (
    PluginConflictError,
    PluginFailure,
    PluginLoadWarning,
    PluginRegistrationError,
    RegistryError,
    UnknownComponentError,
    UnknownKindError,
    UnknownPluginError,
)
from .hookspecs import KIND_TO_HOOK, hookimpl, hookspec
from .loading import ENTRY_POINT_GROUP, ENV_DISABLE_AUTOLOAD, ENV_PLUGINS
from .registry import (
    BUILTIN_PLUGIN_NAME,
    available,
    conflicts,
    describe,
    get,
    load_errors,
    plugin_manager,
    register,
    reset,
    unregister,
)

__all__ = [
    "hookimpl", "hookspec", "KIND_TO_HOOK",
    "available", "get", "register", "unregister", "load_errors", "describe", "conflicts", "reset",
    "plugin_manager",
    "PluginLoadWarning", "PluginFailure", "RegistryError", "UnknownKindError", "UnknownComponentError",
    "UnknownPluginError", "PluginConflictError", "PluginRegistrationError",
    "BUILTIN_PLUGIN_NAME", "ENTRY_POINT_GROUP", "ENV_DISABLE_AUTOLOAD", "ENV_PLUGINS",
]
