"""cuda_check's Python (the collection's module and filter plugin) from their files, fixtures, ad hoc runs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "cuda_check"
MODULE_PATH = REPO / "plugins" / "modules" / "nvidia_gpu_facts.py"
# The module's reading code, shared with host_state (the module itself only holds its docs and main).
READER_PATH = REPO / "plugins" / "module_utils" / "nvidia_smi.py"
FILTER_PATH = REPO / "plugins" / "filter" / "cuda_check.py"
# The product's own corpus of real nvidia-smi outputs (issue 17: never the lab's fixtures).
CORPUS = REPO / "tests" / "corpus" / "nvidia-smi"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_facts = _load("cuda_check_nvidia_smi", READER_PATH)
gpu_facts_module = _load("cuda_check_nvidia_gpu_facts", MODULE_PATH)
cuda_filter = _load("cuda_check_filter", FILTER_PATH)


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
