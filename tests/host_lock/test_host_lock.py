"""The host_lock role and playbooks/cleanup.yml, run by real ansible-playbook against this machine.

Each case is a local host of a generated inventory with its own lock directory and boot-id file (the boot
id must be a file the test can change: containers and this test share the kernel's). Concurrent runs are
real concurrent ansible-playbook processes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, repo_ansible_env
from tests.dl_env._load import make_build

HERE = Path(__file__).resolve().parent
CASES = HERE / "playbooks" / "lock_cases.yml"
HOLD = HERE / "playbooks" / "hold.yml"
CLEANUP = REPO / "playbooks" / "cleanup.yml"
BOOT = "6f1c2d4e-0000-4000-8000-00000000b001"


def _host(tmp: Path, name: str, **extra: Any) -> dict[str, Any]:
    (tmp / name).mkdir(exist_ok=True)
    boot = tmp / name / "boot_id"
    if not boot.exists():
        boot.write_text(BOOT + "\n")
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "host_lock_dir": str(tmp / name / "run-gpulab"),
        "host_lock_boot_id_file": str(boot),
        "host_lock_poll": 1,
        "host_lock_wait": 1,
        **extra,
    }


def _plant(tmp: Path, name: str, holder: dict[str, Any] | str) -> Path:
    lock = tmp / name / "run-gpulab" / "lock"
    lock.mkdir(parents=True)
    (tmp / name / "run-gpulab").chmod(0o700)
    text = holder if isinstance(holder, str) else json.dumps(holder)
    (lock / "holder.json").write_text(text)
    return lock


def _holder(**extra: Any) -> dict[str, Any]:
    return {
        "run_id": "20261205T060000Z-gpu-admin-laptop-4242",
        "controller": "gpu-admin-laptop",
        "controller_pid": 4242,
        "controller_pid_start": "12345",
        "user": "alice",
        "play": "Provision GPU nodes",
        "started": "2026-12-05T06:00:00+00:00",
        "boot_id": BOOT,
        **extra,
    }


def _playbook(tmp: Path, hosts: dict[str, Any], playbook: Path, *args: str, background: bool = False) -> Any:
    inventory = tmp / f"inventory-{playbook.stem}-{time.monotonic_ns()}.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    env = repo_ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORKS="10")
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), *args, str(playbook)]
    if background:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    return _parse(proc.stdout, proc.stderr)


def _parse(stdout: str, stderr: str) -> dict[str, Any]:
    start = stdout.find("{")
    assert start >= 0, stdout + stderr
    data, _ = json.JSONDecoder().raw_decode(stdout[start:])
    out: dict[str, Any] = {"failed": {}, "changed": {}, "msgs": {}, "stats": data["stats"], "raw": stdout}
    for play in data["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            for host, res in task["hosts"].items():
                if res.get("failed") and not res.get("skipped"):
                    out["failed"].setdefault(host, str(res.get("msg", res)))
                if res.get("changed"):
                    out["changed"].setdefault(host, []).append(name)
                for item in [res, *res.get("results", [])]:
                    if isinstance(item, dict) and isinstance(item.get("msg"), str):
                        out["msgs"].setdefault(host, []).append(item["msg"])
    return out


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("host-lock")
    here = socket.gethostname()
    hosts = {
        "free": _host(tmp, "free"),
        "reboot": _host(tmp, "reboot"),
        "dead_pid": _host(tmp, "dead_pid"),
        "other_controller": _host(tmp, "other_controller"),
        "other_controller_break": _host(tmp, "other_controller_break", host_lock_break=True),
        "corrupt": _host(tmp, "corrupt"),
        "stop": _host(tmp, "stop", gpulab_stop_file=str(tmp / "stop" / "stop-requested")),
        "loose_dir": _host(tmp, "loose_dir"),
    }
    _plant(tmp, "reboot", _holder(boot_id="earlier-boot"))
    _plant(tmp, "dead_pid", _holder(controller=here, controller_pid=_dead_pid()))
    _plant(tmp, "other_controller", _holder())
    _plant(tmp, "other_controller_break", _holder())
    _plant(tmp, "corrupt", "{not json")
    (tmp / "stop" / "stop-requested").write_text("")
    (tmp / "loose_dir" / "run-gpulab").mkdir(mode=0o777)
    (tmp / "loose_dir" / "run-gpulab").chmod(0o777)
    result = _playbook(tmp, hosts, CASES, "-e", "gpulab_run_id=run-matrix")
    return {"tmp": tmp, **result}


def test_free_lock_is_taken_with_its_holder_and_released(matrix: dict[str, Any]) -> None:
    assert "free" not in matrix["failed"], matrix["failed"].get("free")
    held = json.loads(next(m for m in matrix["msgs"]["free"] if m.startswith("{")))
    assert held["run_id"] == "run-matrix"
    assert held["boot_id"] == BOOT
    assert held["controller"] == socket.gethostname()
    assert held["play"] == "Hold the host lock around a step"
    assert {"controller_pid", "controller_pid_start", "user", "started"} <= set(held)
    parent = matrix["tmp"] / "free" / "run-gpulab"
    assert oct(parent.stat().st_mode & 0o777) == "0o700"
    assert not (parent / "lock").exists()
    # Taking and releasing the lock is no change to the host: a re-run stays changed=0.
    assert "free" not in matrix["changed"], matrix["changed"]["free"]


def test_nested_take_is_counted_and_only_the_outermost_release_removes_it(matrix: dict[str, Any]) -> None:
    msgs = matrix["msgs"]["free"]
    assert "held after the inner release: True" in msgs


def test_lock_from_an_earlier_boot_is_broken(matrix: dict[str, Any]) -> None:
    assert "reboot" not in matrix["failed"], matrix["failed"].get("reboot")
    assert any("host rebooted since" in m and "alice@gpu-admin-laptop" in m for m in matrix["msgs"]["reboot"])
    assert not (matrix["tmp"] / "reboot" / "run-gpulab" / "lock").exists()


def test_lock_of_a_killed_controller_process_is_broken(matrix: dict[str, Any]) -> None:
    assert "dead_pid" not in matrix["failed"], matrix["failed"].get("dead_pid")
    assert any("controller process is gone" in m for m in matrix["msgs"]["dead_pid"])


def test_lock_held_on_another_controller_fails_naming_the_holder(matrix: dict[str, Any]) -> None:
    msg = matrix["failed"]["other_controller"]
    for needle in (
        "20261205T060000Z-gpu-admin-laptop-4242",
        "alice@gpu-admin-laptop",
        "pid 4242",
        "2026-12-05T06:00:00+00:00",
        "host_lock_break=true",
        "other_controller",
    ):
        assert needle in msg, (needle, msg)
    held = json.loads(
        (matrix["tmp"] / "other_controller" / "run-gpulab" / "lock" / "holder.json").read_text()
    )
    assert held == _holder()


def test_host_lock_break_takes_over_once(matrix: dict[str, Any]) -> None:
    assert "other_controller_break" not in matrix["failed"]
    assert any("host_lock_break is set" in m for m in matrix["msgs"]["other_controller_break"])


def test_unreadable_holder_is_stale(matrix: dict[str, Any]) -> None:
    assert "corrupt" not in matrix["failed"], matrix["failed"].get("corrupt")
    assert any("unreadable" in m for m in matrix["msgs"]["corrupt"])


def test_stop_request_fails_the_host_and_releases_the_lock(matrix: dict[str, Any]) -> None:
    assert matrix["failed"]["stop"] == "stop: stop requested (gpulab was interrupted)"
    assert not (matrix["tmp"] / "stop" / "run-gpulab" / "lock").exists()
    assert "free" not in matrix["failed"]  # the same checkpoint let hosts without a stop file through


def test_a_loose_lock_directory_is_tightened(matrix: dict[str, Any]) -> None:
    assert "loose_dir" not in matrix["failed"]
    assert oct((matrix["tmp"] / "loose_dir" / "run-gpulab").stat().st_mode & 0o777) == "0o700"


def test_check_mode_reads_the_lock_and_never_takes_it(tmp_path: Path) -> None:
    hosts = {"check_free": _host(tmp_path, "check_free"), "check_busy": _host(tmp_path, "check_busy")}
    _plant(tmp_path, "check_busy", _holder())
    result = _playbook(tmp_path, hosts, CASES, "--check", "-e", "gpulab_run_id=run-check")
    assert result["failed"] == {}
    assert not (tmp_path / "check_free" / "run-gpulab").exists()
    assert any("held now by run 20261205T060000Z" in m for m in result["msgs"]["check_busy"])
    assert (
        json.loads((tmp_path / "check_busy" / "run-gpulab" / "lock" / "holder.json").read_text()) == _holder()
    )


@pytest.fixture()
def holding(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any], subprocess.Popen[str]]]:
    hosts = {"node": _host(tmp_path, "node", hold_release_file=str(tmp_path / "release"))}
    first = _playbook(tmp_path, hosts, HOLD, "-e", "gpulab_run_id=run-first", background=True)
    lock = tmp_path / "node" / "run-gpulab" / "lock" / "holder.json"
    deadline = time.monotonic() + 120
    while not lock.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.2)
    try:
        yield tmp_path, hosts, first
    finally:
        (tmp_path / "release").write_text("")
        first.wait(timeout=120)


def test_second_concurrent_provision_waits_then_names_the_holder(
    holding: tuple[Path, dict[str, Any], subprocess.Popen[str]],
) -> None:
    tmp, hosts, first = holding
    result = _playbook(tmp, hosts, HOLD, "-e", "gpulab_run_id=run-second", "-e", "host_lock_wait=2")
    msg = result["failed"]["node"]
    assert "run run-first by" in msg and f"@{socket.gethostname()}" in msg and f"pid {first.pid}" in msg
    assert "Waited 2" in msg
    assert (
        json.loads((tmp / "node" / "run-gpulab" / "lock" / "holder.json").read_text())["run_id"]
        == "run-first"
    )


def test_second_concurrent_provision_gets_the_lock_when_the_first_releases(
    holding: tuple[Path, dict[str, Any], subprocess.Popen[str]],
) -> None:
    tmp, hosts, first = holding
    hosts["node"]["hold_release_file"] = str(tmp / "release-second")
    (tmp / "release-second").write_text("")
    second = _playbook(
        tmp, hosts, HOLD, "-e", "gpulab_run_id=run-second", "-e", "host_lock_wait=120", background=True
    )
    time.sleep(3)
    assert second.poll() is None, "the second run must wait while the first holds the lock"
    (tmp / "release").write_text("")
    out, err = second.communicate(timeout=180)
    result = _parse(out, err)
    assert result["failed"] == {}, result["failed"]
    assert first.wait(timeout=60) == 0
    assert not (tmp / "node" / "run-gpulab" / "lock").exists()


@pytest.fixture()
def world_path() -> Iterator[Path]:
    """A directory 'nobody' can reach (pytest's own tmp tree is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="gpulab-host-lock-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_non_root_cannot_take_the_lock(world_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test runs the playbook as 'nobody' and needs root to switch to it")
    work = world_path / "nobody"
    work.mkdir()
    work.chmod(0o777)
    host = _host(world_path, "as_nobody")
    host["ansible_python_interpreter"] = "/usr/bin/python3"
    inventory = world_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"as_nobody": host}}}))
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    env = repo_ansible_env(
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PYTHONPATH=str(site),
        HOME=str(work),
        ANSIBLE_LOCAL_TEMP=str(work / "local"),
        ANSIBLE_REMOTE_TEMP=str(work / "remote"),
    )
    argv = ["runuser", "-u", "nobody", "--", "/usr/bin/python3", str(VENV_BIN / "ansible-playbook")]
    argv += ["-i", str(inventory), "-e", "gpulab_run_id=run-nobody", str(CASES)]
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    result = _parse(proc.stdout, proc.stderr)
    msg = result["failed"]["as_nobody"]
    assert "only root can take or release the gpulab host lock" in msg and "become" in msg
    assert not (world_path / "as_nobody" / "run-gpulab").exists()


