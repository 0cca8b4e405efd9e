"""README command 1, exactly as written, in a fresh copy of the repository: the first ten minutes of a user.

`bash scripts/install.sh && .venv/bin/gpulab demo` runs in a copy of the working tree (what a clean clone in
CI is: tracked and new files, no .venv, no caches) with a fresh .venv and WITHOUT the test extras, a PATH
that does not hold this checkout's .venv, and only GPULAB_STATE_DIR / GPULAB_LAB_DIR pointing into a temp
dir. Its JSON report tells the three-node story (all nodes provisioned, one driver upgraded, only that node
rebuilt and re-verified): the story is tested here and nowhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, VENV_BIN, require_containers

README_COMMAND = "bash scripts/install.sh && .venv/bin/gpulab demo"
# Where the user's environment says how to reach the registries and who they are: passed through.
_PASS_THROUGH = ("HOME", "USER", "LANG", "LC_ALL", "http_proxy", "https_proxy", "no_proxy")


def fresh_copy(dest: Path) -> Path:
    """The working tree as a clean clone has it: `git ls-files -co --exclude-standard`, modes kept."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree, not yet in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def clean_env(tmp: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in _PASS_THROUGH or k.startswith("PIP_")}
    path = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if Path(p) != VENV_BIN]
    return keep | {
        "PATH": os.pathsep.join(path),
        "GPULAB_STATE_DIR": str(tmp / "runs"),
        "GPULAB_LAB_DIR": str(tmp / "lab"),
    }


def test_readme_command_text_is_the_one_tested() -> None:
    assert README_COMMAND in (REPO / "README.md").read_text()


@pytest.mark.containers
@pytest.mark.slow
def test_readme_command_1_on_a_fresh_clone(tmp_path: Path) -> None:
    require_containers()
    clone = fresh_copy(tmp_path / "clone")
    assert not (clone / ".venv").exists() and not (clone / ".cache").exists()
    env = clean_env(tmp_path)
    assert str(VENV_BIN) not in env["PATH"].split(os.pathsep)
    proc = subprocess.run(
        ["bash", "-c", README_COMMAND],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=float(os.environ.get("GPULAB_SCENARIO_TIMEOUT", "2400")),
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"README command 1 failed (rc {proc.returncode}):\n{output[-8000:]}"
    assert "SIMULATED" in output
    # No test extras in the fresh venv: the demo ran on what install.sh installs.
    assert not (clone / ".venv" / "bin" / "pytest").exists()
    assert not (clone / ".venv" / "bin" / "molecule").exists()
    # CI logs get a line per host per phase, not one per task (a demo printed 535 lines before).
    assert len(output.splitlines()) < 200, f"{len(output.splitlines())} lines of output"

    demo = json.loads((tmp_path / "demo" / "demo.json").read_text())  # where the demo writes it by default
    assert_demo_story(demo)
    from gpulab.lab.cluster import lab_id, running_containers

    assert running_containers(lab_id(tmp_path / "lab")) == []  # the demo took its lab down


def assert_demo_story(demo: dict[str, Any]) -> None:
    assert demo["simulated"] is True and demo["exit_code"] == 0 and demo["failed_step"] is None
    upgraded = demo["upgrade"]["node"]
    first, second = demo["runs"]["initial"], demo["runs"]["after_upgrade"]
    assert first["status"] == "ok" and second["status"] == "ok"
    assert set(first["hosts"]) == set(second["hosts"]) == {"gpu-l40s", "gpu-h100", "cpu-node"}
    for name, host in first["hosts"].items():
        assert host["env_action"] == "created", (name, host)
        assert host["mlp_check"]["passed"] is True, (name, host["mlp_check"])
        assert host["env_digest"], (name, host)
    # Each node's spec fits its driver (CUDA chosen per node, a CPU build on the CPU node).
    assert first["hosts"]["gpu-l40s"]["cuda_version"] == "12.9"
    assert first["hosts"]["gpu-h100"]["cuda_version"] == "13.0"
    assert first["hosts"]["cpu-node"]["cuda_version"] == ""
    for name, host in second["hosts"].items():
        before = first["hosts"][name]
        assert host["mlp_check"]["passed"] is True, (name, host["mlp_check"])
        # Only the rebuilt node trains again; the others keep their last passed check (issue 15).
        assert host["mlp_check"]["check_reused"] is (name != upgraded), (name, host["mlp_check"])
        if name == upgraded:
            assert host["driver_changed"] is True
            assert (host["previous_driver_version"], host["driver_version"]) == ("550.127.05", "595.80")
            assert host["cuda_version"] == "13.0"
            assert host["env_action"] == "updated", host
            assert host["env_digest"] != before["env_digest"]  # rebuilt from a new spec
            assert host["counts"]["changed"] > 0
        else:
            assert host["driver_changed"] is False, (name, host)
            assert host["env_action"] == "unchanged", (name, host)
            assert host["env_digest"] == before["env_digest"]
            assert host["counts"]["changed"] == 0, (name, host["changed_tasks"])
