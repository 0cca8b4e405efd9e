"""Load the cuda_check role's Python (module and filter plugin) from their files, and find fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "cuda_check"
MODULE_PATH = ROLE / "library" / "nvidia_gpu_facts.py"
FILTER_PATH = ROLE / "filter_plugins" / "cuda_check.py"
# The lab stand-in's copy of ../shared/fixtures comes first; tests/fixtures holds the files it lacks.
FIXTURE_ROOTS = (
    REPO / "src" / "gpulab" / "lab" / "fixtures" / "nvidia-smi",
    REPO / "tests" / "fixtures" / "nvidia-smi",
)
PROC_ROOTS = (
    REPO / "src" / "gpulab" / "lab" / "fixtures" / "proc-driver-nvidia-version",
    REPO / "tests" / "fixtures" / "nvidia-smi" / "proc-driver-nvidia-version",
)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_facts = _load("cuda_check_nvidia_gpu_facts", MODULE_PATH)
cuda_filter = _load("cuda_check_filter", FILTER_PATH)


def fixtures(kind: str) -> dict[str, Path]:
    """All fixture files of one kind (query-q, errors, ...) by file name; the lab's copy wins."""
    found: dict[str, Path] = {}
    for root in FIXTURE_ROOTS:
        folder = root / kind
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    found.setdefault(path.name, path)
    return found


def proc_fixtures() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in PROC_ROOTS:
        if root.is_dir():
            for path in sorted(root.iterdir()):
                found.setdefault(path.name, path)
    return found


def role_vars() -> dict[str, Any]:
    data = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def role_defaults() -> dict[str, Any]:
    data = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data
