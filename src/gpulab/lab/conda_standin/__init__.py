"""STAND-IN for conda: a pure-Python imitation of the conda CLI subset gpulab's roles call.

It is embedded in the stand-in Miniconda/Miniforge installer built by `gpulab.lab.installer` and runs
from the installed base prefix (`<prefix>/bin/conda`). It imitates the conda version named in the
installer's release string, following `docs/standins.md` (which cites the facts document section for
each behaviour). Environments it creates are real Python environments (venv + pip); conda-only packages
such as CUDA or PyTorch builds are only *recorded* in `conda-meta/` and never pretend to work.

Standard library only (plus the vendored pure-Python PyYAML the installer ships next to it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_CONDA_VERSION = "25.11.1"

_RELEASE_FILE = Path(__file__).with_name("release.json")


def release() -> dict[str, Any]:
    """The installer's release facts (written into the payload by the installer build)."""
    try:
        data: dict[str, Any] = json.loads(_RELEASE_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data.setdefault("conda_version", DEFAULT_CONDA_VERSION)
    data.setdefault("flavor", "miniconda")
    data.setdefault("installer_name", "Miniconda3")
    data.setdefault("installer_version", f"py311_{DEFAULT_CONDA_VERSION}-1")
    return data


def version_tuple(text: str) -> tuple[int, ...]:
    """'25.11.1' -> (25, 11, 1); non-numeric parts count as 0."""
    out: list[int] = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)
