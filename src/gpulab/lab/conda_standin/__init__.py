"""STAND-IN for conda: a pure-Python imitation of exactly the conda commands gpulab's roles, Molecule
scenarios and lab call (`docs/standins.md`, facts in `docs/conda-facts.md`), and nothing else: any other
command or flag fails with "gpulab stand-in: `conda X` is not simulated" (rc 2) instead of pretending.

It is embedded in the stand-in installer built by `gpulab.lab.installer` and runs from the installed base
prefix (`<prefix>/bin/conda`). Environments are real venvs of the host's python3 with pip; conda-only
packages (CUDA, PyTorch builds, ...) are only *recorded* in `conda-meta/` and never pretend to work.
Standard library only (plus the vendored pure-Python PyYAML the installer ships next to it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def release() -> dict[str, Any]:
    """The installer's release facts (`release.json`, written into the payload by the installer build)."""
    try:
        data: dict[str, Any] = json.loads(
            Path(__file__).with_name("release.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        data = {}
    return {"conda_version": "25.11.1", "flavor": "miniconda", "installer_name": "Miniconda3", **data}


class CondaError(Exception):
    """A handled conda error, printed as `\\n<name>: <message>\\n` on stderr, rc 1 (conda-facts §2.0)."""

    def __init__(self, message: str, name: str = "CondaError", rc: int = 1) -> None:
        super().__init__(message)
        self.name, self.rc = name, rc

    def print(self) -> int:
        import sys

        sys.stderr.write(f"{self}\n" if self.rc == 2 else f"\n{self.name}: {self}\n\n")
        return self.rc


def not_simulated(what: str) -> CondaError:
    return CondaError(f"gpulab stand-in: `conda {what}` is not simulated (see docs/standins.md)", rc=2)
