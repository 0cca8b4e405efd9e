"""One host unreachable among eight: a real `gpulab provision` (driver, ansible-runner, the stand-in
project's site.yml) over seven local hosts and one nobody listens for, then again with it reachable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab.errors import ExitCode
from tests.cli.helpers import project_env
from tests.conftest import run_gpulab

HEALTHY = [f"node{i}" for i in range(1, 8)]
DOWN = "node8"
# ssh to a closed port on loopback: refused at once, so the test does not wait on a timeout.
UNREACHABLE = {
    "ansible_connection": "ssh",
    "ansible_host": "127.0.0.1",
    "ansible_port": 1,
    "ansible_user": "nobody",
    "ansible_ssh_timeout": 5,
}


def _provision(tmp_path: Path, down: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    hosts: dict[str, Any] = {name: {"ansible_connection": "local"} for name in HEALTHY}
    hosts[DOWN] = down
    inventory = tmp_path / "eight.yml"
    inventory.write_text(
        yaml.safe_dump(
            {"all": {"vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "hosts": hosts}}
        )
    )
    report = tmp_path / "report.json"
    proc = run_gpulab(
        ["provision", "-i", str(inventory), "--report", str(report)], project_env(tmp_path), cwd=tmp_path
    )
    return proc.returncode, json.loads(report.read_text()), proc.stdout + proc.stderr


@pytest.mark.slow
def test_one_host_unreachable_among_eight_then_the_next_run_recovers(tmp_path: Path) -> None:
    rc, report, out = _provision(tmp_path, UNREACHABLE)
    assert rc == ExitCode.HOST_UNREACHABLE == 3, out
    assert report["status"] == "unreachable" and report["exit_code"] == 3
    status = {name: host["status"] for name, host in report["hosts"].items()}
    assert status == dict.fromkeys(HEALTHY, "ok") | {DOWN: "unreachable"}
    for name in HEALTHY:  # the seven did all their work: the marker task and the env result
        assert report["hosts"][name]["counts"]["changed"] == 1
        assert report["hosts"][name]["env_action"] == "created"
    reason = report["hosts"][DOWN]["message"]
    assert "Failed to connect to the host via ssh" in reason and "127.0.0.1 port 1" in reason, reason
    assert "Connection refused" in reason
    assert report["hosts"][DOWN]["env_action"] is None
    assert f"UNREACHABLE: [{DOWN}]" in out and "1 unreachable" in out
    assert report["set_stats"]["gpulab"].keys() == set(HEALTHY)

    # The host is back (here: reached locally, like the others): the next run needs nothing else.
    rc, report, out = _provision(tmp_path, {"ansible_connection": "local"})
    assert rc == ExitCode.OK == 0, out
    assert report["status"] == "ok"
    assert {name: host["status"] for name, host in report["hosts"].items()} == dict.fromkeys(
        [*HEALTHY, DOWN], "ok"
    )
    assert report["hosts"][DOWN]["env_action"] == "created"
