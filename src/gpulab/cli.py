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
import contextlib
import dataclasses
import importlib
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from gpulab import __version__, connection, ee_run
from gpulab import extravars as xvars
from gpulab import stop as graceful
from gpulab.errors import MEANINGS, ExitCode, GpulabError, UsageError
from gpulab.events import RunState, apply_event, apply_stats
from gpulab.html_report import load_history, write_html
from gpulab.progress import View, expected_tasks, make_view
from gpulab.redact import Redactor, inventory_secret_values, secret_values
from gpulab.report import build_report, load_report, render_summary, write_report
from gpulab.runner import (
    DEFAULT_KEEP_RUNS,
    REPORT_NAME,
    Run,
    RunRequest,
    check_inventories,
    inventory_hosts,
    new_ident,
    point_last,
    project_dir,
    prune_runs,
    resolve_run,
    sized_forks,
    state_dir,
)

PLUGIN_MODULES = ("gpulab.envs_cmd", "gpulab.lab.cli")

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


def parse_extravars(values: Sequence[str], cwd: Path | None = None) -> dict[str, Any]:
    """The ``-e`` values gpulab can read, merged in order (later wins); see :mod:`gpulab.extravars`."""
    return xvars.plan(values, cwd).known()


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
        "-f",
        "--forks",
        type=int,
        metavar="N",
        help="hosts in parallel (default: one per host, at most 10 per CPU; ANSIBLE_FORKS overrides)",
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
        "--stop-timeout",
        type=float,
        metavar="SECONDS",
        help=(
            "after Ctrl-C/SIGTERM/SIGHUP, seconds to wait for the playbook to stop between steps before"
            f" killing it (default {graceful.GRACE_ENV} or {graceful.DEFAULT_GRACE:g})"
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more output (repeat for ansible -vvv)"
    )
    parser.add_argument(
        "--ee",
        metavar="IMAGE",
        help="run the playbook inside this execution environment image with podman (docs/ee.md)",
    )
    connection.add_options(parser)


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
    prov.add_argument(
        "--batch",
        type=batch_size,
        metavar="N|P%",
        help="rolling run: provision N hosts (or P%% of them) at a time, the next batch only after this one",
    )
    prov.add_argument(
        "--max-fail",
        type=percentage,
        metavar="P",
        help="with --batch: stop the rollout when more than P%% of a batch failed (default 0: any failure)",
    )
    prov.add_argument(
        "--reverify",
        action="store_true",
        help="run the MLP check in every environment even where its last passed check still holds",
    )
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


