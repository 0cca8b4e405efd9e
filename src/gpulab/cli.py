"""The ``gpulab`` command: argument parsing, live progress, summary and exit codes.

Everything that happens on the hosts lives in the roles; this module turns a run into a readable
experience and a record. It never runs ansible-playbook as a subprocess: runs go through
:mod:`gpulab.runner` (ansible-runner's Python API).

Other modules add subcommands with ``register(subparsers)``: :func:`build_parser` calls
``gpulab.lab.cli.register`` when that module exists. A registered subcommand sets
``func=<callable(argparse.Namespace) -> int>`` with ``set_defaults``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import yaml

from gpulab import __version__
from gpulab.errors import MEANINGS, ExitCode, GpulabError, ParseError, UsageError
from gpulab.events import apply_stats
from gpulab.html_report import load_history, write_html
from gpulab.progress import expected_tasks, make_view
from gpulab.report import build_report, load_report, render_summary, write_report
from gpulab.runner import (
    DEFAULT_KEEP_RUNS,
    REPORT_NAME,
    Run,
    RunRequest,
    check_inventories,
    inventory_hosts,
    point_last,
    project_dir,
    prune_runs,
    resolve_run,
    state_dir,
)

PLUGIN_MODULES = ("gpulab.lab.cli",)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EXIT_CODES_HELP = "\n".join(
    [
        "exit codes (precedence: 99, 3, 2, then 1/4/5):",
        *(f"  {int(code):<4} {text}" for code, text in MEANINGS.items()),
        "docs: docs/cli.md, report schema: docs/report-schema.md",
    ]
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("gpulab").strip()
        raise UsageError(f"{where}: {message} (see --help)" if where else f"{message} (see gpulab --help)")


# -e handling ----------------------------------------------------------------------------------------


def _load_vars_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"-e @{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParseError(f"-e @{path}: not valid YAML/JSON: {first}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParseError(f"-e @{path}: must hold a mapping of variables, not {type(data).__name__}")
    return data


def parse_extravars(values: Sequence[str], cwd: Path | None = None) -> dict[str, Any]:
    """Merge ``-e`` values in order (later wins): ``KEY=VALUE`` (a string), ``@file`` or inline YAML/JSON."""
    merged: dict[str, Any] = {}
    for raw in values:
        value = raw.strip()
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            if cwd is not None and not path.is_absolute():
                path = cwd / path
            merged.update(_load_vars_file(path))
        elif value.startswith("{"):
            try:
                data = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ParseError(f"-e {raw!r}: not valid YAML/JSON") from exc
            if not isinstance(data, dict):
                raise UsageError(f"-e {raw!r}: expected a mapping")
            merged.update(data)
        elif "=" in value:
            key, _, val = value.partition("=")
            if not _KEY.match(key):
                raise UsageError(f"-e {raw!r}: {key!r} is not a valid variable name")
            merged[key] = val
        else:
            raise UsageError(f"-e {raw!r}: expected KEY=VALUE, @FILE or a YAML/JSON mapping")
    for key in merged:
        if not isinstance(key, str) or not _KEY.match(key):
            raise UsageError(f"-e: {key!r} is not a valid variable name")
    return merged


# Parser ---------------------------------------------------------------------------------------------


def _run_options(parser: argparse.ArgumentParser, *, with_check: bool = True) -> None:
    parser.add_argument(
        "-i",
        "--inventory",
        action="append",
        metavar="INVENTORY",
        help="inventory file or directory (repeatable; default: <project>/inventory/local/hosts.yml)",
    )
    parser.add_argument("-l", "--limit", metavar="PATTERN", help="limit to hosts matching PATTERN")
    parser.add_argument(
        "-t", "--tags", action="append", default=[], help="only run tasks tagged TAGS (repeatable)"
    )
    parser.add_argument(
        "--skip-tags", action="append", default=[], help="skip tasks tagged TAGS (repeatable)"
    )
    parser.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="KEY=VALUE|@FILE",
        help="extra variables (repeatable, later wins): KEY=VALUE, @file.yml or a YAML/JSON mapping",
    )
    if with_check:
        parser.add_argument("-C", "--check", action="store_true", help="ansible check mode: change nothing")
    parser.add_argument("-D", "--diff", action="store_true", help="show file differences (in the artifacts)")
    parser.add_argument(
        "-f", "--forks", type=int, metavar="N", help="hosts in parallel (default: ansible.cfg)"
    )
    parser.add_argument("--report", metavar="FILE", type=Path, help="also write the JSON report to FILE")
    parser.add_argument(
        "--keep-runs",
        type=int,
        default=DEFAULT_KEEP_RUNS,
        metavar="N",
        help=f"keep the artifacts of the newest N runs (default {DEFAULT_KEEP_RUNS}; 0 keeps all)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more output (repeat for ansible -vvv)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpulab",
        description="Provision GPU lab nodes to a verified deep-learning environment.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gpulab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    prov = sub.add_parser(
        "provision",
        help="run playbooks/site.yml (all roles, MLP check last)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(prov)
    prov.set_defaults(func=cmd_provision)

    check = sub.add_parser(
        "check",
        help="run playbooks/verify.yml: read-only CUDA + MLP check",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(check)
    check.set_defaults(func=cmd_check)

    render = sub.add_parser(
        "render",
        help="write DIR/<host>/environment.yml on this machine (hosts unchanged)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(render, with_check=False)
    render.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("rendered"),
        metavar="DIR",
        help="destination directory on this machine (default ./rendered)",
    )
    render.set_defaults(func=cmd_render)

    rep = sub.add_parser("report", help="re-print the summary of a past run (default: the last)")
    rep.add_argument(
        "run", nargs="?", metavar="RUN", help="run ident (or unique prefix), run dir or report file"
    )
    rep.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    rep.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write one self-contained HTML page of the run to FILE (table, MLP curves, driver history)",
    )
    rep.set_defaults(func=cmd_report)

    for name in PLUGIN_MODULES:
        register_plugin(name, sub)
    return parser


def register_plugin(module_name: str, subparsers: Any) -> bool:
    """Let ``module_name.register(subparsers)`` add subcommands; False when the module is absent."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return False
        raise
    register: Callable[[Any], None] | None = getattr(module, "register", None)
    if register is None:
        return False
    register(subparsers)
    return True


