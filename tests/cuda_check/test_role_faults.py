"""GPU-side faults of the fault matrix (docs/reliability.md): nvidia-smi hanging, a corrupted local fact, the
states that must fail a host (broken driver, lost GPU, pending reboot, a pin the driver cannot run, a missing
GPU that is required) and a driver upgraded between two runs.

The module is run directly and through Ansible; the role by real ansible-playbook on this machine
(ansible_connection=local), nvidia-smi being the lab's fake or a stand-in script that never answers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpulab.lab import nvidia_smi as lab_nvidia_smi
from tests.conftest import on_mitogen

from ._load import adhoc, gpu_facts, run_playbook

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "role_run.yml"
PROFILE = "h100-590.48.01"
DRIVER = "590.48.01"
# Margin over the timeout for starting, killing and reaping on a busy 2-core machine.
MARGIN = 8


def _hanging_nvidia_smi(path: Path, pids: Path) -> None:
    """An nvidia-smi that never answers: it ignores SIGTERM and leaves a child holding its output pipes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        "trap '' TERM INT HUP\n"
        f'echo $$ >> "{pids}"\n'
        "sleep 100000 &\n"
        f'echo $! >> "{pids}"\n'
        "wait\n",
        encoding="utf-8",
    )
    path.chmod(0o755)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _assert_all_gone(pids: Path) -> None:
    started = [int(line) for line in pids.read_text(encoding="utf-8").split()]
    assert len(started) >= 2, "the stand-in did not start its child"
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in started if _alive(pid)] == [], "nvidia-smi or its child was left running"


def test_a_hung_nvidia_smi_and_its_child_are_killed_at_the_timeout(tmp_path: Path) -> None:
    smi, pids = tmp_path / "bin" / "nvidia-smi", tmp_path / "pids"
    _hanging_nvidia_smi(smi, pids)
    start = time.monotonic()
    with pytest.raises(gpu_facts.NvidiaSmiError) as err:
        gpu_facts.gather(lambda argv: gpu_facts.run_bounded(argv, 1), str(smi), "", "")
    elapsed = time.monotonic() - start
    assert err.value.state == "timeout"
    assert f"`{smi} --query-gpu=" in err.value.msg and "did not answer within 1 seconds" in err.value.msg
    assert elapsed < 1 + MARGIN
    _assert_all_gone(pids)


def test_an_nvidia_smi_that_cannot_run_is_an_answer_not_a_crash(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n", encoding="utf-8")  # not executable
    rc, _, err = gpu_facts.run_bounded([str(smi), "-q"], 5)
    assert rc == 126 and "Permission denied" in err


@pytest.mark.slow
def test_the_module_run_by_ansible_fails_with_state_timeout_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    smi, pids = tmp_path / "bin" / "nvidia-smi", tmp_path / "pids"
    _hanging_nvidia_smi(smi, pids)
    start = time.monotonic()
    result = adhoc(f"nvidia_smi_path={smi} timeout=2", {}, timeout=120)
    elapsed = time.monotonic() - start
    assert result["failed"] is True and result["nvidia_smi_state"] == "timeout"
    assert f"`{smi} --query-gpu=" in result["msg"] and "within 2 seconds (killed it)" in result["msg"]
    # ansible's own start-up is most of it; without the kill it would wait for the child for ever
    assert elapsed < 2 + MARGIN + 20
    _assert_all_gone(pids)


# ---- the role, by ansible-playbook on this machine ----


def _stage(root: Path) -> Path:
    """The lab's fake nvidia-smi (an H100 on driver 590.48.01) staged under root; returns its path."""
    lab_nvidia_smi.stage(root, PROFILE)
    return root / "usr" / "bin" / "nvidia-smi"


def _host(root: Path, smi: Path) -> dict[str, Any]:
    (root / "facts.d").mkdir(parents=True, exist_ok=True)
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "cuda_check_nvidia_smi_path": str(smi),
        "cuda_check_nvidia_smi_timeout": 2,
        "cuda_check_proc_version_path": str(root / "no-proc-version"),
        "cuda_check_test_fact_dir": str(root / "facts.d"),
    }


def _run_role(tmp: Path, hosts: dict[str, Any], sysroot: Path) -> dict[str, Any]:
    # The role's fact directory is a constant (/etc/ansible/facts.d); each case host gets its own here.
    return run_playbook(
        PLAYBOOK,
        tmp,
        hosts,
        "-e",
        "__cuda_check_fact_dir={{ cuda_check_test_fact_dir }}",
        env={"GPULAB_LAB_NVIDIA_SMI_SYSROOT": str(sysroot), **on_mitogen()},
    )


