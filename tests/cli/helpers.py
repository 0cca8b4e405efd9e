"""Shared paths and loaders for the gpulab CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from gpulab.events import RunState, apply_event

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROJECT = FIXTURES / "project"


def load_events(name: str) -> list[dict[str, Any]]:
    """A real event stream recorded by fixtures/record.py."""
    events: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.events.json").read_text())
    return events


def fold(name: str) -> tuple[RunState, list[str]]:
    state = RunState()
    lines = [line for event in load_events(name) if (line := apply_event(state, event))]
    return state, lines


def project_env(tmp_path: Path) -> dict[str, str]:
    """Environment for `python -m gpulab` against the stand-in project, its state under tmp_path."""
    env = dict(os.environ)
    env.update(GPULAB_PROJECT_DIR=str(PROJECT), GPULAB_STATE_DIR=str(tmp_path / "runs"))
    env.pop("ANSIBLE_CONFIG", None)
    return env


def run_gpulab(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m gpulab ARGS` as a user runs it, output captured, never raising on its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "gpulab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_event(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:  # ansible-runner renamed a partial event file while we looked
        return ""


def wait_for_task(
    proc: subprocess.Popen[str],
    runs: Path,
    task: str,
    hosts: int = 1,
    timeout: float = 90,
    earlier: Collection[str] = (),
) -> None:
    """Until ``task`` has started on ``hosts`` hosts in the gpulab state dir ``runs`` (its runner_on_start
    events are on disk), in a run other than the ``earlier`` ones (names of run directories)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gpulab ended early ({proc.returncode}): {proc.communicate()}")
        started = [
            p
            for p in runs.glob("*/job_events/*.json")
            if p.parent.parent.name not in earlier
            and '"runner_on_start"' in (text := read_event(p))
            and task in text
        ]
        if len(started) >= hosts:
            return
        time.sleep(0.2)
    pytest.fail(f"{task!r} never started on {hosts} hosts")


def processes_naming(path: Path) -> list[str]:
    """Command lines of the live processes that name ``path`` (this run's ansible-playbook and workers)."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline and "sleep" not in cmdline.split()[0]:
            found.append(cmdline)
    return found
