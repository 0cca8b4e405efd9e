"""STAND-IN for conda: a pure-Python imitation of exactly the conda commands gpulab's roles, Molecule
scenarios and lab call, and nothing else.

It is embedded in the stand-in Miniconda/Miniforge installer built by `gpulab.lab.installer` and runs from
the installed base prefix (`<prefix>/bin/conda`). What it imitates is listed, with the facts it follows, in
`docs/standins.md` (facts: `docs/conda-facts.md`); any other conda command or flag fails with
"gpulab stand-in: `conda X` is not simulated" (rc 2) instead of pretending. Environments it creates are
real Python environments (venv + pip); conda-only packages such as CUDA or PyTorch builds are only
*recorded* in `conda-meta/` and never pretend to work.

Standard library only (plus the vendored pure-Python PyYAML the installer ships next to it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_CONDA_VERSION = "25.11.1"


def release() -> dict[str, Any]:
    """The installer's release facts (`release.json`, written into the payload by the installer build)."""
    try:
        data: dict[str, Any] = json.loads(
            Path(__file__).with_name("release.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        data = {}
    data.setdefault("conda_version", DEFAULT_CONDA_VERSION)
    data.setdefault("flavor", "miniconda")
    data.setdefault("installer_name", "Miniconda3")
    return data