def _cleanup_hosts(tmp: Path, *names: str) -> dict[str, Any]:
    """The same inventory a provision uses (cleanup resolves the miniconda inputs as a run would)."""
    return {
        name: _host(
            tmp,
            name,
            miniconda_download_dir=str(tmp / name / "dl"),
            miniconda_accept_tos=True,
            miniconda_prefix=str(tmp / name / "miniconda3"),
        )
        for name in names
    }


def test_cleanup_releases_the_interrupted_runs_lock_and_removes_its_downloads(tmp_path: Path) -> None:
    here = socket.gethostname()
    hosts = _cleanup_hosts(tmp_path, "ours", "theirs", "clean")
    # The interrupted run: its controller process may still be alive (gpulab runs cleanup itself).
    _plant(tmp_path, "ours", _holder(run_id="run-interrupted", controller=here, controller_pid=os.getpid()))
    _plant(tmp_path, "theirs", _holder())
    for name in hosts:
        (tmp_path / name / "dl" / "gpulab-miniconda.abc123").mkdir(parents=True)
        (tmp_path / name / "dl" / "gpulab-miniconda.abc123" / "Miniconda3.sh").write_text("partial")
        (tmp_path / name / "dl" / "someone-elses.tmp").mkdir()
    shutil.rmtree(tmp_path / "clean" / "dl" / "gpulab-miniconda.abc123")
    result = _playbook(tmp_path, hosts, CLEANUP, "-e", "gpulab_run_id=run-interrupted")
    assert {h: s["failures"] for h, s in result["stats"].items()} == dict.fromkeys(hosts, 0), result["failed"]
    assert not (tmp_path / "ours" / "run-gpulab" / "lock").exists()
    assert not (tmp_path / "ours" / "dl" / "gpulab-miniconda.abc123").exists()
    assert (tmp_path / "ours" / "dl" / "someone-elses.tmp").is_dir()
    assert result["stats"]["ours"]["changed"] >= 1
    # Another live run holds "theirs": its lock and downloads are that run's, left alone.
    assert (tmp_path / "theirs" / "dl" / "gpulab-miniconda.abc123").is_dir()
    assert json.loads((tmp_path / "theirs" / "run-gpulab" / "lock" / "holder.json").read_text()) == _holder()
    assert any("not cleaned" in m and "alice@gpu-admin-laptop" in m for m in result["msgs"]["theirs"])
    assert result["stats"]["clean"]["changed"] == 0
    again = _playbook(tmp_path, hosts, CLEANUP, "-e", "gpulab_run_id=run-interrupted")
    assert again["stats"]["ours"]["changed"] == 0


