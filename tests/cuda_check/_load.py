"""cuda_check's Python (the collection's module and filter plugin) from their files, fixtures, ad hoc runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import plugin, repo_ansible_env

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "cuda_check"
MODULE_PATH = REPO / "plugins" / "modules" / "nvidia_gpu_facts.py"
# The product's own corpus of real nvidia-smi outputs (issue 17: never the lab's fixtures).
CORPUS = REPO / "tests" / "corpus" / "nvidia-smi"


gpu_facts = plugin("module_utils.nvidia_smi")
gpu_facts_module = plugin("modules.nvidia_gpu_facts")
cuda_filter = plugin("filter.cuda_check")


def fixtures(kind: str) -> dict[str, Path]:
    """The corpus files of one kind (query-q, query-xml, query-gpu-csv, errors, ...) by file name."""
    return {path.name: path for path in sorted((CORPUS / kind).iterdir()) if path.is_file()}


def proc_fixtures() -> dict[str, Path]:
    return fixtures("proc-driver-nvidia-version")


def role_vars() -> dict[str, Any]:
    data = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def role_defaults() -> dict[str, Any]:
    data = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


ANSIBLE = Path(sys.executable).parent / "ansible"


def adhoc(args: str, env: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    """`ansible localhost -m gpulab.gpulab.nvidia_gpu_facts -a ARGS`: the module's result, no traceback."""
    if not ANSIBLE.exists() and shutil.which("ansible") is None:
        pytest.fail("ansible is not installed next to the test interpreter")
    cmd = [
        str(ANSIBLE if ANSIBLE.exists() else "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        "gpulab.gpulab.nvidia_gpu_facts",  # by FQCN: the checkout's ansible.cfg finds the collection
        "-a",
        args,
    ]
    callback = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, **callback, **env),
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    result: dict[str, Any] = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def run_playbook(
    playbook: Path, tmp: Path, hosts: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """ansible-playbook PLAYBOOK on the case hosts of a generated inventory (the checkout's ansible.cfg and
    roles): its stats and, per host, the failed task and message, changed tasks, messages and warnings."""
    inventory = tmp / f"inventory-{time.monotonic_ns()}.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    run_env = repo_ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **(env or {}))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), *args, str(playbook)]
    proc = subprocess.run(
        argv, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300, check=False
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    data = json.loads(proc.stdout[proc.stdout.index("{") :])
    out: dict[str, Any] = {"stats": data["stats"], "failed": {}, "msgs": {}, "warnings": {}, "changed": {}}
    for task in data["plays"][0]["tasks"]:
        for host, res in task["hosts"].items():
            if res.get("failed"):
                out["failed"][host] = (task["task"]["name"], str(res.get("msg")))
            if res.get("changed"):
                out["changed"].setdefault(host, []).append(task["task"]["name"])
            if isinstance(res.get("msg"), str):
                out["msgs"].setdefault(host, []).append(res["msg"])
            out["warnings"].setdefault(host, []).extend(res.get("warnings") or [])
    return out
