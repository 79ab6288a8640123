"""smcflow's plugin system: pluggy hooks, entry-point discovery and the component registry.

Use :func:`available` to list components, :func:`get` to build one, :func:`register` to add a plugin
from Python, :func:`describe` / :func:`load_errors` to inspect what was loaded (the CLI
``smcflow plugins`` prints the same). Plugins are modules or objects with functions decorated by
:data:`hookimpl`; see ``docs/plugins.md``.
"""
from __future__ import annotations

from .hookspecs import KIND_TO_HOOK, hookimpl, hookspec
from .registry import (
    BUILTIN_PLUGIN_NAME,
    ENTRY_POINT_GROUP,
    ENV_DISABLE_AUTOLOAD,
    ENV_PLUGINS,
    PluginConflictError,
    PluginFailure,
    PluginLoadWarning,
    PluginRegistrationError,
    RegistryError,
    UnknownComponentError,
    UnknownKindError,
    UnknownPluginError,
    available,
    conflicts,
    describe,
    get,
    load_errors,
    package_version,
    plugin_manager,
    register,
    reload,
    reset,
    revision,
    unregister,
)

__all__ = [
    "hookimpl",
    "hookspec",
    "KIND_TO_HOOK",
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
    "PluginLoadWarning",
    "RegistryError",
    "UnknownKindError",
    "UnknownComponentError",
    "UnknownPluginError",
    "PluginConflictError",
    "PluginRegistrationError",
    "PluginFailure",
    "BUILTIN_PLUGIN_NAME",
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
]
