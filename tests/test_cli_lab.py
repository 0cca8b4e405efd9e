"""`gpulab` against real containers: a healthy, a failing and an unreachable host in one run.

Uses the lab (`gpulab lab up --connection podman`) for the nodes and `gpulab render` for the run, which
reads every node's GPUs and renders its environment.yml on the controller without changing the nodes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import lab_up, require_containers, run_gpulab


def _gpulab(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gpulab(args, env, timeout=900)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    require_containers()
    nodes = "cli-ok=l40s-595.80,cli-cpu=none,cli-broken=driver-broken"
    # The lab's other connection, `podman exec`: the demo tests run the default, SSH.
    args = ["--nodes", nodes, "--connection", "podman"]
    with lab_up(tmp_path_factory.mktemp("cli-lab"), args) as (env, out):
        assert "SIMULATED" in out
        inventory = Path(_gpulab(["lab", "inventory"], env).stdout.strip())
        assert inventory.is_file()
        yield env, inventory


@pytest.mark.containers
@pytest.mark.slow
def test_render_healthy_hosts_exit_0_and_write_specs(
    lab: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, inventory = lab
    out = tmp_path / "rendered"
    report = tmp_path / "report.json"
    proc = _gpulab(
        [
            "render",
            "-i",
            str(inventory),
            "--limit",
            "cli-ok,cli-cpu",
            "--output",
            str(out),
            "--report",
            str(report),
        ],
        env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["status"] == "ok" and set(data["hosts"]) == {"cli-ok", "cli-cpu"}
    assert data["hosts"]["cli-ok"]["cuda_version"] == "13.0"
    assert data["hosts"]["cli-ok"]["driver_version"] == "595.80"
    assert data["hosts"]["cli-cpu"]["gpu_present"] is False
    gpu_spec = yaml.safe_load((out / "cli-ok" / "environment.yml").read_text())
    cpu_spec = yaml.safe_load((out / "cli-cpu" / "environment.yml").read_text())
    assert "cuda-version=13.0" in gpu_spec["dependencies"]
    assert "pytorch-cpu" in cpu_spec["dependencies"]


@pytest.mark.containers
@pytest.mark.slow
def test_failing_host_among_healthy_exits_2(lab: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, inventory = lab
    report = tmp_path / "report.json"
    proc = _gpulab(
        ["render", "-i", str(inventory), "--output", str(tmp_path / "r"), "--report", str(report)], env
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["hosts"]["cli-ok"]["status"] == "ok"
    broken = data["hosts"]["cli-broken"]
    assert broken["status"] == "failed"
    assert "communicate with the NVIDIA driver" in broken["message"]
    assert "cli-broken" in proc.stdout  # the summary table names it


@pytest.mark.containers
@pytest.mark.slow
def test_unreachable_host_among_healthy_exits_3(lab: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, inventory = lab
    ghost = tmp_path / "ghost.yml"
    ghost.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"cli-ghost": {"ansible_host": "gpulab-lab-no-such-node"}},
                    "vars": {"ansible_connection": "containers.podman.podman", "ansible_user": "admin"},
                }
            }
        )
    )
    report = tmp_path / "report.json"
    proc = _gpulab(
        [
            "render",
            "-i",
            str(inventory),
            "-i",
            str(ghost),
            "--limit",
            "cli-ok,cli-ghost",
            "--output",
            str(tmp_path / "r"),
            "--report",
            str(report),
        ],
        env,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["hosts"]["cli-ghost"]["status"] == "unreachable"
    assert data["hosts"]["cli-ok"]["status"] == "ok"


@pytest.mark.containers
def test_lab_refuses_a_second_lab_in_the_same_place(lab: tuple[dict[str, str], Path]) -> None:
    env, _ = lab
    proc = _gpulab(["lab", "up", "--nodes", "x=none"], env)
    assert proc.returncode == 5
    assert "already up" in proc.stdout and "gpulab lab down" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
