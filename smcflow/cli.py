"""Command line interface: ``smcflow plugins [--json]``, ``smcflow demo [--out DIR] [--filter]``, ``smcflow --version``."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any, Sequence

__all__ = ["main", "build_parser", "plugins_report", "format_plugins_table"]

DEFAULT_DEMO_OUT = "out/demo"


def plugins_report() -> dict[str, Any]:
    """Everything ``smcflow plugins`` shows: plugins, load errors and name conflicts.

    Load warnings are silenced here because the failures are part of the report.
    """
    from . import plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", plugins.PluginLoadWarning)
        rows = plugins.describe()
        conflicts = plugins.conflicts()
        errors = [failure.as_dict() for failure in plugins.load_errors()]
    for error in errors:
        error.pop("traceback", None)
    return {"plugins": rows, "load_errors": errors, "conflicts": conflicts}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, [""] * len(header), *rows]:
        if not any(row):
            lines.append("  ".join("-" * w for w in widths))
            continue
        lines.append("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return lines


def format_plugins_table(report: dict[str, Any]) -> str:
    """Render :func:`plugins_report` as a plain-text table."""
    rows: list[list[str]] = []
    for plugin in report["plugins"]:
        kinds = [(k, names) for k, names in plugin["components"].items() if names]
        first = [plugin["name"], plugin["distribution"] or "-", plugin["version"] or "-"]
        if not kinds:
            rows.append([*first, "(no components)"])
        for i, (kind, names) in enumerate(kinds):
            rows.append([*(first if i == 0 else ["", "", ""]), f"{kind}: {', '.join(names)}"])
    lines = _table(["PLUGIN", "DISTRIBUTION", "VERSION", "COMPONENTS"], rows)
    if report["conflicts"]:
        lines += ["", "Conflicts (get() refuses these names; pick one with '<plugin>:<name>'):"]
        lines += [f"  {c['kind']} {c['name']!r}: {', '.join(c['plugins'])}" for c in report["conflicts"]]
    if report["load_errors"]:
        lines += ["", "Load errors:"]
        for err in report["load_errors"]:
            dist = f" [{err['distribution']}]" if err["distribution"] else ""
            hook = f" in {err['hook']}" if err["hook"] else ""
            lines.append(f"  {err['plugin']}{dist}{hook}: {err['error']}")
    return "\n".join(lines)


def _cmd_plugins(args: argparse.Namespace) -> int:
    report = plugins_report()
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=False))
    else:
        print(format_plugins_table(report))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.filter:
        from . import filter_demo as demo  # imported lazily: it pulls in the whole stack
    else:
        from . import demo
    result = demo.main(args.out)
    return result if isinstance(result, int) else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``smcflow`` command."""
    from .plugins.registry import package_version

    parser = argparse.ArgumentParser(
        prog="smcflow", description="Sequential Monte Carlo over paths in JAX, with pluggy plugins."
    )
    parser.add_argument("--version", action="version", version=f"smcflow {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_plugins = sub.add_parser("plugins", help="list plugins, their distributions and components")
    p_plugins.add_argument("--json", action="store_true", help="print the listing as JSON")
    p_plugins.set_defaults(func=_cmd_plugins)

    p_demo = sub.add_parser("demo", help="run the inference-time scaling demonstration and write its outputs")
    p_demo.add_argument("--filter", action="store_true",
                        help="run the particle-filter demonstration (linear-Gaussian model vs Kalman) instead")
    p_demo.add_argument("--out", default=DEFAULT_DEMO_OUT, metavar="DIR",
                        help=f"output directory (default: {DEFAULT_DEMO_OUT})")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smcflow`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
