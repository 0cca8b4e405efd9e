"""Graceful interruption, for real: a `gpulab provision` subprocess on two local hosts of
fixtures/stop_project (checkpoints between phases, an always: section, a cleanup.yml), sent signals.

- first signal: the playbook stops at the next checkpoint, always: runs, no kill, no cleanup needed;
- a step that ignores the stop: killed after --stop-timeout, then cleanup.yml runs with this run's id;
- a second signal kills at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpulab.errors import ExitCode, UsageError
from gpulab.stop import GRACE_ENV, KILLING, SIGNALS, STOP_FILE, STOPPING, StopRequest, grace_seconds
from tests.cli.helpers import FIXTURES, processes_naming, read_event, wait_for_task

STOP_PROJECT = FIXTURES / "stop_project"


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(GPULAB_PROJECT_DIR=str(STOP_PROJECT), GPULAB_STATE_DIR=str(tmp_path / "runs"))
    env.pop("ANSIBLE_CONFIG", None)
    env.pop("GPULAB_STOP_TIMEOUT", None)
    (tmp_path / "marks").mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "gpulab", "provision", "-e", f"test_marker_dir={tmp_path / 'marks'}", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "runs" / "last" / "report.json").read_text())
    return data


@pytest.mark.slow
def test_first_signal_stops_at_the_next_checkpoint_and_always_runs(tmp_path: Path) -> None:
    proc = _start(tmp_path, "-e", "test_phase_seconds=4")
    wait_for_task(proc, tmp_path / "runs", "Phase one takes a while", hosts=2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "stopping after the current step" in err and "Traceback" not in err
    report = _report(tmp_path)
    assert report["status"] == "interrupted" and report["exit_code"] == 99
    stop = report["interruption"]
    assert stop["signal"] == "SIGINT" and stop["escalated_by"] is None and stop["cleanup"] is None
    # both hosts were in a task (and had changed something) when the stop came
    assert stop["mid_change_hosts"] == ["node1", "node2"]
    for name, host in report["hosts"].items():
        assert host["status"] == "interrupted" and host["mid_change"] is True, name
        assert host["failed_task"] == "Checkpoint after phase one"
        # the always: section ran, for this run
        assert (tmp_path / "marks" / f"{name}.always").read_text().strip() == report["ident"]
        assert not (tmp_path / "marks" / f"{name}.cleanup").exists()
    assert report["runner_status"] != "canceled"  # ansible ended by itself: nothing was killed
    assert not (Path(report["artifacts"]) / STOP_FILE).exists()
    assert "interrupted by SIGINT: stopped between steps" in out


@pytest.mark.slow
def test_a_step_that_ignores_the_stop_is_killed_then_cleanup_runs(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--stop-timeout", "2", "-e", "test_stubborn_seconds=113")
    wait_for_task(proc, tmp_path / "runs", "Phase two ignores stop requests", hosts=2)
    deadline = time.monotonic() + 30
    while not _sleeping(113) and time.monotonic() < deadline:  # the step's command itself has started
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    begun = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert time.monotonic() - begun < 60, "the stop timeout did not kill the run"
    # killed means every process of the run: Ansible's workers (sessions of their own) and the step they ran
    assert processes_naming(tmp_path / "runs") == [] and not _sleeping(113)
    report = _report(tmp_path)
    stop = report["interruption"]
    assert stop["signal"] == "SIGTERM" and stop["escalated_by"] == "timeout"
    assert report["runner_status"] == "canceled"
    assert stop["cleanup"]["status"] == "ok" and stop["cleanup"]["hosts"] == {"node1": "ok", "node2": "ok"}
    for name in ("node1", "node2"):
        assert not (tmp_path / "marks" / f"{name}.always").exists()  # killed: always: could not run
        # cleanup.yml ran for this run's id and without a stop file (it must not stop itself)
        assert (tmp_path / "marks" / f"{name}.cleanup").read_text().split() == [
            report["ident"],
            "no-stop-file",
        ]
    assert stop["mid_change_hosts"] == ["node1", "node2"]
    assert Path(stop["cleanup"]["artifacts"]).parent == Path(report["artifacts"])
    assert (
        "killed after the stop timeout" in out and "cleanup (locks of this run, temporary files): ok" in out
    )


def _sleeping(seconds: int) -> bool:
    """A `sleep SECONDS` process is alive (the stand-in project's stubborn step)."""
    return any(
        p.read_bytes().split(b"\0")[:2] == [b"sleep", str(seconds).encode()]
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if p.exists()
    )


@pytest.mark.slow
def test_gpulab_killed_ends_its_playbook_no_orphan_goes_on(tmp_path: Path) -> None:
    """SIGKILL (a crash, the OOM killer) leaves gpulab no chance to stop anything. ansible-playbook ignores
    the hang-up of its terminal (ansible-runner spawns it with SIGHUP ignored), but its next output to that
    terminal fails, and it ends there: the task already running finishes in its worker, nothing after it
    starts. So the next run, which takes the dead controller's lock over, meets no orphan going on."""
    proc = _start(tmp_path, "-e", "test_phase_seconds=10")
    wait_for_task(proc, tmp_path / "runs", "Phase one takes a while", hosts=2)
    runs = tmp_path / "runs"
    assert processes_naming(runs), "no ansible-playbook of this run found"
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 60  # the running sleep (10 s) ends, then its worker exits
    while processes_naming(runs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_naming(runs) == []
    events = " ".join(read_event(p) for p in runs.glob("*/job_events/*.json"))
    assert (
        "Phase two ignores stop requests" not in events and "Record that the always section ran" not in events
    )
    assert not list((tmp_path / "marks").iterdir())


@pytest.mark.slow
def test_a_second_signal_kills_at_once(tmp_path: Path) -> None:
    proc = _start(tmp_path, "-e", "test_stubborn_seconds=120")  # default timeout: 60 s
    wait_for_task(proc, tmp_path / "runs", "Phase two ignores stop requests", hosts=2)
    proc.send_signal(signal.SIGINT)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    begun = time.monotonic()
    out, err = proc.communicate(timeout=90)
    assert time.monotonic() - begun < 30, "the second Ctrl-C did not kill the run"
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Ctrl-C again to kill" in err and "Traceback" not in err
    report = _report(tmp_path)
    assert report["interruption"]["escalated_by"] == "signal"
    assert report["interruption"]["cleanup"]["status"] == "ok"
    assert "killed on a second signal" in out


def test_stop_request_escalates_on_a_second_signal_or_after_the_grace(tmp_path: Path) -> None:
    stop = StopRequest(tmp_path / "run" / STOP_FILE, grace=5)
    assert not stop.requested and not stop.overdue(now=1e9)
    assert stop.on_signal(signal.SIGHUP) == STOPPING
    assert stop.path.read_text() == "SIGHUP\n" and stop.signal_name == "SIGHUP"
    assert stop.requested_at is not None
    assert not stop.overdue(now=stop.requested_at + 4.9) and not stop.escalated
    assert stop.overdue(now=stop.requested_at + 5) and stop.escalated_by == "timeout"
    assert not stop.overdue(now=stop.requested_at + 6)  # once
    again = StopRequest(tmp_path / STOP_FILE)
    again.on_signal(signal.SIGTERM)
    assert again.on_signal(signal.SIGINT) == KILLING and again.escalated_by == "signal"
    assert again.signal_name == "SIGTERM"  # the first signal is the one reported
    again.clear()
    assert not again.path.exists()
    assert set(SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [(None, {}, 60.0), (None, {GRACE_ENV: "7.5"}, 7.5), (3.0, {GRACE_ENV: "7.5"}, 3.0), (0.0, {}, 0.0)],
)
def test_grace_seconds(option: float | None, env: dict[str, str], expected: float) -> None:
    assert grace_seconds(option, env) == expected


@pytest.mark.parametrize(
    ("option", "env"), [(-1.0, {}), (None, {GRACE_ENV: "soon"}), (None, {GRACE_ENV: "-2"})]
)
def test_bad_grace_is_a_usage_error(option: float | None, env: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        grace_seconds(option, env)
