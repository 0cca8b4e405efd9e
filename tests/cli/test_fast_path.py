"""The re-run fast path of `playbooks/site.yml` (issue 15), on one local host with the stand-ins
(tests/cli/local_site.py): a re-run that finds the host as its last full run left it reads it in one round
trip and reports the recorded outputs; every drift the issue names (the driver, `.condarc`, the spec, the
build's marker, the env itself, the inputs, a left lock) sends the host through the roles in full, which
repair it, and the run after that is fast again."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from gpulab.lab import nvidia_smi as lab_nvidia_smi
from tests.cli.local_site import Site, make_site

INPUTS_CHANGED = "the inputs changed (role variables, the controller files they name, or gpulab itself)"
# Tasks a fast re-run starts per host: validate, host_state, set_stats, and the provision play's end_host.
FAST_TASKS_AT_MOST = 6


@pytest.fixture
def site(tmp_path: Path, lab_services: dict[str, str]) -> Site:
    return make_site(tmp_path, lab_services)


def _host(report: dict[str, Any]) -> dict[str, Any]:
    host: dict[str, Any] = report["hosts"]["node1"]
    return host


def _fast(site: Site, *args: str) -> dict[str, Any]:
    rc, report = site.provision(*args)
    host = _host(report)
    assert rc == 0 and host["fast_path"]["taken"] is True, host["fast_path"]
    assert host["counts"]["changed"] == 0 and host["tasks_run"] <= FAST_TASKS_AT_MOST, host
    return host


def _full(site: Site, *args: str) -> tuple[dict[str, Any], list[str]]:
    """A run in full: its host record and the reasons the fast path gave."""
    rc, report = site.provision(*args)
    host = _host(report)
    assert rc == 0 and host["status"] == "ok", host
    assert host["fast_path"]["taken"] is False, host["fast_path"]
    return host, host["fast_path"]["reasons"]


@pytest.mark.slow
def test_a_rerun_takes_the_fast_path_until_something_drifts(site: Site) -> None:
    rc, report = site.provision()
    cold = _host(report)
    assert rc == 0 and cold["mlp_check"]["passed"] is True, cold
    assert cold["fast_path"]["reasons"] == ["no record of a full run yet"] and not cold["fast_path"]["taken"]
    assert stat.S_IMODE(site.record.stat().st_mode) == 0o600
    assert stat.S_IMODE(site.record.parent.stat().st_mode) == 0o700

    # Nothing changed: one round trip, and the report still says what the host has.
    fast = _fast(site)
    assert fast["driver_version"] == cold["driver_version"] == "590.48.01"
    assert fast["cuda_version"] == cold["cuda_version"] and fast["conda_version"] == cold["conda_version"]
    assert fast["env_action"] == "unchanged" and fast["env_digest"] == cold["env_digest"]
    check = fast["mlp_check"]
    assert check["passed"] is True and check["check_reused"] is True and check["recheck_reason"] == ""
    assert check["checked_at"] == cold["mlp_check"]["checked_at"] and check["check_age_s"] >= 0
    # Check mode takes it too and changes nothing.
    _fast(site, "--check")

    # Hand edits of three managed files: all named, all repaired by the full run.
    condarc = site.prefix / ".condarc"
    condarc.write_text(condarc.read_text() + "channel_priority: disabled\n")
    spec = site.tmp / "etc-gpulab" / "dl" / "environment.yml"
    spec.write_text(spec.read_text() + "# edited by hand\n")
    marker = site.live() / "conda-meta" / "gpulab-build.json"
    marker.write_text("{not json")
    host, reasons = _full(site)
    assert len(reasons) == 1 and reasons[0].startswith("changed since the last full run: changed "), reasons
    for path in (condarc, spec, marker):
        assert str(path) in reasons[0], (path, reasons)
    assert "channel_priority: disabled" not in condarc.read_text() and "by hand" not in spec.read_text()
    assert host["counts"]["changed"] > 0, host
    _fast(site)

    # Three drifts at once, each named (the module lists every difference it finds): a driver upgrade, a
    # lock left behind (a run killed outright) and the env deleted. The full run reports the new driver,
    # breaks the stale lock, rebuilds the env and checks it.
    lab_nvidia_smi.stage(site.tmp / "sysroot", "l40s-595.80")
    site.lock.mkdir(parents=True)
    (site.lock / "holder.json").write_text(json.dumps({"run_id": "gone", "boot_id": "another-boot"}))
    shutil.rmtree(os.path.realpath(site.envs / "dl"))
    os.unlink(site.envs / "dl")
    host, reasons = _full(site)
    assert reasons[:2] == [
        "nvidia-smi reports another driver or other GPUs",
        f"the host lock {site.lock} is held (another run) or was left by one",
    ], reasons
    gone = reasons[2].split("gone ", 1)[1].split(";")[0].split(", ")
    assert len(reasons) == 3 and str(site.envs / "dl") in gone, reasons
    assert host["driver_changed"] is True and host["driver_version"] == "595.80", host
    assert host["env_action"] == "created" and host["mlp_check"]["passed"] is True, host
    assert not site.lock.exists()
    _fast(site)

    # New inputs (another package asked for): the host runs in full and the env is rebuilt.
    extra = ("-e", json.dumps({"dl_env_conda_packages": ["mkl"]}))
    host, reasons = _full(site, *extra)
    assert reasons == [INPUTS_CHANGED], reasons
    assert host["env_action"] == "updated", host
    kept = _fast(site, *extra)["mlp_check"]

    # Asking for part of the run or a re-verification always runs in full; --reverify trains again.
    host, reasons = _full(site, *extra, "--reverify")
    assert reasons == ["asked to re-verify (dl_env_reverify)"]
    check = host["mlp_check"]
    assert check["passed"] is True and check["check_reused"] is False, check
    assert check["checked_at"] > kept["checked_at"], (kept, check)
    _fast(site, *extra)  # the re-verifying run's record holds for plain runs: a run knob is not an input
    _, reasons = _full(site, *extra, "--tags", "cuda_check")
    assert reasons == ["only part of the run was asked for (--tags/--skip-tags)"]
