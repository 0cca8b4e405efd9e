"""Build, store and render the report of a run (schema: docs/report-schema.md).

The report is made from the folded runner events (:class:`gpulab.events.RunState`), ansible's final
``Runner.stats`` and the run-level ``set_stats`` data; nothing is scraped from ansible's text output.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpulab.errors import ExitCode, ParseError, UsageError
from gpulab.events import HOST_KEY_ADVICE, HostState, RunState

SCHEMA_VERSION = 1


def run_status(state: RunState, cancelled: bool, rc: int | None) -> str:
    """ok | failed | unreachable | interrupted | error (precedence in this order, from the left)."""
    if cancelled:
        return "interrupted"
    if any(h.unreachable for h in state.hosts.values()):
        return "unreachable"
    if any(h.failed for h in state.hosts.values()):
        return "failed"
    if rc not in (0, None) or not state.finished:
        return "error"
    return "ok"


def exit_code(report: Mapping[str, Any]) -> ExitCode:
    """The documented exit code of a report: from per-host counters, not from ansible's rc."""
    status = report.get("status")
    if status == "interrupted":
        return ExitCode.INTERRUPTED
    if status == "unreachable":
        return ExitCode.HOST_UNREACHABLE
    if status == "failed":
        return ExitCode.HOST_FAILED
    if status == "error":
        rc = report.get("ansible_rc")
        if not report.get("started") and rc == ExitCode.PARSE_ERROR:
            return ExitCode.PARSE_ERROR  # ansible's 4 before any play is a parser error
        if not report.get("started") and rc == ExitCode.USAGE_ERROR:
            return ExitCode.USAGE_ERROR
        return ExitCode.ERROR
    return ExitCode.OK


NOT_REACHED = "not-reached"
STOPPED = "stopped"


