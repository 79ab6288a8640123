"""The registry's errors, its warning and its record of a plugin that failed to load."""
from __future__ import annotations

from dataclasses import dataclass, field


class PluginLoadWarning(UserWarning):
    """A plugin was skipped, one of its hooks failed, or it offers a built-in's name."""


class RegistryError(Exception):
    """Base class of the registry's errors."""


class UnknownKindError(RegistryError, ValueError):
    """The plugin kind is not one of :data:`smcflow.plugins.KIND_TO_HOOK`."""


class UnknownComponentError(RegistryError, KeyError):
    """No plugin provides a component of that kind under that name."""

    __str__ = Exception.__str__  # KeyError would quote the message


class UnknownPluginError(RegistryError, KeyError):
    """No plugin is registered under that name (or that object is not registered)."""

    __str__ = Exception.__str__


class PluginConflictError(RegistryError, LookupError):
    """Several plugins offer the same (non-built-in) name; pick one as ``"plugin:name"``."""


class PluginRegistrationError(RegistryError, ValueError):
    """A plugin was refused: invalid hooks, name already taken, import failure, ..."""


@dataclass(frozen=True)
class PluginFailure:
    """A problem met while loading plugins (see :func:`smcflow.plugins.load_errors`).

    ``hook`` is ``None`` when the whole plugin was skipped; otherwise the plugin stays registered and
    only its contribution to that hook is ignored.
    """

    plugin: str
    distribution: str | None
    error: str
    hook: str | None = None
    traceback: str | None = field(default=None, repr=False, compare=False)
