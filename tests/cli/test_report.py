"""report.py: JSON report, exit codes and the summary table, from recorded event streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpulab.errors import ExitCode, ParseError, UsageError
from gpulab.events import HostState, RunState, apply_event
from gpulab.report import (
    SCHEMA_VERSION,
    build_report,
    exit_code,
    fast_path_lines,
    human_age,
    load_report,
    render_summary,
    render_table,
    run_status,
    write_report,
)
from tests.cli.helpers import fold


def _report(name: str, *, rc: int | None, cancelled: bool = False) -> dict[str, Any]:
    state, _ = fold(name)
    return build_report(
        state,
        ident="20260101T000000Z-abcdef",
        command="provision",
        playbook="playbooks/site.yml",
        inventories=["inventory/mixed.yml"],
        options={"limit": None},
        started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:00:05+00:00",
        runner_status="canceled" if cancelled else ("successful" if rc == 0 else "failed"),
        rc=rc,
        cancelled=cancelled,
        run_dir="/tmp/runs/x",
    )


def test_mixed_report_hosts_and_exit_code() -> None:
    report = _report("mixed", rc=4)
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["status"] == "unreachable"
    assert report["exit_code"] == ExitCode.HOST_UNREACHABLE == 3
    hosts = report["hosts"]
    assert list(hosts) == ["bad", "down", "good1", "good2"]
    assert hosts["bad"]["status"] == "failed"
    assert hosts["bad"]["failed_task"] == "Fail where the inventory asks for it"
    assert "PackagesNotFoundError" in hosts["bad"]["message"]
    assert hosts["down"]["status"] == "unreachable"
    assert hosts["good1"]["failed_task"] is None and hosts["good1"]["message"] is None
    good2 = hosts["good2"]
    assert good2["driver_version"] == "570.86.15"
    assert good2["previous_driver_version"] == "550.54.15" and good2["driver_changed"] is True
    assert good2["cuda_version"] == "12.4"
    assert good2["env_action"] == "updated"
    assert good2["mlp_check"] == {
        "passed": True,
        "backend": "cuda",
        "device": "cuda:0",
        "gpu_name": "NVIDIA A100-SXM4-40GB",
        "loss": 0.05,
        "accuracy": 0.995,
        "seconds": 4.2,
    }
    assert report["totals"]["failed"] == 1 and report["totals"]["unreachable"] == 1
    assert report["set_stats"]["gpulab"]["good1"]["env_action"] == "created"
    json.dumps(report)  # serialisable as is


def test_healthy_report_is_ok() -> None:
    report = _report("healthy", rc=0)
    assert report["status"] == "ok" and report["exit_code"] == 0
    assert all(h["status"] == "ok" for h in report["hosts"].values())


def test_cancelled_report_is_interrupted_with_partial_data() -> None:
    report = _report("cancelled", rc=254, cancelled=True)
    assert report["status"] == "interrupted" and report["exit_code"] == ExitCode.INTERRUPTED == 99
    assert report["finished"] is False
    for host in report["hosts"].values():
        assert host["status"] == "interrupted"
        assert host["last_task"] == "Wait when asked (Ctrl-C tests)"
        assert host["cuda_version"] == "12.4"


def test_parse_error_report_maps_ansible_rc_4_to_parse_error() -> None:
    report = _report("parse_error", rc=4)
    assert report["status"] == "error" and report["exit_code"] == ExitCode.PARSE_ERROR
    assert report["errors"][0].startswith("YAML parsing failed")


@pytest.mark.parametrize(
    ("hosts", "cancelled", "rc", "status"),
    [
        ({"a": HostState("a", failed=1), "b": HostState("b", unreachable=1)}, False, 4, "unreachable"),
        ({"a": HostState("a", failed=1), "b": HostState("b")}, False, 2, "failed"),
        ({"a": HostState("a", failed=1)}, True, 254, "interrupted"),
        ({"a": HostState("a")}, False, 1, "error"),
        ({"a": HostState("a")}, False, 0, "ok"),
    ],
)
def test_status_precedence(hosts: dict[str, HostState], cancelled: bool, rc: int, status: str) -> None:
    state = RunState(hosts=hosts, started=True, finished=True)
    assert run_status(state, cancelled, rc) == status


def test_exit_code_for_errors_before_the_play() -> None:
    assert exit_code({"status": "error", "started": False, "ansible_rc": 5}) == ExitCode.USAGE_ERROR
    assert exit_code({"status": "error", "started": False, "ansible_rc": 1}) == ExitCode.ERROR
    assert exit_code({"status": "error", "started": True, "ansible_rc": 4}) == ExitCode.ERROR


def test_table_shows_the_columns_an_admin_needs() -> None:
    table = render_table(_report("mixed", rc=4))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["host", "status", "changed", "failed"]
    row = {line.split()[0]: line for line in lines[2:]}
    assert "570.86.15 (upgraded from 550.54.15)" in row["good2"]
    assert "2x A100-SXM4-40GB" in row["good2"]
    assert "cuda/A100-SXM4-40GB acc 0.995 4.2s" in row["good1"]
    assert "created" in row["good1"] and "updated" in row["good2"]
    assert "Fail where the inventory asks for it: conda env create" in row["bad"]
    assert row["down"].split()[1] == "unreachable"


def test_summary_mentions_status_exit_and_artifacts() -> None:
    text = render_summary(_report("mixed", rc=4))
    assert text.splitlines()[0].endswith("unreachable (exit 3) - 4 hosts, 3 changed, 1 failed, 1 unreachable")
    assert "artifacts: /tmp/runs/x" in text
    parse = render_summary(_report("parse_error", rc=4))
    assert "ansible: YAML parsing failed" in parse


def test_cpu_host_and_failed_mlp_check_rendering() -> None:
    state = RunState(hosts={"cpu": HostState("cpu")}, started=True, finished=True)
    state.hosts["cpu"].facts = {
        "cuda_check_gpu_present": False,
        "cuda_check_gpus": [],
        "cuda_check_cuda_version": "",
    }
    state.hosts["cpu"].stats_data = {"mlp_check": {"backend": "cpu", "passed": False, "accuracy": 0.4}}
    report = build_report(
        state,
        ident="i",
        command="check",
        playbook="p",
        inventories=[],
        options={},
        started_at="",
        ended_at="",
        runner_status="successful",
        rc=0,
        cancelled=False,
        run_dir="d",
    )
    row = render_table(report).splitlines()[2]
    assert "none" in row and " cpu " in row and "FAIL cpu acc 0.400" in row


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    report = _report("mixed", rc=4)
    path = tmp_path / "r" / "report.json"
    write_report(report, path)
    assert load_report(path) == json.loads(json.dumps(report))
    assert not list(path.parent.glob(".*.tmp"))


def test_load_report_rejects_newer_schema_and_junk(tmp_path: Path) -> None:
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ParseError, match="schema_version"):
        load_report(newer)
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(ParseError):
        load_report(junk)
    with pytest.raises(UsageError):
        load_report(tmp_path / "missing.json")


def test_failure_before_the_playbook_without_an_error_line_shows_what_ansible_printed() -> None:
    state = RunState()
    apply_event(
        state,
        {"event": "verbose", "stdout": "The command was not found or was not executable: ansible-playbook."},
    )
    report = build_report(
        state,
        ident="i",
        command="provision",
        playbook="p",
        inventories=[],
        options={},
        started_at="",
        ended_at="",
        runner_status="failed",
        rc=127,
        cancelled=False,
        run_dir="d",
    )
    assert report["status"] == "error" and report["exit_code"] == ExitCode.ERROR
    assert report["errors"] == ["The command was not found or was not executable: ansible-playbook."]
    assert _report("healthy", rc=0)["errors"] == []


def test_mlp_check_from_the_fact_when_set_stats_never_came() -> None:
    state = RunState(hosts={"h": HostState("h")}, started=True, finished=False)
    state.hosts["h"].facts = {"dl_env_mlp_check": {"passed": True, "backend": "cpu", "seconds": 1.0}}
    report = build_report(
        state,
        ident="i",
        command="check",
        playbook="p",
        inventories=[],
        options={},
        started_at="",
        ended_at="",
        runner_status="canceled",
        rc=254,
        cancelled=True,
        run_dir="d",
    )
    assert report["hosts"]["h"]["mlp_check"] == {"passed": True, "backend": "cpu", "seconds": 1.0}
    assert "cpu 1.0s" in render_table(report)


def test_a_kept_mlp_check_shows_its_age_in_the_table() -> None:
    state = RunState(hosts={"gpu": HostState("gpu")}, started=True, finished=True)
    state.hosts["gpu"].stats_data = {
        "passed": True,
        "backend": "torch",
        "device": "cuda",
        "accuracy": 0.995,
        "check_reused": True,
        "checked_at": "2026-12-05T09:00:00Z",
        "check_age_s": 3 * 3600 + 5,
        "recheck_reason": "",
    }
    report = build_report(
        state,
        ident="i",
        command="provision",
        playbook="p",
        inventories=[],
        options={},
        started_at="",
        ended_at="",
        runner_status="successful",
        rc=0,
        cancelled=False,
        run_dir="d",
    )
    assert report["hosts"]["gpu"]["mlp_check"]["checked_at"] == "2026-12-05T09:00:00Z"
    row = render_table(report).splitlines()[2]
    assert "torch/cuda acc 0.995 (kept, 3h old)" in row
    assert [human_age(s) for s in (5, 61, 7200, 200000)] == ["5s", "1m", "2h", "2d"]


def test_the_summary_says_which_hosts_took_the_fast_path_and_why_the_others_ran_in_full() -> None:
    def host(taken: bool, *reasons: str) -> dict[str, Any]:
        return {"fast_path": {"taken": taken, "reasons": list(reasons), "recorded_at": None}}

    driver = "nvidia-smi reports another driver or other GPUs"
    upgraded = {"a": host(True), "b": host(False, driver), "c": host(True)}
    assert fast_path_lines(upgraded) == [
        "fast path: 2 of 3 hosts matched their last full run (read once, roles skipped)",
        "ran in full: b (nvidia-smi reports another driver or other GPUs)",
    ]
    cold = {"a": host(False, "no record of a full run yet"), "b": host(False, "no record of a full run yet")}
    assert fast_path_lines(cold)[1] == "ran in full: a, b (no record of a full run yet)"
    assert fast_path_lines({"a": {"fast_path": None}}) == []  # not site.yml
