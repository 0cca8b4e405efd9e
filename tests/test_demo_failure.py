"""`gpulab demo` when something goes wrong: it stops at the failed step, says why and where to look, takes
its lab down and exits non-zero — for a failed provision and for Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpulab.lab.cluster import lab_id, running_containers
from tests.conftest import REPO, require_containers, tool_env

# A checksum no installer has: every node's Miniforge download fails its sha256 check (the way a corrupted
# mirror or a wrong pin fails), in the miniconda phase of the first provision.
BAD_SHA = "0" * 64


def _env(tmp_path: Path) -> dict[str, str]:
    return tool_env() | {"GPULAB_LAB_DIR": str(tmp_path / "lab"), "GPULAB_STATE_DIR": str(tmp_path / "runs")}


@pytest.mark.containers
@pytest.mark.slow
def test_demo_stops_at_the_failed_provision_and_takes_the_lab_down(tmp_path: Path) -> None:
    require_containers()
    proc = subprocess.run(
        [sys.executable, "-m", "gpulab", "demo", "-e", f"miniconda_installer_sha256={BAD_SHA}"],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=float(os.environ.get("GPULAB_SCENARIO_TIMEOUT", "1800")),
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-6000:]
    assert "gpulab demo: FAILED at step 2/5 (gpulab provision" in out
    assert "miniconda : install" in out  # which task, on which host
    assert "look closer: gpulab report 2" in out and "look closer: artifacts: " in out
    assert "== 3/5" not in out and "== 4/5" not in out  # nothing after the failed step
    assert "== 5/5 gpulab lab down" in out
    demo = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert demo["exit_code"] == 2 and demo["failed_step"]["step"] == 2
    assert "checksum" in demo["failed_step"]["why"].lower() or "sha256" in demo["failed_step"]["why"].lower()
    assert running_containers(lab_id(tmp_path / "lab")) == []


@pytest.mark.containers
@pytest.mark.slow
def test_ctrl_c_during_the_demo_takes_the_lab_down(tmp_path: Path) -> None:
    require_containers()
    log = tmp_path / "demo.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpulab", "demo"], cwd=REPO, env=_env(tmp_path), stdout=fh, stderr=fh
        )
    deadline = time.monotonic() + 900
    while ": cuda_check (task" not in log.read_text():  # the first provision is under way
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 99, log.read_text()[-4000:]
    out = log.read_text()
    assert "gpulab demo: FAILED at step 2/5" in out and "== 5/5 gpulab lab down" in out
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["failed_step"]["why"].startswith(
        "gpulab provision exited 99"
    )
    assert running_containers(lab_id(tmp_path / "lab")) == []