def _request(
    args: argparse.Namespace,
    project: Path,
    playbook: str,
    internal: Mapping[str, Any],
    writable: Sequence[Path] = (),
) -> RunRequest:
    book = project / "playbooks" / playbook
    if not book.is_file():
        raise UsageError(f"playbook {book} does not exist (GPULAB_PROJECT_DIR={project})")
    inventories = _inventories(args, project)
    extravars = xvars.plan(args.extra_vars, Path.cwd())
    options = connection.from_args(args)
    if args.forks is not None and args.forks < 1:
        raise UsageError("--forks must be at least 1")
    if args.keep_runs < 0:
        raise UsageError("--keep-runs must be 0 (keep all) or more")
    targets = inventory_hosts(inventories, args.limit)
    ee_image = getattr(args, "ee", None)
    if ee_image:
        ee_run.check_image(ee_image)
    return RunRequest(
        playbook=book,
        inventories=inventories,
        limit=args.limit,
        tags=tuple(args.tags),
        skip_tags=tuple(args.skip_tags),
        extravars=extravars,
        internal_vars=dict(internal),
        connection=options,
        check=bool(getattr(args, "check", False)),
        diff=bool(args.diff),
        forks=args.forks or sized_forks(len(targets), os.environ),
        verbosity=int(args.verbose),
        targets=tuple(targets),
        ee_image=ee_image,
        writable_dirs=tuple(writable),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _redactor(request: RunRequest) -> Redactor:
    """Masks the secrets of this run's inputs: -e values, inventory and group/host vars (gpulab.redact)."""
    values = secret_values(request.extravars.known())
    values |= inventory_secret_values(request.inventories, request.limit)
    return Redactor(values)


def _mid_change(state: RunState) -> list[str]:
    """Hosts with a task running, or with something changed, at the moment of the stop request."""
    return sorted(name for name, host in state.hosts.items() if host.in_task or host.changed_tasks)


def _drive(run: Run, progress: View, stop: graceful.StopRequest, on_stop: Callable[[], None]) -> None:
    """Wait for the run, updating the view; escalate a pending stop to a kill after its grace period."""
    announced = False
    while not run.wait(0.2):
        progress.flush()
        if stop.requested and not announced:
            announced = True
            on_stop()
        if stop.overdue():
            progress.note(f"gpulab: the run did not stop within {stop.grace:g} s: {graceful.KILLING}")
        if stop.escalated and not run.cancelled:
            run.cancel()


def _cleanup(
    request: RunRequest,
    project: Path,
    run: Run,
    passwords: Mapping[str, str],
    progress: View,
) -> dict[str, Any]:
    """Run playbooks/cleanup.yml after a killed run: releases this run's locks, removes temporary files."""
    book = project / "playbooks" / graceful.CLEANUP_PLAYBOOK
    if not book.is_file():
        return {"status": "missing", "playbook": str(book), "hosts": {}}
    internal = {k: v for k, v in request.internal_vars.items() if k.startswith("gpulab_")}
    internal.pop("gpulab_stop_file", None)  # the cleanup itself must not stop at a checkpoint
    # same hosts, connection and -e; check mode stays check mode (a checked run took no lock)
    cleanup_request = dataclasses.replace(
        request, playbook=book, internal_vars=internal, tags=(), skip_tags=(), diff=False
    )
    state = RunState()

    def on_event(event: dict[str, Any]) -> bool:
        line = apply_event(state, event)
        if line and request.verbosity:
            progress.note(line)
        return True

    cleanup = Run(
        cleanup_request,
        project,
        run.run_dir,
        on_event,
        ident="cleanup",
        passwords=passwords,
        redactor=run.redactor,
    )
    progress.note(f"gpulab: running {book.name} (locks of run {run.ident}, temporary files)…")
    stopper = _install_signals(lambda signum: cleanup.cancel())
    try:
        cleanup.start()
        while not cleanup.wait(0.2):
            pass
    finally:
        _restore_signals(stopper)
        cleanup.finish()
    outcome = cleanup.outcome()
    if outcome.stats:
        apply_stats(state, outcome.stats)
    hosts = {name: host.status for name, host in sorted(state.hosts.items())}
    ok = outcome.status == "successful" and all(v == "ok" for v in hosts.values())
    return {"status": "ok" if ok else "failed", "artifacts": str(outcome.run_dir), "hosts": hosts}


def _install_signals(handler: Callable[[int], None]) -> dict[int, Any]:
    """Route SIGINT/SIGTERM/SIGHUP to ``handler``; {} off the main thread (signals need it)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    return {sig: signal.signal(sig, _on_signal) for sig in graceful.SIGNALS}


def _restore_signals(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def execute(
    args: argparse.Namespace,
    playbook: str,
    extra: dict[str, Any] | None = None,
    writable: Sequence[Path] = (),
) -> int:
    project = project_dir()
    states = state_dir(project)
    ident = new_ident()
    stop = graceful.StopRequest(
        states / ident / graceful.STOP_FILE, grace=graceful.grace_seconds(args.stop_timeout)
    )
    internal = {**graceful.run_vars(ident, stop.path), **(extra or {})}
    request = _request(args, project, playbook, internal, writable)
    redactor = _redactor(request)
    passwords = request.connection.ask_passwords()
    progress = make_view(sys.stderr, bool(args.verbose), expected_tasks(states, playbook))
    run = Run(
        request, project, states, progress.on_event, ident=ident, passwords=passwords, redactor=redactor
    )
    mid_change: list[str] = []

    def on_signal(signum: int) -> None:
        line = stop.on_signal(signum)
        if stop.escalated:
            run.cancel()
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone; the stop goes on
            progress.note(f"gpulab: {signal.Signals(signum).name}: {line}")

    def on_stop() -> None:
        mid_change.extend(_mid_change(progress.state))

    previous = _install_signals(on_signal)
    started_at = _now()
    try:
        progress.note(
            f"gpulab {args.command}: {playbook} on {', '.join(str(p) for p in request.inventories)}"
            f" (run {run.ident})"
        )
        progress.start()
        run.start()
        _drive(run, progress, stop, on_stop)
    finally:
        progress.stop()
        _restore_signals(previous)
        stop.clear()
        run.finish()

    outcome = run.outcome()
    state = progress.state
    if outcome.stats:  # Runner.stats: ansible's final counters
        apply_stats(state, outcome.stats)
    interruption: dict[str, Any] | None = None
    if stop.requested:
        if not mid_change:
            mid_change = _mid_change(state)
        interruption = {
            "signal": stop.signal_name,
            "escalated_by": stop.escalated_by,
            "grace_seconds": stop.grace,
            "mid_change_hosts": sorted(set(mid_change)),
            "cleanup": _cleanup(request, project, run, passwords, progress) if run.cancelled else None,
        }
    options = {
        "limit": request.limit,
        "tags": list(request.tags),
        "skip_tags": list(request.skip_tags),
        "extravars_keys": sorted({*request.extravars.keys(), *(extra or {})}),  # values may be secrets
        "extravars_vaulted_files": request.extravars.vaulted_files(),
        "check": request.check,
        "diff": request.diff,
        "forks": request.forks,
        "connection": request.connection.summary(),
        "batch": (extra or {}).get("gpulab_batch"),
        "max_fail_percentage": (extra or {}).get("gpulab_max_fail_percentage"),
        "reverify": bool((extra or {}).get("dl_env_reverify")),
        "ee": request.ee_image,
        "strategy": run.provision_strategy,
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
        cancelled=stop.requested or run.cancelled,
        run_dir=str(outcome.run_dir),
        interruption=interruption,
        targets=request.targets,
    )
    report = redactor.data(report)
    write_report(report, outcome.run_dir / REPORT_NAME)
    point_last(states, run.ident)
    if args.report:
        write_report(report, args.report.expanduser().resolve())
    prune_runs(states, args.keep_runs, protect=run.ident)
    print(render_summary(report))
    return int(report["exit_code"])


def batch_size(text: str) -> str:
    """`--batch`: hosts per batch (N >= 1) or a share of them (1%..100%), as ansible's `serial` takes it."""
    value = text.strip()
    number = value[:-1] if value.endswith("%") else value
    if not number.isdigit() or int(number) < 1 or (value.endswith("%") and int(number) > 100):
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch size: give N hosts (N >= 1) or P% (1-100)")
    return value


def percentage(text: str) -> int:
    """`--max-fail`: 0..100 (a % sign is allowed)."""
    number = text.strip().removesuffix("%")
    if not number.isdigit() or int(number) > 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0 to 100")
    return int(number)


def cmd_provision(args: argparse.Namespace) -> int:
    if args.max_fail is not None and not args.batch:
        raise UsageError("provision: --max-fail needs --batch (without batches every host runs at once)")
    extra: dict[str, Any] = {}
    if args.batch:
        extra.update(gpulab_batch=args.batch, gpulab_max_fail_percentage=args.max_fail or 0)
    if args.reverify:
        extra["dl_env_reverify"] = True
    return execute(args, "site.yml", extra or None)


def cmd_check(args: argparse.Namespace) -> int:
    return execute(args, "verify.yml")


def cmd_render(args: argparse.Namespace) -> int:
    dest = Path(args.output).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    # dl_env_render_only too: extra vars win over the playbook, so the hosts stay untouched.
    return execute(
        args,
        "render.yml",
        {"dl_env_render_only": True, "dl_env_render_dest_controller": str(dest)},
        writable=(dest,),
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
