"""`gpulab demo` end to end in real containers: the README's first command, asserted on its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_containers, tool_env


@pytest.mark.containers
@pytest.mark.slow
def test_demo_provisions_upgrades_one_node_and_rebuilds_only_it(tmp_path: Path) -> None:
    require_containers()
    report_path = tmp_path / "demo.json"
    env = tool_env() | {"GPULAB_LAB_DIR": str(tmp_path / "lab"), "GPULAB_STATE_DIR": str(tmp_path / "runs")}
    proc = subprocess.run(
        [sys.executable, "-m", "gpulab", "demo", "--report", str(report_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=float(os.environ.get("GPULAB_SCENARIO_TIMEOUT", "1800")),
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"gpulab demo failed (rc {proc.returncode}):\n{output[-8000:]}"
    assert "SIMULATED" in output
    demo = json.loads(report_path.read_text())
    assert demo["simulated"] is True
    upgraded = demo["upgrade"]["node"]
    first, second = demo["runs"]["initial"], demo["runs"]["after_upgrade"]
    assert first["status"] == "ok" and second["status"] == "ok"
    assert set(first["hosts"]) == {"gpu-l40s", "gpu-h100", "cpu-node"}
    for name, host in first["hosts"].items():
        assert host["env_action"] == "created", (name, host)
        assert host["mlp_check"]["passed"] is True, (name, host)
    for name, host in second["hosts"].items():
        if name == upgraded:
            assert host["driver_changed"] is True
            assert host["previous_driver_version"] == "550.127.05"
            assert host["driver_version"] == "595.80"
            assert host["env_action"] == "updated", host
            assert host["counts"]["changed"] > 0
        else:
            assert host["driver_changed"] is False, (name, host)
            assert host["env_action"] == "unchanged", (name, host)
            assert host["counts"]["changed"] == 0, (name, host["counts"])
        assert host["mlp_check"]["passed"] is True, (name, host)
    # `gpulab lab down` ran: none of the demo's containers is left.
    from gpulab.lab.cluster import CONTAINER_PREFIX, running_containers

    assert not set(running_containers()) & {CONTAINER_PREFIX + name for name in first["hosts"]}
