"""The real dl_env role (ansible-playbook on this machine, one local host) building with the lab's stand-in
conda, installed by its own installer into tmp: a full disk during a build (the envs directory on a small
tmpfs, so `conda env create` really hits ENOSPC; needs root to mount, skipped saying so elsewhere), a
live build whose gpulab marker was corrupted, a conda-group user's symlink swap of the public name, the
driver changing between cuda_check and dl_env's MLP check (cuda_check and dl_env in one play, the lab's
fake nvidia-smi switched to another driver in between), and three envs on one host changed, failed,
broken and removed one at a time with scheduler hooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab.lab import nvidia_smi as lab_nvidia_smi
from gpulab.lab.installer import build_installer
from tests.conftest import REPO, VENV_BIN, on_mitogen, repo_ansible_env

from ._load import NUMPY_CHECK_VARS, dl_env_builds, local_env_vars, wheelhouse_environ

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


def _provision(
    tmp: Path,
    prefix: Path,
    envs: Path,
    conda_packages: list[str],
    plays: list[dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """One run of `plays` (default: the dl_env role alone) on host node1; `extra` overrides host vars."""
    host = {
        **local_env_vars(tmp),
        "dl_env_conda_prefix": str(prefix),
        "dl_env_envs_dir": str(envs),
        # No MLP check backend by default (the disk and marker faults need none); _numpy_check() adds one.
        "dl_env_framework": "tensorflow",
        "dl_env_pip_packages": [],
        "dl_env_conda_packages": conda_packages,
        "miniconda_conda_env": {"CONDA_PLUGINS_AUTO_ACCEPT_TOS": "yes"},
        # What cuda_check publishes on a host without a GPU.
        "cuda_check_cuda_version": "",
        "cuda_check_gpu_present": False,
        "cuda_check_driver_version": "",
        **extra,
    }
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node1": host}}}))
    play = plays or [{"name": "Provision", "hosts": "all", "gather_facts": False, "roles": ["dl_env"]}]
    playbook = tmp / "provision.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = repo_ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **on_mitogen(), **(environ or {}))
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), *args, str(playbook)]
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
        "raw": proc.stdout,
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


def _numpy_check() -> dict[str, Any]:
    """Host vars for an env whose MLP check really runs (numpy from the lab's wheelhouse, on the CPU)."""
    return {
        **NUMPY_CHECK_VARS,
        "miniconda_conda_env": {"CONDA_PLUGINS_AUTO_ACCEPT_TOS": "yes", **wheelhouse_environ()},
    }


def _record(build: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((build / B.CHECK_RECORD).read_text())
    return data


@pytest.mark.slow
def test_a_swapped_public_name_is_put_back_and_nothing_of_the_swapped_env_runs_as_root(
    tmp_path: Path, conda_prefix: Path
) -> None:
    """A conda-group user (mallory, here uid nobody) points the public name at her own env, with a copy of
    the live build's recorded digest so that it looks up to date. The next provision (as root) swaps the
    public name back to gpulab's build of the same spec, runs the MLP check there, and never runs her
    python; her env is left where it is (evidence for an admin)."""
    envs = tmp_path / "envs"
    check = _numpy_check()
    first = _provision(tmp_path, conda_prefix, envs, [], **check)
    assert first["stats"]["failures"] == 0, first["failed"]
    live = Path(os.path.realpath(envs / "dl"))
    assert _record(live)["passed"] is True

    pwned = tmp_path / "pwned-by-mallory"
    hers = tmp_path / "mallory-env"
    (hers / "bin").mkdir(parents=True)
    (hers / "conda-meta").mkdir()
    shutil.copy(live / B.DIGEST_FILE, hers / B.DIGEST_FILE)
    (hers / "bin" / "python").write_text(f'#!/bin/sh\nid -u > {pwned}\nexec {sys.executable} "$@"\n')
    for path in (hers, hers / "bin", hers / "bin" / "python", hers / "conda-meta", hers / B.DIGEST_FILE):
        os.chown(path, 65534, 65534)
        path.chmod(0o755)
    (envs / "dl").unlink()
    (envs / "dl").symlink_to(hers)

    second = _provision(tmp_path, conda_prefix, envs, [], **check)
    assert second["stats"]["failures"] == 0, second["failed"]
    assert not pwned.exists(), "root ran the swapped env's python"
    said = [m for m in second["msgs"] if "building it again beside it instead of trusting it" in m]
    assert len(said) == 1 and f"{hers} has no gpulab marker" in said[0], second["msgs"]
    assert Path(os.path.realpath(envs / "dl")) == live  # the kept build of this spec, not a new one
    assert sorted(p.name for p in (envs / ".gpulab").iterdir()) == [live.name]
    record = _record(live)
    assert record["passed"] is True and record["verified"] is True and record["backend"] == "numpy"
    assert B.live(envs, "dl")["marker"] == "" and B.is_complete(live)
    assert (hers / "bin" / "python").is_file() and not os.path.lexists(envs / ".dl.gpulab-next")

    third = _provision(tmp_path, conda_prefix, envs, [], **check)
    assert third["stats"]["failures"] == 0 and third["stats"]["changed"] == 0, third["msgs"]
    assert not pwned.exists()


DRIVER_BEFORE, DRIVER_AFTER = "h100-590.48.01", "l40s-595.80"


@pytest.mark.slow
def test_a_driver_change_during_a_run_is_noticed_and_checked_again_by_the_next_run(
    tmp_path: Path, conda_prefix: Path
) -> None:
    """cuda_check reads driver 590.48.01; before dl_env's MLP check the lab's nvidia-smi answers for
    595.80 (as after a driver upgrade during the run). The run cannot tell which driver its check ran on:
    it stamps the check with the driver cuda_check read. The next run reads 595.80, does not reuse that
    check (the stamp differs), checks again and stamps 595.80; the run after reuses it."""
    sysroot = tmp_path / "sysroot"
    lab_nvidia_smi.stage(sysroot, DRIVER_AFTER)
    lab_nvidia_smi.stage(sysroot, DRIVER_BEFORE)  # both staged; the profile file names the one answering
    profile = sysroot / lab_nvidia_smi.PROFILE_FILE
    assert profile.read_text().strip() == DRIVER_BEFORE
    (tmp_path / "facts.d").mkdir()
    gpu = {
        "cuda_check_nvidia_smi_path": str(sysroot / "usr" / "bin" / "nvidia-smi"),
        "cuda_check_nvidia_smi_timeout": 30,
        "cuda_check_proc_version_path": str(tmp_path / "no-proc-version"),
        "cuda_check_test_fact_dir": str(tmp_path / "facts.d"),
    }
    tasks: list[dict[str, Any]] = [
        {
            "name": "Gather the local facts as site.yml does",
            "ansible.builtin.setup": {
                "gather_subset": ["!all", "!min", "local"],
                "fact_path": "{{ cuda_check_test_fact_dir }}",
            },
        },
        {"name": "Read the GPUs and driver", "ansible.builtin.include_role": {"name": "cuda_check"}},
        {
            "name": "The driver changes now (the fake nvidia-smi answers for another one)",
            "ansible.builtin.copy": {"content": DRIVER_AFTER + "\n", "dest": str(profile), "mode": "0644"},
            "when": "test_change_driver | default(false) | bool",
        },
        {"name": "Build and check the environment", "ansible.builtin.include_role": {"name": "dl_env"}},
    ]
    plays = [{"name": "Provision", "hosts": "all", "gather_facts": False, "tasks": tasks}]
    envs = tmp_path / "envs"

    def run(change: bool) -> dict[str, Any]:
        return _provision(
            tmp_path,
            conda_prefix,
            envs,
            [],
            plays=plays,
            environ={"GPULAB_LAB_NVIDIA_SMI_SYSROOT": str(sysroot)},
            args=("-e", "__cuda_check_fact_dir={{ cuda_check_test_fact_dir }}"),
            test_change_driver=change,
            **gpu,
            **_numpy_check(),
        )

    first = run(change=True)
    assert first["stats"]["failures"] == 0, first["failed"]
    live = Path(os.path.realpath(envs / "dl"))
    stamped = _record(live)
    # The check passed (on the new driver) but is stamped with the driver cuda_check read at the start.
    assert stamped["passed"] is True and stamped["driver"] == "590.48.01"
    assert profile.read_text().strip() == DRIVER_AFTER

    second = run(change=False)
    assert second["stats"]["failures"] == 0, second["failed"]
    assert "the driver changed since its last check (590.48.01 -> 595.80)" in second["raw"]
    rechecked = _record(live)
    assert Path(os.path.realpath(envs / "dl")) == live  # same CUDA line (13.0): checked again, not rebuilt
    assert rechecked["passed"] is True and rechecked["driver"] == "595.80"
    assert rechecked["epoch"] > stamped["epoch"]

    third = run(change=False)
    assert third["stats"]["failures"] == 0 and third["stats"]["changed"] == 0, third["msgs"]
    assert _record(live) == rechecked  # the check on 595.80 holds: reused, not run again


def _links(envs: Path, names: list[str]) -> list[str]:
    return [os.readlink(envs / name) for name in names]


@pytest.mark.slow
def test_several_envs_on_one_host_change_fail_and_go_one_at_a_time(
    tmp_path: Path, conda_prefix: Path
) -> None:
    """Three environments on one host, one role run each step (as `gpulab provision` runs): changing one
    rebuilds only it; the node is drained before a new build is checked and resumed after; a build whose
    MLP check fails keeps the live one and leaves the node drained; a spec that cannot be built fails only
    its env, which keeps its previous build; removal is refused while a process uses the env (naming it) and
    for a directory gpulab did not create, and goes through once the process is gone, while the next run
    with a passing spec builds, checks and resumes the node. (Moved here from the Molecule scenario
    dl_env/several_envs, which keeps what needs a node of its own: docs/testing.md.)"""
    envs = tmp_path / "envs"
    log = tmp_path / "scheduler.log"
    hook = 'echo "{} $1" >> ' + str(log)
    names = ["steady", "spare", "changing"]
    drained_resumed = ["drain node1", "resume node1"]
    common = {
        **_numpy_check(),
        "dl_env_keep_previous": 1,
        "dl_env_drain_command": ["/bin/sh", "-c", hook.format("drain"), "sh", "{{ inventory_hostname }}"],
        "dl_env_resume_command": ["/bin/sh", "-c", hook.format("resume"), "sh", "{{ inventory_hostname }}"],
        # `changing` checks on dl_env_check_device; the cpu_only two always on the CPU.
        "dl_env_envs": [
            {"name": "steady", "cpu_only": True},
            {"name": "spare", "cpu_only": True},
            {"name": "changing"},
        ],
    }

    def run(host_envs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        host = {**common, "dl_env_host_envs": host_envs, **extra}
        return _provision(tmp_path, conda_prefix, envs, [], **host)

    def scheduler() -> list[str]:
        return log.read_text().splitlines()

    first = run([])
    assert first["stats"]["failures"] == 0, first["failed"]
    built = _links(envs, names)
    assert [Path(p).parent for p in built] == [envs / ".gpulab"] * 3 and scheduler() == drained_resumed

    # Change one: only it is rebuilt, drained before its check and resumed after.
    changed = run([{"name": "changing", "conda_packages": ["nccl"]}])
    assert changed["stats"]["failures"] == 0, changed["failed"]
    after_change = _links(envs, names)
    assert after_change[:2] == built[:2] and after_change[2] != built[2]
    assert scheduler() == drained_resumed * 2

    # Its next build fails its MLP check (numpy cannot run on cuda): the live build stays, so does the drain.
    failing = {"name": "changing", "conda_packages": ["nccl", "magma"]}
    failed_check = run([failing], dl_env_check_device="cuda")
    assert failed_check["stats"]["failures"] == 1
    message = failed_check["failed"][-1]
    assert "The MLP check failed in the new environment" in message, message
    assert "The node stays drained in its scheduler" in message, message
    assert _links(envs, names) == after_change
    assert scheduler() == drained_resumed * 2 + ["drain node1"]

    # A spec that cannot be built fails only its env, which keeps its previous (working) build.
    broken = run(
        [
            {"name": "spare", "pip_packages": ["gpulab-no-such-package-anywhere"]},
            {"name": "changing", "conda_packages": ["nccl"]},
        ]
    )
    assert broken["stats"]["failures"] == 1
    message = broken["failed"][-1]
    assert "Building environment spare" in message and "gpulab-no-such-package-anywhere" in message, message
    assert "the previous environment is untouched" in message, message
    assert "steady" not in message and "changing" not in message, message
    assert _links(envs, names) == after_change
    check = [tmp_path / "etc-gpulab" / "mlp_check.py", "--json", "--device", "cpu", "--backend", "numpy"]
    kept = subprocess.run(
        [envs / "spare" / "bin" / "python", "-I", *check], capture_output=True, text=True, timeout=300
    )
    assert json.loads(kept.stdout)["passed"] is True, kept.stdout + kept.stderr

    # Removal: refused while a process uses the env, and for a directory gpulab did not create.
    spare_build = Path(os.path.realpath(envs / "spare"))
    spare_absent = {"name": "spare", "state": "absent"}
    user = subprocess.Popen(
        [envs / "spare" / "bin" / "python", "-c", "import numpy, time; time.sleep(600)"], cwd=tmp_path
    )
    try:
        maps = Path(f"/proc/{user.pid}/maps")
        for _ in range(300):  # the build's numpy is mapped once it is imported
            if str(spare_build) in maps.read_text():
                break
            time.sleep(0.1)
        (envs / "mine" / "conda-meta").mkdir(parents=True)
        unchanged = {"name": "changing", "conda_packages": ["nccl"]}
        refused = run([spare_absent, unchanged, {"name": "mine", "state": "absent"}])
        assert refused["stats"]["failures"] == 1
        message = refused["failed"][-1]
        assert f"environment spare is in use by pid {user.pid}" in message, message
        assert "time.sleep(600)" in message, message
        assert "mine is a directory gpulab did not create" in message, message
        assert (envs / "spare" / "bin" / "python").exists() and (envs / "mine").is_dir()
    finally:
        user.kill()
        user.wait()

    # The process gone: the next run removes spare and leaves nothing of it, and builds the failed spec of
    # `changing` again, now passing (checked on the CPU): drained again, checked, swapped in, resumed.
    removed = run([spare_absent, failing])
    assert removed["stats"]["failures"] == 0, removed["failed"]
    left = [p for d in (envs, envs / ".gpulab", tmp_path / "etc-gpulab") for p in d.glob("spare*")]
    assert left == [] and os.readlink(envs / "steady") == after_change[0]
    assert os.readlink(envs / "changing") not in after_change
    assert scheduler() == drained_resumed * 2 + ["drain node1"] + drained_resumed
