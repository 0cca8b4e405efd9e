"""Interrupting the real `playbooks/site.yml`: `gpulab provision` subprocesses on one local host (this
machine, as root) with the lab's stand-ins: the fake nvidia-smi (an H100 on driver 590.48.01), the stand-in
Miniconda installer downloaded from the lab mirror into a prefix under tmp, and an env with numpy from the
lab's wheelhouse whose numpy MLP check runs on the CPU. Every path the roles write (lock, prefix, envs,
specs, downloads, cuda_check's fact, HOME) is under tmp.

- one signal per phase, rotating: SIGINT while the installer runs (fresh host), SIGTERM while an env
  build runs, SIGHUP between the temporary link and the swap; the driver treats the three the same
  (tests/cli/test_stop.py);
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from gpulab.errors import ExitCode
from tests.cli.helpers import processes_naming, read_event, wait_for_task
from tests.cli.local_site import Site, make_site

INSTALLER_TASK = "install | Run the installer in batch mode"
BUILD_TASK = "build | Create the new environment beside the live one"
SWAP_TASK = "build | Point a temporary link at the new environment"


@pytest.fixture
def site(tmp_path: Path, lab_services: dict[str, str]) -> Site:
    return make_site(tmp_path, lab_services)


def _interrupt(site: Site, task: str, signum: signal.Signals, *args: str) -> tuple[int, dict[str, Any], str]:
    runs = site.tmp / "runs"
    earlier = [p.name for p in runs.iterdir()] if runs.is_dir() else []
    proc = site.start(*args)
    wait_for_task(proc, runs, task, timeout=600, earlier=earlier)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    return proc.returncode, site.report(), out


def _assert_interrupted(rc: int, report: dict[str, Any], out: str, signum: signal.Signals) -> None:
    assert rc == ExitCode.INTERRUPTED, out
    assert report["status"] == "interrupted" and report["exit_code"] == 99
    stop = report["interruption"]
    assert stop["signal"] == signum.name and stop["escalated_by"] is None and stop["cleanup"] is None
    assert stop["mid_change_hosts"] == ["node1"] and report["hosts"]["node1"]["mid_change"] is True
    assert f"interrupted by {signum.name}: stopped between steps" in out


def _assert_clean(site: Site) -> None:
    """No lock, no installer download, no half-made build or temporary link."""
    assert not site.lock.exists()
    assert site.downloads == []
    assert not os.path.lexists(site.envs / ".dl.gpulab-next")
    builds = site.envs / ".gpulab"
    if builds.is_dir():
        for build in builds.iterdir():
            marker = json.loads((build / "conda-meta" / "gpulab-build.json").read_text())
            assert marker["complete"] is True, build


def _assert_recovers(site: Site) -> None:
    """The next provision succeeds with a checked env; the one after changes nothing."""
    rc, report = site.provision()
    assert rc == 0 and report["status"] == "ok", report["hosts"]["node1"]
    assert report["hosts"]["node1"]["mlp_check"]["passed"] is True
    _assert_clean(site)
    rc, report = site.provision()
    assert rc == 0 and report["hosts"]["node1"]["counts"]["changed"] == 0, report["hosts"]["node1"][
        "changed_tasks"
    ]


def _assert_recovers_with(site: Site, *args: str) -> None:
    rc, report = site.provision(*args)
    assert rc == 0 and report["hosts"]["node1"]["counts"]["changed"] == 0, report["hosts"]["node1"][
        "changed_tasks"
    ]


def _packages(*names: str) -> tuple[str, str]:
    """-e for a changed spec (extra conda packages the stand-in only records)."""
    return "-e", json.dumps({"dl_env_conda_packages": list(names)})


@pytest.mark.slow
def test_a_signal_in_each_phase_of_site_yml_stops_cleanly_and_the_next_run_recovers(site: Site) -> None:
    # 1. SIGINT while the installer runs on a fresh host: the Miniconda phase finishes, the host stops at
    # the checkpoint before dl_env.
    rc, report, out = _interrupt(site, INSTALLER_TASK, signal.SIGINT)
    _assert_interrupted(rc, report, out, signal.SIGINT)
    host = report["hosts"]["node1"]
    assert host["status"] == "interrupted" and "stop requested" in host["message"], host
    assert (site.prefix / "bin" / "conda").is_file() and not (site.prefix / "install_tmp").exists()
    assert not os.path.lexists(site.envs / "dl")  # stopped before dl_env: no env yet
    _assert_clean(site)
    _assert_recovers(site)
    first = site.live()

    # 2. SIGTERM while a changed spec builds: dl_env is the last phase, so the build finishes, is checked
    # and swapped in; the previous build is kept.
    rc, report, out = _interrupt(site, BUILD_TASK, signal.SIGTERM, *_packages("mkl"))
    _assert_interrupted(rc, report, out, signal.SIGTERM)
    second = site.live()
    assert second != first and first.is_dir() and (second / "bin" / "python").exists()
    assert report["hosts"]["node1"]["mlp_check"]["passed"] is True
    _assert_clean(site)
    _assert_recovers_with(site, *_packages("mkl"))

    # 3. SIGHUP (terminal closed) between the temporary link and the swap of another changed spec.
    rc, report, out = _interrupt(site, SWAP_TASK, signal.SIGHUP, *_packages("mkl", "nccl"))
    _assert_interrupted(rc, report, out, signal.SIGHUP)
    third = site.live()
    assert third not in (first, second) and second.is_dir() and (third / "bin" / "python").exists()
    _assert_clean(site)
    _assert_recovers_with(site, *_packages("mkl", "nccl"))


DOWNLOAD_TASK = "install | Download and verify the installer"


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return list(proc.cmdline())
    except psutil.Error:  # ended meanwhile
        return []


@pytest.mark.slow
def test_gpulab_killed_during_the_installer_download_leaves_no_orphan_and_the_next_run_recovers(
    site: Site,
) -> None:
    """SIGKILL (a crash, the OOM killer): nothing of gpulab runs any more, no always: section. The mirror
    here accepts the connection and never answers, so the download hangs until miniconda_download_timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mirror = f"http://127.0.0.1:{silent.getsockname()[1]}/miniconda"
        runs = site.tmp / "runs"
        proc = site.start("-e", f"miniconda_mirror_url={mirror}", "-e", "miniconda_download_timeout=20")
        wait_for_task(proc, runs, DOWNLOAD_TASK, timeout=600)
        tree = psutil.Process(proc.pid).children(recursive=True)
        # The provision play runs on Mitogen (gpulab.strategy): the host's Mitogen interpreter is in the tree.
        assert any("(mitogen:" in " ".join(_cmdline(p)) for p in tree), [_cmdline(p) for p in tree]
        proc.kill()
        proc.communicate(timeout=60)
        # The download step ends (its timeout), then the playbook, at its next output: no process of the
        # run goes on alone (Mitogen's too), and nothing after the download started.
        _gone, alive = psutil.wait_procs(tree, timeout=120)
        assert alive == [], [_cmdline(p) for p in alive]
        assert processes_naming(runs) == []
    events = " ".join(read_event(p) for p in runs.glob("*/job_events/*.json"))
    assert "install | Run the installer in batch mode" not in events
    assert not site.prefix.exists()  # nothing installed, nothing half-made
    assert site.lock.exists()  # left by the dead run: the next run breaks it (its controller is gone)
    _assert_recovers(site)