def test_cleanup_removes_the_half_made_env_builds_a_killed_run_left(tmp_path: Path) -> None:
    """Run R was killed while dl_env built: its build marked unfinished (killed after `mark`), a build
    with no marker and no recorded digest (killed inside `conda env create`) and the temporary
    `.dl.gpulab-next` link (killed between link and swap). cleanup.yml removes those; the live build, a
    kept finished one and a user's `-adopted` stay. A host another live run holds is not touched."""
    here = socket.gethostname()
    hosts = _cleanup_hosts(tmp_path, "ours", "theirs")
    _plant(tmp_path, "ours", _holder(run_id="run-R", controller=here, controller_pid=os.getpid()))
    _plant(tmp_path, "theirs", _holder())
    made: dict[str, dict[str, Path]] = {}
    for name in hosts:
        envs = tmp_path / name / "miniconda3" / "envs"
        builds = envs / ".gpulab"
        made[name] = {
            "live": make_build(builds, f"dl-{'a' * 12}", "dl", "a" * 64, run_id="run-Q"),
            "kept": make_build(builds, f"dl-{'b' * 12}", "dl", "b" * 64, run_id="run-P"),
            "unfinished": make_build(
                builds, f"dl-{'c' * 12}", "dl", "c" * 64, complete=False, run_id="run-R"
            ),
            "in_create": make_build(builds, f"dl-cpu-{'d' * 12}", None, "", complete=False),
            "adopted": make_build(builds, "dl-adopted", None, "", complete=False),
        }
        (envs / "dl").symlink_to(made[name]["live"])
        (envs / ".dl.gpulab-next").symlink_to(made[name]["unfinished"])
    result = _playbook(tmp_path, hosts, CLEANUP, "-e", "gpulab_run_id=run-R")
    assert {h: s["failures"] for h, s in result["stats"].items()} == dict.fromkeys(hosts, 0), result["failed"]
    ours = made["ours"]
    envs = tmp_path / "ours" / "miniconda3" / "envs"
    assert not ours["unfinished"].exists() and not ours["in_create"].exists()
    assert not os.path.lexists(envs / ".dl.gpulab-next")
    assert ours["live"].is_dir() and ours["kept"].is_dir() and ours["adopted"].is_dir()
    assert os.path.realpath(envs / "dl") == str(ours["live"]) and (envs / "dl" / "bin" / "python").exists()
    assert (
        "gpulab.gpulab.dl_env : cleanup | Remove half-made builds and temporary links"
        in result["changed"]["ours"]
    )
    # Another live run holds "theirs": everything of it is that run's, left as it was.
    assert all(path.is_dir() for path in made["theirs"].values())
    assert os.path.lexists(tmp_path / "theirs" / "miniconda3" / "envs" / ".dl.gpulab-next")
    assert any("not cleaned" in m for m in result["msgs"]["theirs"])
    again = _playbook(tmp_path, hosts, CLEANUP, "-e", "gpulab_run_id=run-R")
    assert again["stats"]["ours"]["changed"] == 0 and again["stats"]["ours"]["failures"] == 0
    assert ours["live"].is_dir() and ours["kept"].is_dir()
