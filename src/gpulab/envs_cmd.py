"""`gpulab envs`: `conda env list` for a whole cluster.

Runs ``roles/dl_env/playbooks/envs.yml`` (the dl_env role's read-only ``list`` entry point) through
ansible-runner with :mod:`gpulab.runner`, and prints per host and environment what the host records:
state, spec digest, python / framework / CUDA versions, the last MLP check (when, result) and the disk
use (hard links counted once). ``--json`` prints the same as one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpulab import connection
from gpulab.connection import ConnectionOptions
from gpulab.errors import ExitCode, UsageError
from gpulab.runner import Run, RunRequest, check_inventories, project_dir, state_dir

PLAYBOOK = Path("roles") / "dl_env" / "playbooks" / "envs.yml"
STATS_KEY = "gpulab_envs"
COLUMNS = ("host", "env", "state", "digest", "python", "framework", "cuda", "last check", "disk")


class Collected:
    """What the run tells: the set_stats data and the hosts that failed or were unreachable."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.unreachable: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            artifact = data.get("artifact_data") or {}
            block = artifact.get(STATS_KEY) if isinstance(artifact, dict) else None
            if isinstance(block, dict):
                self.data = block
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            host = str(data.get("host") or "?")
            res = data.get("res") or {}
            msg = str(res.get("msg") or res.get("stderr") or kind) if isinstance(res, dict) else kind
            (self.unreachable if kind == "runner_on_unreachable" else self.failed)[host] = msg
        return True


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def _check_text(check: Mapping[str, Any]) -> str:
    if not check:
        return "never"
    result = "passed" if check.get("passed") else "FAILED"
    if check.get("passed") and check.get("verified") is False:
        result = "not verified"
    return f"{result} {check.get('when', '')}".strip()


def rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per host and environment (hosts with none get one row saying so), sorted."""
    out: list[dict[str, Any]] = []
    for host in sorted(data):
        envs = (data[host] or {}).get("envs") or {}
        if not envs:
            out.append({"host": host, "env": "", "state": "no environments"})
        for name in sorted(envs):
            env = envs[name]
            versions = env.get("versions") or {}
            out.append(
                {
                    "host": host,
                    "env": name,
                    "state": "live" if env.get("live") else "no live build",
                    "digest": str(env.get("digest") or "")[:12],
                    "python": versions.get("python", ""),
                    "framework": versions.get("framework", ""),
                    "cuda": versions.get("cuda", ""),
                    "last_check": env.get("check") or {},
                    "bytes": env.get("bytes"),
                    "exclusive_bytes": env.get("exclusive_bytes"),
                    "builds": len(env.get("builds") or []),
                }
            )
    return out


def render_table(table: list[dict[str, Any]], totals: Mapping[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    grid = Table(*COLUMNS, box=None, pad_edge=False, header_style="bold")
    for row in table:
        disk = human_bytes(row.get("bytes"))
        if row.get("exclusive_bytes") is not None:
            disk += f" ({human_bytes(row['exclusive_bytes'])} own)"
        grid.add_row(
            row["host"],
            row["env"],
            row["state"],
            row.get("digest", ""),
            row.get("python", ""),
            row.get("framework", ""),
            row.get("cuda", "") or "-",
            _check_text(row.get("last_check") or {}),
            disk if row["env"] else "",
        )
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(grid)
    for host in sorted(totals):
        console.print(
            f"{host}: all environments {human_bytes(totals[host])} on disk (hard links counted once)"
        )
    return console.export_text().rstrip() + "\n"


def result(collected: Collected) -> dict[str, Any]:
    return {
        "hosts": {
            host: {"envs": (block or {}).get("envs") or {}, "total_bytes": (block or {}).get("total_bytes")}
            for host, block in sorted(collected.data.items())
        },
        "failed": collected.failed,
        "unreachable": collected.unreachable,
    }


def exit_code(collected: Collected) -> ExitCode:
    if collected.unreachable:
        return ExitCode.HOST_UNREACHABLE
    if collected.failed:
        return ExitCode.HOST_FAILED
    return ExitCode.OK


def run_envs(
    inventories: tuple[Path, ...],
    limit: str | None,
    project: Path | None = None,
    options: ConnectionOptions | None = None,
) -> Collected:
    project = project or project_dir()
    check_inventories(inventories)
    options = options or ConnectionOptions()
    request = RunRequest(
        playbook=project / PLAYBOOK, inventories=inventories, limit=limit, connection=options
    )
    collected = Collected()
    # The same options and password prompts as provision/check: a sudo-password node is listed with -K.
    run = Run(request, project, state_dir(project), collected, passwords=options.ask_passwords())
    run.start()
    try:
        while not run.wait(0.2):
            pass
    finally:
        run.finish()
    outcome = run.outcome()
    if not collected.data and not collected.failed and not collected.unreachable:
        raise UsageError(
            f"gpulab envs: the listing run ended {outcome.status} without a result ({outcome.run_dir})"
        )
    return collected


def cmd_envs(args: argparse.Namespace) -> int:
    project = project_dir()
    given = args.inventory or []
    inventories = tuple(Path(p).expanduser().resolve() for p in given) or (
        project / "inventory" / "local" / "hosts.yml",
    )
    collected = run_envs(inventories, args.limit, project, connection.from_args(args))
    if args.json:
        print(json.dumps(result(collected), indent=2, sort_keys=True))
    else:
        totals = {h: (b or {}).get("total_bytes") for h, b in collected.data.items()}
        sys.stdout.write(render_table(rows(collected.data), totals))
        for host, msg in sorted({**collected.failed, **collected.unreachable}.items()):
            print(f"{host}: could not list environments: {msg}")
    return int(exit_code(collected))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    envs = subparsers.add_parser(
        "envs", help="list the environments gpulab made on each host (like `conda env list` for a cluster)"
    )
    envs.add_argument(
        "-i",
        "--inventory",
        action="append",
        help="inventory file or directory (repeatable; default: this machine)",
    )
    envs.add_argument("-l", "--limit", help="only these hosts (an Ansible host pattern)")
    envs.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    connection.add_options(envs)
    envs.set_defaults(func=cmd_envs)