def rollout(state: RunState, targets: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """A rolling run (`--batch`): the batches of the play that ran in the most batches (the last such play on
    a tie: site.yml's provision play) and the targeted hosts it never reached, in inventory order."""
    if not state.batches:
        return [], list(targets)
    counts = Counter(b.play for b in state.batches)
    play = [b.play for b in state.batches if counts[b.play] == max(counts.values())][-1]
    runs = [b for b in state.batches if b.play == play]
    batches = [
        {"play": play, "batch": n, "hosts": list(b.hosts), "stopped": b.stopped}
        for n, b in enumerate(runs, 1)
    ]
    reached = {h for b in runs for h in b.hosts}
    return batches, [h for h in targets if h not in reached]


def _failed_in(batch: Mapping[str, Any], hosts: Mapping[str, Any]) -> list[str]:
    return [h for h in batch["hosts"] if hosts.get(h, {}).get("status") in ("failed", "unreachable")]


def _rollout_hosts(
    batches: list[dict[str, Any]], missed: list[str], hosts: dict[str, Any], state: RunState, max_fail: Any
) -> None:
    """Mark the hosts a rolling run cut short (`stopped`) or never reached (`not-reached`), with why."""
    for batch in batches:
        failed = _failed_in(batch, hosts)
        if not (batch["stopped"] and failed):
            continue
        where = hosts[failed[0]].get("failed_task") or "a task"
        for name in batch["hosts"]:
            if hosts[name]["status"] == "ok":
                hosts[name] |= {
                    "status": STOPPED,
                    "message": f"stopped when {', '.join(failed)} failed at {where!r}"
                    f" (--max-fail {max_fail}%: ansible's max_fail_percentage stops the rest of the batch;"
                    " its always: steps ran)",
                }
    last = _failed_in(batches[-1], hosts) if batches else []
    for name in missed:
        hosts[name] = _host_record(state.hosts.get(name) or HostState(name=name), state.finished, False) | {
            "status": NOT_REACHED,
            "failed_task": None,
            "message": f"not provisioned: the rolling run stopped after batch {len(batches)}"
            f" ({', '.join(last) or 'no host'} failed; --max-fail {max_fail}%); fix that and run again",
        }


# What the host_lock role's checkpoint says when it stops a host on gpulab's stop request (gpulab.stop).
STOP_REQUESTED = "stop requested"


def _host_status(host: HostState, finished: bool, cancelled: bool) -> str:
    if host.unreachable:
        return "unreachable"
    if host.failed and cancelled and STOP_REQUESTED in host.message:
        return "interrupted"
    if host.failed:
        return "failed"
    if cancelled and not finished:
        return "interrupted"
    return "ok"


# Keys of the MLP check's result that dl_env hands over flat in its set_stats entry (roles/dl_env verify.yml).
MLP_KEYS = (
    "passed",
    "backend",
    "device",
    "gpu_name",
    "loss",
    "accuracy",
    "seconds",
    "reason",
    "tasks",
    "check_reused",
    "checked_at",
    "check_age_s",
    "recheck_reason",
)


def _mlp_check(facts: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The check result: set_stats ``mlp_check`` (nested) or its flat keys, else the dl_env_mlp_check fact."""
    nested = extra.get("mlp_check")
    if isinstance(nested, dict):
        return nested
    flat = {key: extra[key] for key in MLP_KEYS if key in extra}
    if "passed" in flat or "backend" in flat:
        return flat
    fact = facts.get("dl_env_mlp_check")
    return fact if isinstance(fact, dict) else None


def _host_record(
    host: HostState, finished: bool, cancelled: bool, mid_change: bool = False
) -> dict[str, Any]:
    facts, extra = host.facts, host.stats_data
    status = _host_status(host, finished, cancelled)
    mlp = _mlp_check(facts, extra)
    record: dict[str, Any] = {
        "status": status,
        "counts": {
            "ok": host.ok,
            "changed": host.changed,
            "failed": host.failed,
            "unreachable": host.unreachable,
            "skipped": host.skipped,
            "ignored": host.ignored,
            "rescued": host.rescued,
        },
        "failed_task": (host.failed_task or None) if status != "ok" else None,
        "message": (host.message or None) if status != "ok" else None,
        "last_task": host.task or None,
        "tasks_run": host.tasks_started,
        "gpu_present": facts.get("cuda_check_gpu_present"),
        "gpus": facts.get("cuda_check_gpus"),
        "driver_version": facts.get("cuda_check_driver_version"),
        "driver_changed": facts.get("cuda_check_driver_changed"),
        "previous_driver_version": facts.get("cuda_check_previous_driver_version"),
        "reboot_required": facts.get("cuda_check_reboot_required"),
        "cuda_version": facts.get("cuda_check_cuda_version"),
        "conda_version": facts.get("miniconda_installed_conda_version"),
        "env_action": extra.get("env_action", facts.get("dl_env_action")),
        "env_digest": extra.get("spec_digest") or None,
        "pin_changes": extra.get("pin_changes") or facts.get("dl_env_pin_changes") or [],
        "changed_tasks": list(host.changed_tasks),
        "mid_change": mid_change,
        "mlp_check": mlp,
        # The re-run fast path (playbooks/site.yml): taken, or why the host ran in full.
        "fast_path": extra.get("fast_path"),
        "facts": dict(sorted(facts.items())),
        "stats_data": dict(sorted(extra.items())),
    }
    return record


def build_report(
    state: RunState,
    *,
    ident: str,
    command: str,
    playbook: str,
    inventories: list[str],
    options: Mapping[str, Any],
    started_at: str,
    ended_at: str,
    runner_status: str,
    rc: int | None,
    cancelled: bool,
    run_dir: str,
    interruption: Mapping[str, Any] | None = None,
    targets: Sequence[str] = (),
) -> dict[str, Any]:
    """The report; ``interruption`` (gpulab.cli): how a stopped run ended, which hosts were mid-change;
    ``targets``: the hosts the run targeted (a rolling run reports those it never reached)."""
    status = run_status(state, cancelled, rc)
    mid = set(interruption.get("mid_change_hosts", [])) if interruption else set()
    hosts = {
        name: _host_record(host, state.finished, cancelled, name in mid)
        for name, host in sorted(state.hosts.items())
    }
    batches: list[dict[str, Any]] = []
    if options.get("batch") and not cancelled:
        batches, missed = rollout(state, targets)
        _rollout_hosts(batches, missed, hosts, state, options.get("max_fail_percentage"))
        hosts = dict(sorted(hosts.items()))
    totals = {
        key: sum(h["counts"][key] for h in hosts.values())
        for key in ("ok", "changed", "failed", "unreachable", "skipped", "ignored", "rescued")
    }
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "ident": ident,
        "command": command,
        "playbook": playbook,
        "inventories": inventories,
        "options": dict(options),
        "started_at": started_at,
        "ended_at": ended_at,
        "status": status,
        "exit_code": 0,
        "runner_status": runner_status,
        "ansible_rc": rc,
        "started": state.started,
        "finished": state.finished,
        # ansible's [ERROR] lines; when it failed before the playbook without one (e.g. ansible-playbook
        # not found, rc 127), what it printed instead.
        "errors": list(
            state.errors or (state.early_output if status == "error" and not state.started else [])
        ),
        "hosts": hosts,
        "totals": totals,
        "set_stats": state.artifact_data,
        "batches": batches,
        "interruption": dict(interruption) if interruption else None,
        "artifacts": run_dir,
    }
    report["exit_code"] = int(exit_code(report))
    return report


def write_report(report: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"no report at {path}") from exc
    except (OSError, ValueError) as exc:
        raise ParseError(f"cannot read report {path}: {exc}") from exc
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ParseError(f"{path} is not a gpulab report")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ParseError(
            f"{path} has schema_version {data['schema_version']}; this gpulab reads up to {SCHEMA_VERSION}"
        )
    return data


# Rendering ----------------------------------------------------------------------------------------

REPORT_COLUMNS = (
    "host",
    "status",
    "changed",
    "failed task / message",
    "GPUs",
    "driver",
    "CUDA",
    "env",
    "MLP check",
)


def _gpus(host: Mapping[str, Any]) -> str:
    gpus = host.get("gpus")
    if isinstance(gpus, list) and gpus:
        names = sorted({str(g.get("name", "?")) for g in gpus if isinstance(g, dict)})
        short = ", ".join(n.removeprefix("NVIDIA ") for n in names)
        return f"{len(gpus)}x {short}" if short else str(len(gpus))
    if host.get("gpu_present") is False or gpus == []:
        return "none"
    return "-"


def _driver(host: Mapping[str, Any]) -> str:
    version = host.get("driver_version") or ""
    text = str(version) if version else "-"
    previous = host.get("previous_driver_version")
    if host.get("driver_changed") and previous and previous != version:
        text += f" (upgraded from {previous})"
    if host.get("reboot_required"):
        text += " (reboot required)"
    return text


def _cuda(host: Mapping[str, Any]) -> str:
    version = host.get("cuda_version")
    if version is None:
        return "-"
    return str(version) if version else "cpu"


def _mlp(host: Mapping[str, Any]) -> str:
    check = host.get("mlp_check")
    if not isinstance(check, dict):
        return "-"
    parts = [str(check.get("backend") or "?")]
    device = check.get("gpu_name") or check.get("device")
    if device:
        parts[0] += f"/{str(device).removeprefix('NVIDIA ')}"
    acc = check.get("accuracy", check.get("acc"))
    if isinstance(acc, int | float):
        parts.append(f"acc {acc:.3f}")
    seconds = check.get("seconds")
    if isinstance(seconds, int | float):
        parts.append(f"{seconds:.1f}s")
    if check.get("check_reused") and isinstance(check.get("check_age_s"), int | float):
        parts.append(f"(kept, {human_age(check['check_age_s'])} old)")
    text = " ".join(parts)
    if check.get("passed") is False:
        text = "FAIL " + text
    return text


def human_age(seconds: float) -> str:
    """`42s`, `5m`, `3h`, `2d`: the age of a kept MLP check in the summary table."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def _failure(host: Mapping[str, Any], width: int) -> str:
    task, message = host.get("failed_task"), host.get("message")
    if not task:
        return "-"
    text = f"{task}: {message}" if message else str(task)
    return text if len(text) <= width else text[: width - 1] + "…"


def _env(host: Mapping[str, Any]) -> str:
    action = str(host.get("env_action") or "-")
    digest = host.get("env_digest")
    return f"{action} {str(digest)[:12]}" if digest else action


def host_cells(name: str, host: Mapping[str, Any], message_width: int = 60) -> list[str]:
    """One host's row of the summary table (REPORT_COLUMNS), shared by the text and the HTML report."""
    return [
        str(name),
        str(host.get("status", "?")),
        str(host.get("counts", {}).get("changed", 0)),
        _failure(host, message_width),
        _gpus(host),
        _driver(host),
        _cuda(host),
        _env(host),
        _mlp(host),
    ]


def table_rows(report: Mapping[str, Any], message_width: int = 60) -> list[list[str]]:
    return [host_cells(name, host, message_width) for name, host in report.get("hosts", {}).items()]


def render_table(report: Mapping[str, Any]) -> str:
    rows = [list(REPORT_COLUMNS), *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(REPORT_COLUMNS))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _interruption_lines(stop: Mapping[str, Any]) -> str:
    how = {"signal": "killed on a second signal", "timeout": "killed after the stop timeout"}.get(
        str(stop.get("escalated_by")), "stopped between steps"
    )
    lines = [f"\ninterrupted by {stop.get('signal') or 'a signal'}: {how}"]
    mid = stop.get("mid_change_hosts") or []
    if mid:
        lines.append(f"mid-change when the stop came: {', '.join(mid)} (the next provision completes them)")
    cleanup = stop.get("cleanup")
    if isinstance(cleanup, dict):
        status = cleanup.get("status")
        if status == "missing":
            status = f"not run: no {cleanup.get('playbook')} (locks of this run stay until they go stale)"
        lines.append(f"cleanup (locks of this run, temporary files): {status}")
    return "\n".join(lines)


def fast_path_lines(hosts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Which hosts the re-run fast path read once, and why each other host ran in full (site.yml only)."""
    seen = {name: h["fast_path"] for name, h in hosts.items() if isinstance(h.get("fast_path"), dict)}
    if not seen:
        return []
    fast = [name for name, path in seen.items() if path.get("taken")]
    matched = f"{len(fast)} of {len(seen)} hosts matched their last full run"
    lines = [f"fast path: {matched} (read once, roles skipped)"]
    full = {name: "; ".join(p.get("reasons") or []) for name, p in seen.items() if not p.get("taken")}
    if full and len(set(full.values())) == 1:
        lines.append(f"ran in full: {', '.join(full)} ({next(iter(full.values()))})")
    else:
        lines += [f"ran in full: {name} ({why})" for name, why in full.items()]
    return lines


def render_summary(report: Mapping[str, Any]) -> str:
    """The whole after-run text: a header line, the table, ansible's errors and where things are."""
    totals = report.get("totals", {})
    head = (
        f"gpulab {report.get('command')} {report.get('ident')}: {report.get('status')}"
        f" (exit {report.get('exit_code')}) - {len(report.get('hosts', {}))} hosts,"
        f" {totals.get('changed', 0)} changed, {totals.get('failed', 0)} failed,"
        f" {totals.get('unreachable', 0)} unreachable"
    )
    parts = [head]
    if report.get("hosts"):
        parts += ["", render_table(report)]
    for error in report.get("errors", []):
        parts.append(f"ansible: {error}")
    for name, host in report.get("hosts", {}).items():
        message = str(host.get("message") or "")
        if message.startswith(HOST_KEY_ADVICE):  # too important for the table's cut-off column
            parts.append(f"{name}: {message}")
    parts += fast_path_lines(report.get("hosts", {}))
    for batch in report.get("batches") or []:
        parts.append(f"batch {batch['batch']} of {batch['play']}: {', '.join(batch['hosts']) or '-'}")
    missed = [name for name, host in report.get("hosts", {}).items() if host.get("status") == NOT_REACHED]
    if missed:
        parts.append(f"not reached: {', '.join(missed)} ({report['hosts'][missed[0]]['message']})")
    stop = report.get("interruption")
    if isinstance(stop, dict):
        parts.append(_interruption_lines(stop))
    parts.append(f"\nartifacts: {report.get('artifacts')}")
    return "\n".join(parts)