# Commands --------------------------------------------------------------------------------------------


def _inventories(args: argparse.Namespace, project: Path) -> tuple[Path, ...]:
    given = args.inventory or []
    paths = [Path(p).expanduser().resolve() for p in given] or [project / "inventory" / "local" / "hosts.yml"]
    check_inventories(paths)
    return tuple(paths)


def _request(args: argparse.Namespace, project: Path, playbook: str, extra: dict[str, Any]) -> RunRequest:
    book = project / "playbooks" / playbook
    if not book.is_file():
        raise UsageError(f"playbook {book} does not exist (GPULAB_PROJECT_DIR={project})")
    inventories = _inventories(args, project)
    extravars = parse_extravars(args.extra_vars, Path.cwd())
    extravars.update(extra)
    if args.forks is not None and args.forks < 1:
        raise UsageError("--forks must be at least 1")
    if args.keep_runs < 0:
        raise UsageError("--keep-runs must be 0 (keep all) or more")
    inventory_hosts(inventories, args.limit)
    return RunRequest(
        playbook=book,
        inventories=inventories,
        limit=args.limit,
        tags=tuple(args.tags),
        skip_tags=tuple(args.skip_tags),
        extravars=extravars,
        check=bool(getattr(args, "check", False)),
        diff=bool(args.diff),
        forks=args.forks,
        verbosity=int(args.verbose),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def execute(args: argparse.Namespace, playbook: str, extra: dict[str, Any] | None = None) -> int:
    project = project_dir()
    states = state_dir(project)
    request = _request(args, project, playbook, extra or {})
    progress = make_view(sys.stderr, bool(args.verbose), expected_tasks(states, playbook))
    run = Run(request, project, states, progress.on_event)

    def _stop(signum: int, frame: FrameType | None) -> None:
        run.cancel()

    in_main = threading.current_thread() is threading.main_thread()  # signal handlers need the main thread
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    started_at = _now()
    announced = False
    try:
        progress.note(
            f"gpulab {args.command}: {playbook} on {', '.join(str(p) for p in request.inventories)}"
            f" (run {run.ident})"
        )
        progress.start()
        run.start()
        while not run.wait(0.2):
            progress.flush()
            if run.cancelled and not announced:
                progress.note("interrupted: stopping ansible, writing the report…")
                announced = True
    finally:
        progress.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    outcome = run.outcome()
    state = progress.state
    if outcome.stats:  # Runner.stats: ansible's final counters
        apply_stats(state, outcome.stats)
    options = {
        "limit": request.limit,
        "tags": list(request.tags),
        "skip_tags": list(request.skip_tags),
        "extravars_keys": sorted(request.extravars),  # values may be secrets
        "check": request.check,
        "diff": request.diff,
        "forks": request.forks,
    }
    report = build_report(
        state,
        ident=run.ident,
        command=str(args.command),
        playbook=str(request.playbook),
        inventories=[str(p) for p in request.inventories],
        options=options,
        started_at=started_at,
        ended_at=_now(),
        runner_status=outcome.status,
        rc=outcome.rc,
        cancelled=run.cancelled,
        run_dir=str(outcome.run_dir),
    )
    write_report(report, outcome.run_dir / REPORT_NAME)
    point_last(states, run.ident)
    if args.report:
        write_report(report, args.report.expanduser().resolve())
    prune_runs(states, args.keep_runs, protect=run.ident)
    print(render_summary(report))
    return int(report["exit_code"])


def cmd_provision(args: argparse.Namespace) -> int:
    return execute(args, "site.yml")


def cmd_check(args: argparse.Namespace) -> int:
    return execute(args, "verify.yml")


def cmd_render(args: argparse.Namespace) -> int:
    dest = Path(args.output).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    # dl_env_render_only too: extra vars win over the playbook, so the hosts stay untouched.
    return execute(
        args, "render.yml", {"dl_env_render_only": True, "dl_env_render_dest_controller": str(dest)}
    )


def cmd_report(args: argparse.Namespace) -> int:
    states = state_dir(project_dir())
    run_dir = resolve_run(states, args.run)
    path = Path(args.run) if args.run and Path(args.run).is_file() else run_dir / REPORT_NAME
    report = load_report(path)
    if args.html:
        out = args.html.expanduser().resolve()
        write_html(report, load_history(states), out)
        print(f"gpulab report: wrote {out}")
    elif args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_summary(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    verbose = False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        verbose = bool(getattr(args, "verbose", 0))
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except GpulabError as exc:
        print(f"gpulab: error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except BrokenPipeError:  # `gpulab report | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's documented recipe for SIGPIPE
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        print("gpulab: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        print(
            f"gpulab: internal error: {type(exc).__name__}: {exc} (rerun with -v for details)",
            file=sys.stderr,
        )
        return int(ExitCode.INTERNAL_ERROR)


if __name__ == "__main__":
    sys.exit(main())
