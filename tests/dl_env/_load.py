"""The collection's dl_env filter plugin and build module as Python modules, and build directories as the
role leaves them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.conftest import plugin, repo_ansible_env

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "dl_env"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def dl_env_filters() -> ModuleType:
    return plugin("filter.dl_env")


def dl_env_builds() -> ModuleType:
    """plugins/modules/dl_env_builds.py, importable for its pure functions."""
    return plugin("modules.dl_env_builds")


def make_build(
    builds: Path,
    dirname: str,
    env: str | None,
    digest: str,
    complete: bool = True,
    legacy: bool = False,
    created: float | None = None,
    run_id: str = "r1",
) -> Path:
    """A build directory as the role leaves it: marker (or only the recorded digest, `legacy`)."""
    builds_module = dl_env_builds()
    build = builds / dirname
    (build / "conda-meta").mkdir(parents=True)
    (build / "bin").mkdir()
    python = build / "bin" / "python"
    python.write_text("#!/bin/sh\n", encoding="utf-8")
    python.chmod(0o755)
    if complete or legacy:
        (build / builds_module.DIGEST_FILE).write_text(digest + "\n", encoding="utf-8")
    if not legacy and env is not None:
        marker = {
            "env": env,
            "digest": digest,
            "complete": complete,
            "run_id": run_id,
            "created_epoch": created if created is not None else time.time(),
        }
        (build / builds_module.MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return build


# Env vars of an env whose numpy MLP check runs on the CPU (framework none; the fake GPU cannot train).
NUMPY_CHECK_VARS: dict[str, Any] = {
    "dl_env_framework": "none",
    "dl_env_pip_packages": ["numpy"],
    "dl_env_check_device": "cpu",
}


def local_env_vars(tmp: Path) -> dict[str, Any]:
    """Inventory vars of a local host (this machine, as the test's user) whose env `dl` is built from a
    bring-your-own spec under `tmp` with the stand-in conda, its numpy MLP check run on the CPU. numpy
    reaches the env through conda's pip step from the lab's wheelhouse: pass `wheelhouse_environ()` to
    that step."""
    spec = tmp / "byo.yml"
    spec.write_text("name: dl\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n")
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "dl_env_name": "dl",
        "dl_env_spec_dir": str(tmp / "etc-gpulab"),
        "dl_env_base_file": str(spec),
        "dl_env_python_version": "3.11",
        **NUMPY_CHECK_VARS,
    }


def wheelhouse_environ() -> dict[str, str]:
    """pip offline, from the lab's wheelhouse (numpy, pip; downloaded once into .cache when missing)."""
    from gpulab.lab import wheelhouse

    wheels = wheelhouse.ensure(REPO / ".cache" / "gpulab-lab" / "wheelhouse", pythons=("3.11",))
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def local_render_vars(out: Path) -> dict[str, Any]:
    """Inventory vars that render on the controller itself into `out/<host>/environment.yml`."""
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "dl_env_render_only": True,
        "dl_env_render_dest_controller": str(out),
    }


def run_role_entry(
    tmp: Path, inventory: dict[str, Any], tasks_from: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook` over `inventory` with one play that includes the dl_env entry point
    `tasks_from` (render, check) on all hosts; `env` adds or overrides ANSIBLE_* settings."""
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    task = {
        "name": f"Run dl_env {tasks_from}",
        "ansible.builtin.include_role": {"name": "gpulab.gpulab.dl_env", "tasks_from": tasks_from},
    }
    play = [{"name": tasks_from.capitalize(), "hosts": "all", "gather_facts": False, "tasks": [task]}]
    (tmp / f"{tasks_from}.yml").write_text(yaml.safe_dump(play), encoding="utf-8")
    run_env = repo_ansible_env(**env)
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(tmp / "hosts.yml"),
        str(tmp / f"{tasks_from}.yml"),
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, env=run_env, cwd=REPO, check=False, timeout=600
    )
