"""One local host (this machine, as the test's user) for the real `playbooks/site.yml` through `gpulab
provision` subprocesses, with the lab's stand-ins: the fake nvidia-smi (an H100 on driver 590.48.01), the
stand-in Miniconda installer downloaded from the lab mirror into a prefix under tmp, and an env with numpy
from the lab's wheelhouse whose numpy MLP check runs on the CPU. Every path the roles write (lock, prefix,
envs, specs, downloads, cuda_check's fact, the fast path's record, HOME) is under tmp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpulab.lab import nvidia_smi as lab_nvidia_smi
from gpulab.lab.services import checksums
from tests.conftest import REPO
from tests.dl_env._load import local_env_vars, wheelhouse_environ

VERSION = "py313_25.11.1-1"
BOOT = "6f1c2d4e-0000-4000-8000-00000000c001"


@dataclass
class Site:
    tmp: Path
    inventory: Path
    env: dict[str, str]

    @property
    def prefix(self) -> Path:
        return self.tmp / "miniconda3"

    @property
    def envs(self) -> Path:
        return self.prefix / "envs"

    @property
    def lock(self) -> Path:
        return self.tmp / "run-gpulab" / "lock"

    @property
    def record(self) -> Path:
        return self.tmp / "var-lib-gpulab" / "state.json"

    @property
    def downloads(self) -> list[Path]:
        return sorted((self.tmp / "dl").glob("gpulab-miniconda*"))

    def live(self) -> Path:
        return Path(os.path.realpath(self.envs / "dl"))

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "gpulab", "provision", "-i", str(self.inventory), *self.extra, *args],
            cwd=self.tmp,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def provision(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.start(*args)
        _out, err = proc.communicate(timeout=900)
        assert "Traceback" not in err, err
        return proc.returncode, self.report()

    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.tmp / "runs" / "last" / "report.json").read_text())
        return data

    @property
    def extra(self) -> list[str]:
        # cuda_check's local fact goes to tmp too (the role's fact directory is a constant).
        return ["-e", "__cuda_check_fact_dir={{ cuda_check_test_fact_dir }}"]


def make_site(tmp_path: Path, lab_services: dict[str, str]) -> Site:
    """One local host for site.yml, its installer from the lab mirror."""
    lab_root = Path(lab_services["GPULAB_LAB_ROOT"])
    sysroot = tmp_path / "sysroot"
    lab_nvidia_smi.stage(sysroot, "h100-590.48.01")
    (tmp_path / "boot_id").write_text(BOOT + "\n")
    for name in ("facts.d", "home", "dl"):
        (tmp_path / name).mkdir()
    host = {
        **local_env_vars(tmp_path),
        "host_lock_dir": str(tmp_path / "run-gpulab"),
        "gpulab_state_file": str(tmp_path / "var-lib-gpulab" / "state.json"),
        "host_lock_boot_id_file": str(tmp_path / "boot_id"),
        "host_lock_poll": 1,
        "host_lock_wait": 5,
        "cuda_check_nvidia_smi_path": str(sysroot / "usr" / "bin" / "nvidia-smi"),
        "cuda_check_proc_version_path": str(tmp_path / "no-proc-version"),
        "cuda_check_test_fact_dir": str(tmp_path / "facts.d"),
        "miniconda_version": VERSION,
        "miniconda_mirror_url": lab_services["GPULAB_LAB_MIRROR_URL"] + "/miniconda",
        "miniconda_installer_sha256": checksums(lab_root)[f"Miniconda3-{VERSION}-Linux-x86_64.sh"],
        "miniconda_accept_tos": True,
        "miniconda_prefix": str(tmp_path / "miniconda3"),
        "miniconda_download_dir": str(tmp_path / "dl"),
        "miniconda_shell_integration": False,
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node1": host}}}))
    env = dict(os.environ)
    env.update(
        GPULAB_PROJECT_DIR=str(REPO),
        GPULAB_STATE_DIR=str(tmp_path / "runs"),
        HOME=str(tmp_path / "home"),  # the stand-in installer registers its base in ~/.conda
        GPULAB_LAB_NVIDIA_SMI_SYSROOT=str(sysroot),
        # conda's pip step (local connection: the modules inherit this environment): offline, the wheelhouse
        **wheelhouse_environ(),
    )
    for name in ("ANSIBLE_CONFIG", "GPULAB_STOP_TIMEOUT", "GPULAB_STANDIN_FAULTS"):
        env.pop(name, None)
    return Site(tmp_path, inventory, env)
