"""Command line interface: ``smcflow plugins [--json] [--strict]``,
``smcflow demo [--out DIR] [--filter]``, ``smcflow diagnose FILE.nc [--out DIR]``,
``smcflow new-plugin NAME [--dir DIR]``, ``smcflow run MODEL ...``, ``smcflow scale SAMPLER REWARD ...``,
``smcflow --version``.

Exit status of ``smcflow diagnose``: 0 when the diagnosis has no warning, 1 when it has one (the report
is still written), 2 when the file cannot be read as an smcflow export. ``smcflow new-plugin``: 0 when
the package was written, 2 for a bad name or an existing directory. ``smcflow run`` / ``smcflow scale``:
0 when the run finished (its diagnosis is printed and saved whatever it says), 2 for an unknown
component or a bad option, 3 for a numerical failure.

Exit status of ``smcflow plugins``: 0 when every plugin loaded; 1 when a plugin was skipped or one of
its hooks failed (the listing is still printed, the failures go to stderr), and with ``--strict``
also when two plugins offer the same name (a built-in shadowed by a plugin included). Whatever the
command, a reader that stops early (``smcflow plugins | head -1``) ends it quietly with status 141
(128 + SIGPIPE, as a killed Unix tool would), without a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict
from typing import Any, Sequence

__all__ = ["main", "build_parser", "plugins_report", "format_plugins_table", "format_load_errors"]

DEFAULT_DEMO_OUT = "out/demo"
EXIT_BROKEN_PIPE = 141

_PLUGINS_EPILOG = """\
exit status: 0 if every plugin loaded; 1 if a plugin was skipped or a hook failed (details on
stderr), or, with --strict, if two plugins offer the same name; 141 if stdout was closed early."""


def plugins_report() -> dict[str, Any]:
    """Everything ``smcflow plugins`` shows: ``{"plugins", "load_errors", "conflicts"}``.

    Load warnings are silenced here because the failures are part of the report.
    """
    from . import plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", plugins.PluginLoadWarning)
        rows = plugins.describe()
        conflicts = plugins.conflicts()
        errors = [asdict(failure) for failure in plugins.load_errors()]
    for error in errors:
        error.pop("traceback", None)
    return {"plugins": rows, "load_errors": errors, "conflicts": conflicts}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def _conflict_line(conflict: dict[str, Any]) -> str:
    kind, name, others = conflict["kind"], conflict["name"], conflict["plugins"]
    if conflict["builtin_wins"]:
        others = [p for p in others if p != "smcflow"]
        return (f"  {kind} {name!r}: the built-in wins over {', '.join(others)}; "
                f"use {' or '.join(repr(f'{p}:{name}') for p in others)}")
    return f"  {kind} {name!r}: {', '.join(others)}; get() refuses the bare name, use '<plugin>:{name}'"


def format_plugins_table(report: dict[str, Any]) -> str:
    """Render :func:`plugins_report` as a plain-text table, with name conflicts below it."""
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
        lines += ["", "Name conflicts:", *map(_conflict_line, report["conflicts"])]
    return "\n".join(lines)


def format_load_errors(report: dict[str, Any]) -> str:
    """The ``load_errors`` of :func:`plugins_report`, one line each (empty when there are none)."""
    lines = []
    for err in report["load_errors"]:
        dist = f" [{err['distribution']}]" if err["distribution"] else ""
        what = f"hook {err['hook']} failed" if err["hook"] else "skipped"
        lines.append(f"  {err['plugin']}{dist}: {what}: {err['error']}")
    return "\n".join(["Load errors:", *lines]) if lines else ""


def _cmd_plugins(args: argparse.Namespace) -> int:
    report = plugins_report()
    print(json.dumps(report, indent=2) if args.json else format_plugins_table(report))
    if report["load_errors"]:
        sys.stdout.flush()  # keep the listing before the errors on a terminal
        print(format_load_errors(report), file=sys.stderr)
        return 1
    return 1 if args.strict and report["conflicts"] else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.filter:  # imported lazily: each demo pulls in the whole stack
        from . import filter_demo

        result = filter_demo.main(args.out)
    else:
        from . import demo

        result = demo.main(args.out, progress=not args.no_progress)
    return result if isinstance(result, int) else 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    import arviz as az

    from .diagnostics import diagnose

    try:
        idata = az.from_netcdf(args.file)
        diagnosis = diagnose(idata)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"smcflow diagnose: cannot read {args.file!r} as an smcflow export: {exc}", file=sys.stderr)
        return 2
    print(diagnosis.summary())
    if args.out is not None:
        print(f"report: {diagnosis.report(args.out)}")
    return 0 if diagnosis.ok else 1


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import new_plugin

    try:
        root = new_plugin(args.name, args.dir)
    except (ValueError, FileExistsError) as exc:
        print(f"smcflow new-plugin: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {root}\nnext: pip install -e {root} && smcflow plugins && pytest {root / 'tests'}")
    return 0


_JOB_EPILOG = ("exit status: 0 if the run finished (diagnosis printed and saved); 2 for an unknown component "
               "or a bad option; 3 for a numerical failure.")


def _job(work, args: argparse.Namespace) -> int:
    """Run ``work()`` (a :mod:`smcflow.jobs` call), print its summary, map failures to exit codes."""
    from .errors import SMCNumericalError
    from .plugins import RegistryError

    try:
        summary = work()
    except SMCNumericalError as exc:
        print(f"smcflow {args.command}: numerical failure: {exc}", file=sys.stderr)
        return 3
    except (RegistryError, ValueError, TypeError) as exc:
        print(f"smcflow {args.command}: {exc}", file=sys.stderr)
        return 2
    for key, value in summary.items():
        if key != "findings":
            print(f"  {key}: {value}")
    for finding in summary["findings"]:
        print(f"  - {finding}")
    print(f"outputs: {args.out}/summary.json, {args.out}/result.nc (smcflow diagnose {args.out}/result.nc)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .jobs import parse_settings, run_registered_model

    return _job(lambda: run_registered_model(
        args.model, args.out, n_particles=args.particles, n_runs=args.runs, resampler=args.scheme,
        n_steps=args.steps, seed=args.seed, settings=parse_settings(args.set), progress=not args.no_progress), args)


def _cmd_scale(args: argparse.Namespace) -> int:
    from .jobs import parse_settings, scale_registered

    return _job(lambda: scale_registered(
        args.sampler, args.reward, args.out, method=args.method, beta=args.beta, n_particles=args.particles,
        n_runs=args.runs, seed=args.seed, sampler_settings=parse_settings(args.sampler_set),
        reward_settings=parse_settings(args.reward_set), method_settings=parse_settings(args.set),
        progress=not args.no_progress), args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``smcflow`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="smcflow", description="Sequential Monte Carlo over paths in JAX, with pluggy plugins."
    )
    parser.add_argument("--version", action="version", version=f"smcflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_plugins = sub.add_parser(
        "plugins", help="list plugins, their distributions and components", epilog=_PLUGINS_EPILOG,
        description="List every plugin (the built-ins are plugin 'smcflow') with its distribution,\n"
        "version and components, then any name conflicts; load errors go to stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p_plugins.add_argument("--json", action="store_true", help="print the listing as JSON")
    p_plugins.add_argument("--strict", action="store_true",
                           help="also exit 1 when two plugins offer the same name")
    p_plugins.set_defaults(func=_cmd_plugins)

    p_demo = sub.add_parser("demo", help="run the inference-time scaling demonstration and write its outputs")
    p_demo.add_argument("--filter", action="store_true",
                        help="run the particle-filter demonstration (linear-Gaussian model vs Kalman) instead")
    p_demo.add_argument("--out", default=DEFAULT_DEMO_OUT, metavar="DIR",
                        help=f"output directory (default: {DEFAULT_DEMO_OUT})")
    p_demo.add_argument("--no-progress", action="store_true", help="no progress bars (scaling demo)")
    p_demo.set_defaults(func=_cmd_demo)

    p_diag = sub.add_parser(
        "diagnose", help="diagnose a saved run (netCDF written by .to_inference_data().to_netcdf())",
        epilog="exit status: 0 if no warning; 1 if the diagnosis has warnings; 2 if the file is unreadable.")
    p_diag.add_argument("file", metavar="FILE.nc", help="an smcflow export in netCDF")
    p_diag.add_argument("--out", default=None, metavar="DIR", help="also write PNG plots and index.html there")
    p_diag.set_defaults(func=_cmd_diagnose)

    p_run = sub.add_parser("run", help="run SMC on a registered model and save the result", epilog=_JOB_EPILOG)
    p_run.add_argument("model", help="a model component (see smcflow plugins)")
    p_run.add_argument("--particles", type=int, default=1000, help="particles per run (default 1000)")
    p_run.add_argument("--runs", type=int, default=4, help="independent runs (default 4)")
    p_run.add_argument("--scheme", default="systematic", help="resampling scheme (default systematic)")
    p_run.add_argument("--steps", type=int, default=100,
                       help="observations to simulate for a model with a simulator (default 100)")
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--set", action="append", metavar="NAME=VALUE", help="option of the model's factory")
    p_run.add_argument("--out", default="out/run", metavar="DIR", help="output directory (default out/run)")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_run.set_defaults(func=_cmd_run)

    p_scale = sub.add_parser("scale", help="inference-time scaling of a registered sampler by a registered reward",
                             epilog=_JOB_EPILOG)
    p_scale.add_argument("sampler", help="a sampler component")
    p_scale.add_argument("reward", help="a reward component")
    p_scale.add_argument("--method", default="urge", help="scaling method (default urge)")
    p_scale.add_argument("--beta", type=float, default=1.0, help="inverse temperature (default 1)")
    p_scale.add_argument("--particles", type=int, default=64, help="particles per run (default 64)")
    p_scale.add_argument("--runs", type=int, default=4, help="independent runs (default 4)")
    p_scale.add_argument("--seed", type=int, default=0)
    p_scale.add_argument("--set", action="append", metavar="NAME=VALUE", help="option of the method")
    p_scale.add_argument("--sampler-set", action="append", metavar="NAME=VALUE", help="option of the sampler")
    p_scale.add_argument("--reward-set", action="append", metavar="NAME=VALUE", help="option of the reward")
    p_scale.add_argument("--out", default="out/scale", metavar="DIR", help="output directory (default out/scale)")
    p_scale.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_scale.set_defaults(func=_cmd_scale)

    p_new = sub.add_parser("new-plugin", help="write a ready-to-install plugin package with one component per kind",
                           epilog="exit status: 0 if written; 2 for a bad name or an existing directory.")
    p_new.add_argument("name", metavar="NAME", help="plugin name (lower-case letters, digits, underscores)")
    p_new.add_argument("--dir", default=".", metavar="DIR", help="where to write smcflow-NAME/ (default: here)")
    p_new.set_defaults(func=_cmd_new_plugin)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smcflow`` console script; returns the exit status."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at interpreter exit
    except BrokenPipeError:
        try:  # point stdout at /dev/null so the interpreter's last flush does not fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (AttributeError, OSError, ValueError):  # not a real file (e.g. in tests)
            pass
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
