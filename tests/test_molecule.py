"""Every Molecule scenario of the project, run for real in podman containers (one test per scenario)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_containers, tool_env

LOG_DIR = REPO / ".cache" / "molecule-logs"


def _scenarios() -> list[tuple[str, Path, str]]:
    found: list[tuple[str, Path, str]] = []
    for project in [REPO, *sorted((REPO / "roles").glob("*"))]:
        mdir = project / "molecule"
        for scenario in sorted(p for p in mdir.glob("*") if (p / "molecule.yml").is_file()):
            label = scenario.name if project == REPO else f"{project.name}/{scenario.name}"
            found.append((label, project, scenario.name))
    return found


SCENARIOS = _scenarios()


@pytest.mark.containers
@pytest.mark.slow
@pytest.mark.parametrize(("label", "project", "scenario"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(label: str, project: Path, scenario: str, lab_services: dict[str, str]) -> None:
    require_containers()
    from gpulab.lab.images import ensure_image

    for image in ("debian12", "debian13"):
        ensure_image(image)
    env = tool_env() | lab_services
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{label.replace('/', '__')}.log"
    with log.open("w") as fh:
        proc = subprocess.run(
            ["molecule", "test", "-s", scenario],
            cwd=project,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=float(os.environ.get("GPULAB_SCENARIO_TIMEOUT", "1800")),
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        pytest.fail(f"molecule scenario {label} failed (rc {proc.returncode}); full log: {log}\n{tail}")


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (REPO / "roles").glob("*") if (p / "tasks").is_dir())
    with_scenario = {label.split("/")[0] for label, _, _ in SCENARIOS if "/" in label}
    assert roles, "no roles found"
    assert set(roles) <= with_scenario, f"roles without a Molecule scenario: {set(roles) - with_scenario}"