@pytest.mark.slow
def test_the_role_on_a_hung_nvidia_smi_fails_the_host_changes_nothing_and_the_next_run_recovers(
    tmp_path: Path,
) -> None:
    root = tmp_path / "gpu-node-1"
    smi = _stage(root)
    fake = smi.read_bytes()
    pids = tmp_path / "pids"
    _hanging_nvidia_smi(smi, pids)
    hosts = {"gpu-node-1": _host(root, smi)}
    no_timeout = {**_host(tmp_path / "no-timeout", smi), "cuda_check_nvidia_smi_timeout": 0}
    # A healthy H100 whose only candidate has no Hopper code: the selection filter fails the task.
    too_old_root = tmp_path / "too-old"
    too_old = {**_host(too_old_root, _stage(too_old_root)), "cuda_check_cuda_candidates": ["11.7"]}
    fact = root / "facts.d" / "cuda_check.fact"

    start = time.monotonic()
    hung = _run_role(tmp_path, {**hosts, "no-timeout": no_timeout, "too-old": too_old}, root)
    assert time.monotonic() - start < 2 + MARGIN + 60
    task, msg = hung["failed"]["gpu-node-1"]
    assert task == "cuda_check : probe | Fail when nvidia-smi gave no facts"
    assert msg.startswith(f"gpu-node-1: `{smi} --query-gpu=")
    assert "did not answer within 2 seconds (killed it)" in msg and "(nvidia_smi_state timeout)" in msg
    assert hung["stats"]["gpu-node-1"]["changed"] == 0
    # A timeout of 0 would mean no bound at all: refused before nvidia-smi runs.
    task, msg = hung["failed"]["no-timeout"]
    assert task == "cuda_check : preflight | Check the paths and the nvidia-smi timeout"
    assert msg.startswith("no-timeout: ")
    assert "cuda_check_nvidia_smi_timeout a number of seconds > 0 (got 0)" in msg
    assert not fact.exists()
    _assert_all_gone(pids)
    # The filter's own words (the collection's one filter error style) name what to change.
    task, msg = hung["failed"]["too-old"]
    assert task == "cuda_check : select | Choose the newest CUDA version the driver and every GPU can run"
    assert (
        "The filter plugin 'gpulab.gpulab.cuda_check_select' failed: none of the CUDA candidates 11.7" in msg
    )
    assert "compute capability 9.0" in msg and "add a CUDA version to cuda_check_cuda_candidates" in msg
    assert hung["stats"]["too-old"]["changed"] == 0
    assert not (too_old_root / "facts.d" / "cuda_check.fact").exists()

    # The GPU answers again (same path): the next run records it, and the one after changes nothing.
    smi.write_bytes(fake)
    recovered = _run_role(tmp_path, hosts, root)
    assert recovered["failed"] == {}
    assert json.loads(fact.read_text())["driver"] == DRIVER
    again = _run_role(tmp_path, hosts, root)
    assert again["failed"] == {} and again["stats"]["gpu-node-1"]["changed"] == 0


CORRUPT: dict[str, tuple[bytes, str]] = {
    "truncated": (b'{\n  "checked_at": "2026-12-01T10:00:00Z",\n  "driver": "550.1', "it is not JSON"),
    "garbage": (b"\xff\xfe\x00\x13\x80garbage\x00", "it is not UTF-8 text"),
    "wrong_type": (b'["550.127.05"]\n', "it holds a JSON list, not an object"),
    "wrong_field": (b'{"driver": 550.127, "gpus": []}\n', "its driver is a float (550.127)"),
    "empty": (b"", ""),
}


@pytest.mark.slow
def test_a_corrupted_local_fact_is_said_read_as_none_rewritten_and_the_next_run_changes_nothing(
    tmp_path: Path,
) -> None:
    sysroot = tmp_path / "sysroot"
    smi = _stage(sysroot)
    hosts = {name: _host(tmp_path / name, smi) for name in CORRUPT}
    facts = {name: tmp_path / name / "facts.d" / "cuda_check.fact" for name in CORRUPT}
    for name, (content, _) in CORRUPT.items():
        facts[name].write_bytes(content)

    first = _run_role(tmp_path, hosts, sysroot)
    assert first["failed"] == {}
    for name, (_, problem) in CORRUPT.items():
        said = [m for m in first["msgs"][name] if "is not a record cuda_check wrote" in m]
        if problem:
            assert len(said) == 1, first["msgs"][name]
            assert said[0].startswith(f"{name}: the local fact {facts[name]} is not a record")
            assert problem in said[0] and "read as no record" in said[0] and "rewritten" in said[0]
        else:
            assert said == []
        # Read as no record: no driver change is claimed from it.
        shown = [m for m in first["msgs"][name] if f"driver {DRIVER} (CUDA 13.1)" in m]
        assert len(shown) == 1 and "driver changed" not in shown[0]
        record = json.loads(facts[name].read_text(encoding="utf-8"))
        assert record["driver"] == DRIVER and record["previous_driver"] == ""
        assert "cuda_check : record | Write the local fact" in first["changed"][name]
    # Ansible's own local-fact loading (setup, ansible-core 2.19) survives each file too: text it cannot
    # parse becomes a warning naming the file and an error string as the fact; bytes that are not UTF-8
    # are read as empty, silently.
    assert any(
        f"error loading facts as JSON or ini - please check content: {facts['truncated']}" in w
        for w in first["warnings"]["truncated"]
    )
    assert 'ansible_local: {"cuda_check": {}}' in first["msgs"]["garbage"]
    assert first["warnings"]["garbage"] == []

    second = _run_role(tmp_path, hosts, sysroot)
    assert second["failed"] == {}
    assert {name: second["stats"][name]["changed"] for name in CORRUPT} == dict.fromkeys(CORRUPT, 0)
    assert not any("is not a record" in m for msgs in second["msgs"].values() for m in msgs)


