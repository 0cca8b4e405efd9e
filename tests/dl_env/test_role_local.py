"""The real dl_env role (ansible-playbook on this machine, one local host) building with the lab's stand-in
conda, installed by its own installer into tmp: a full disk during a build (the envs directory on a small
tmpfs, so `conda env create` really hits ENOSPC; needs root to mount, skipped saying so elsewhere) and a
live build whose gpulab marker was corrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab.lab.installer import build_installer
from tests.conftest import REPO, VENV_BIN, repo_ansible_env

from ._load import dl_env_builds

B = dl_env_builds()
# One build of the spec below (a venv with pip) takes about 8 MiB: two do not fit in 12.
SMALL, ROOMY = "12m", "64m"


def _mount(path: Path, size: str, remount: bool = False) -> subprocess.CompletedProcess[str]:
    opts = f"remount,size={size}" if remount else f"size={size}"
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk-full test: mounting a small tmpfs needs root")
    mounted = _mount(disk, SMALL)
    if mounted.returncode != 0:
        pytest.skip(f"disk-full test: cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def conda_prefix(tmp_path: Path) -> Path:
    installer = build_installer(tmp_path, "py311_25.11.1-1", cache_dir=REPO / ".cache" / "gpulab-lab")
    prefix = tmp_path / "miniconda3"
    subprocess.run(["sh", str(installer), "-b", "-p", str(prefix)], check=True, capture_output=True)
    return prefix


def _provision(tmp: Path, prefix: Path, envs: Path, conda_packages: list[str]) -> dict[str, Any]:
    spec = tmp / "byo.yml"
    spec.write_text("name: dl\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n")
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "dl_env_name": "dl",
        "dl_env_conda_prefix": str(prefix),
        "dl_env_envs_dir": str(envs),
        "dl_env_spec_dir": str(tmp / "etc-gpulab"),
        "dl_env_base_file": str(spec),
        "dl_env_python_version": "3.11",
        # No MLP check backend: the fault here is the disk, and the stand-in env has no numpy or torch.
        "dl_env_framework": "tensorflow",
        "dl_env_conda_packages": conda_packages,
        "miniconda_conda_env": {"CONDA_PLUGINS_AUTO_ACCEPT_TOS": "yes"},
        # What cuda_check publishes on a host without a GPU.
        "cuda_check_cuda_version": "",
        "cuda_check_gpu_present": False,
        "cuda_check_driver_version": "",
    }
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node1": host}}}))
    play = [{"name": "Provision", "hosts": "all", "gather_facts": False, "roles": ["dl_env"]}]
    playbook = tmp / "provision.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = repo_ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.JSONDecoder().raw_decode(proc.stdout[start:])[0]
    results = [
        res
        for play_result in data["plays"]
        for task in play_result["tasks"]
        for res in task["hosts"].values()
    ]
    return {
        "stats": data["stats"]["node1"],
        "failed": [str(res.get("msg")) for res in results if res.get("failed")],
        "msgs": [str(res["msg"]) for res in results if isinstance(res.get("msg"), str)],
    }


@pytest.mark.slow
def test_disk_full_during_a_build_keeps_the_live_env_and_the_next_run_with_space_recovers(
    tmp_path: Path, small_disk: Path, conda_prefix: Path
) -> None:
    prefix = conda_prefix
    envs = small_disk / "envs"
    builds = envs / ".gpulab"

    first = _provision(tmp_path, prefix, envs, [])
    assert first["stats"]["failures"] == 0, first["failed"]
    live = Path(os.path.realpath(envs / "dl"))
    assert live.parent == builds and (live / "bin" / "python").exists()
    before = {
        p.relative_to(live): p.read_bytes() for p in live.rglob("*") if p.is_file() and not p.is_symlink()
    }

    # The spec changes: a second build beside the live one does not fit.
    second = _provision(tmp_path, prefix, envs, ["mkl"])
    assert second["stats"]["failures"] == 1
    message = second["failed"][-1]
    assert "disk full" in message and str(builds) in message and "node1" in message, message
    assert "the previous environment is untouched and still live" in message
    assert Path(os.path.realpath(envs / "dl")) == live and (live / "bin" / "python").exists()
    after = {
        p.relative_to(live): p.read_bytes() for p in live.rglob("*") if p.is_file() and not p.is_symlink()
    }
    assert after == before and B.live(envs, "dl")["marker"] == "" and B.is_complete(live)
    assert [p.name for p in builds.iterdir()] == [live.name]  # the half-made build is gone
    assert not os.path.lexists(envs / ".dl.gpulab-next")

    # Space again: the same spec builds, swaps in, and the previous build is kept (dl_env_keep_previous 1).
    assert _mount(small_disk, ROOMY, remount=True).returncode == 0
    third = _provision(tmp_path, prefix, envs, ["mkl"])
    assert third["stats"]["failures"] == 0, third["failed"]
    new = Path(os.path.realpath(envs / "dl"))
    assert new != live and new.parent == builds and (new / "bin" / "python").exists()
    assert sorted(p.name for p in builds.iterdir()) == sorted([live.name, new.name])
    assert list((new / "conda-meta").glob("mkl-*.json"))


@pytest.mark.slow
def test_a_live_build_with_a_corrupted_marker_is_built_again_and_kept(
    tmp_path: Path, conda_prefix: Path
) -> None:
    envs = tmp_path / "envs"
    builds = envs / ".gpulab"
    first = _provision(tmp_path, conda_prefix, envs, [])
    assert first["stats"]["failures"] == 0, first["failed"]
    old = Path(os.path.realpath(envs / "dl"))
    marker = old / B.MARKER
    spoiled = marker.read_bytes()[:30]  # truncated, as a disk fault or a crashed editor leaves it
    marker.write_bytes(spoiled)

    second = _provision(tmp_path, conda_prefix, envs, [])
    assert second["stats"]["failures"] == 0, second["failed"]
    said = [m for m in second["msgs"] if "building it again beside it instead of trusting it" in m]
    assert len(said) == 1 and f"its gpulab marker {marker} is not JSON (truncated or garbage)" in said[0], (
        said
    )
    new = Path(os.path.realpath(envs / "dl"))
    assert new == builds / f"{old.name}-rebuild" and (new / "bin" / "python").exists()
    assert B.live(envs, "dl")["marker"] == "" and B.is_complete(new)
    # The old build is not provably gpulab's now: kept as it is, and prune says why.
    assert old.is_dir() and marker.read_bytes() == spoiled
    assert any(f"not removing {old} (its gpulab marker" in m for m in second["msgs"]), second["msgs"]

    third = _provision(tmp_path, conda_prefix, envs, [])
    assert third["stats"]["failures"] == 0 and third["stats"]["changed"] == 0, third["msgs"]
    assert Path(os.path.realpath(envs / "dl")) == new and old.is_dir()