def _case(root: Path, profile: str, **role_vars: Any) -> dict[str, Any]:
    """A case host answering from its own fake nvidia-smi: `profile` staged under root, /proc included."""
    lab_nvidia_smi.stage(root, profile)
    return {
        **_host(root, root / "usr" / "bin" / "nvidia-smi"),
        "cuda_check_test_sysroot": str(root),
        "cuda_check_proc_version_path": str(root / lab_nvidia_smi.PROC_VERSION_FILE),
        **role_vars,
    }


def _outputs(run: dict[str, Any], host: str) -> dict[str, Any]:
    shown = [m for m in run["msgs"][host] if m.startswith("cuda_check outputs: ")]
    assert len(shown) == 1, run["msgs"][host]
    outputs: dict[str, Any] = json.loads(shown[0].removeprefix("cuda_check outputs: "))
    return outputs


# States in which the role must fail the host, each with its own words (what is wrong, what to do).
FAILING: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "broken": ("driver-broken", {}, ["couldn't communicate with the NVIDIA driver", "Usual causes"]),
    "gpulost": ("gpu-lost", {}, ["GPU is lost", "Reboot the node"]),
    "reboot": (
        "driver-mismatch",
        {},
        ["Driver/library version mismatch", "kernel module is 580.173.02", "library is 580.178"],
    ),
    "pin": (
        "l40s-550.127.05",
        {"cuda_check_cuda_version_pin": "13.0"},
        ["pin is 13.0", "driver 550.127.05", "maximum CUDA 12.4"],
    ),
    # No nvidia-smi where the role looks by default (PATH, then the usual directories).
    "require": (
        "none",
        {"cuda_check_require_gpu": True, "cuda_check_nvidia_smi_path": ""},
        ["cuda_check_require_gpu is true", "no NVIDIA driver/GPU"],
    ),
}


@pytest.mark.slow
def test_each_failing_state_fails_its_host_with_its_own_words_and_records_nothing(tmp_path: Path) -> None:
    found = [d for d in os.environ["PATH"].split(os.pathsep) + gpu_facts.DEFAULT_SEARCH_DIRS if d]
    if any(Path(d, "nvidia-smi").exists() for d in found):  # a machine with a real driver (never CI)
        pytest.fail("this machine has an nvidia-smi: the `require` case needs one without (run it in CI)")
    hosts = {name: _case(tmp_path / name, profile, **extra) for name, (profile, extra, _) in FAILING.items()}
    run = _run_role(tmp_path, hosts, tmp_path / "each-host-has-its-own")
    assert set(run["failed"]) == set(FAILING), run["failed"]
    for name, (_, _, words) in FAILING.items():
        _task, msg = run["failed"][name]
        if name == "pin":  # the selection filter's own words, inside Ansible's
            assert "The filter plugin 'gpulab.gpulab.cuda_check_select' failed: " in msg, msg
        else:  # the role's fail messages start with the host
            assert msg.startswith(f"{name}: "), msg
        assert [w for w in words if w not in msg] == [], (name, msg)
        assert run["stats"][name]["changed"] == 0
        assert not (tmp_path / name / "facts.d" / "cuda_check.fact").exists(), name


@pytest.mark.slow
def test_a_driver_upgraded_between_two_runs_is_recorded_and_the_run_after_changes_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "upgrade"
    hosts = {"upgrade": _case(root, "l40s-550.127.05")}
    fact = root / "facts.d" / "cuda_check.fact"
    first = _run_role(tmp_path, hosts, root)
    assert first["failed"] == {} and _outputs(first, "upgrade")["cuda_version"] == "12.9"

    lab_nvidia_smi.stage(root, "l40s-595.80")  # R550 -> R595, no reboot needed
    upgraded = _run_role(tmp_path, hosts, root)
    assert upgraded["failed"] == {}
    outputs = _outputs(upgraded, "upgrade")
    assert outputs["driver_changed"] is True, outputs
    assert (outputs["previous_driver"], outputs["driver"]) == ("550.127.05", "595.80")
    assert (outputs["cuda_driver"], outputs["cuda_version"]) == ("13.2", "13.0")
    gpu = outputs["gpus"][0]
    assert (gpu["compute_capability"], gpu["compute_capability_source"]) == ("8.9", "nvidia-smi")
    record = json.loads(fact.read_text(encoding="utf-8"))
    assert (record["driver"], record["previous_driver"]) == ("595.80", "550.127.05")
    assert (record["cuda_version"], record["cuda_driver_version"]) == ("13.0", "13.2")
    assert record["driver_seen_since"] == record["checked_at"]

    again = _run_role(tmp_path, hosts, root)
    assert again["failed"] == {} and again["stats"]["upgrade"]["changed"] == 0
    assert _outputs(again, "upgrade")["driver_changed"] is False
