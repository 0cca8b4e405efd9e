"""Every Molecule scenario of the project, run for real in podman containers (one test per scenario)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, expected_minutes, on_mitogen, require_containers, tool_env

LOG_DIR = REPO / ".cache" / "molecule-logs"
BASE_CONFIG = REPO / ".config" / "molecule" / "config.yml"
# A stuck scenario fails well before CI's own limit: GPULAB_SCENARIO_TIMEOUT (default 900 s), or 2.5x the
# scenario's expected minutes (tests/conftest.py) for the long ones (dl_env/default: 5.5 min, busy cores).
SCENARIO_TIMEOUT = float(os.environ.get("GPULAB_SCENARIO_TIMEOUT", "900"))
# Scenarios whose plays run on Mitogen's strategy, as gpulab runs site.yml's provision play: the ones it made
# faster (few hosts, long plays: 0.59-0.86 of linear, benchmarks/bench_scenarios.py, docs/testing.md). The
# others stay linear (Mitogen's start-up per host and play costs them 0.92-1.24), as plain ansible-playbook
# and AWX run the roles: both strategies run the roles in containers.
ON_MITOGEN = frozenset({"dl_env/default", "miniconda/default", "miniconda/failures"})


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
def test_scenario(
    label: str,
    project: Path,
    scenario: str,
    lab_services: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    require_containers()
    from gpulab.lab.images import CONDA_RECIPES, RECIPES, ensure_image

    for image in [*RECIPES, *CONDA_RECIPES]:
        ensure_image(image)
    # Containers and Molecule's state are this run's own, so scenarios, pytest workers and other
    # sessions on the same machine can run side by side (see .config/molecule/config.yml).
    run = f"-{os.environ.get('PYTEST_XDIST_WORKER', 'gw')}-{uuid.uuid4().hex[:6]}"
    env = tool_env() | lab_services
    env |= {"GPULAB_MOLECULE_RUN": run, "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule")}
    if label in ON_MITOGEN:
        env |= on_mitogen()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{label.replace('/', '__')}{run}.log"
    limit = max(SCENARIO_TIMEOUT, 2.5 * 60 * expected_minutes(request.node.nodeid))
    with log.open("w") as fh:
        proc = subprocess.Popen(
            ["molecule", "--base-config", str(BASE_CONFIG), "test", "-s", scenario],
            cwd=project,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop(proc, run)
            pytest.fail(
                f"molecule scenario {label} ran past its limit of {limit:.0f} s (GPULAB_SCENARIO_TIMEOUT); "
                f"stopped it and removed its containers (*{run}); log so far: {log}"
            )
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        pytest.fail(f"molecule scenario {label} failed (rc {rc}); full log: {log}\n{tail}")


def _stop(proc: subprocess.Popen[bytes], run: str) -> None:
    """Stop molecule and the ansible-playbook it started, then remove this run's containers."""
    from gpulab.podman import podman

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    names = podman("ps", "-a", "--filter", "label=owner=molecule", "--format", "{{.Names}}").split()
    mine = [name for name in names if name.endswith(run)]
    if mine:
        podman("rm", "-f", "-t", "0", *mine, check=False)


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (REPO / "roles").glob("*") if (p / "tasks").is_dir())
    with_scenario = {label.split("/")[0] for label, _, _ in SCENARIOS if "/" in label}
    assert roles, "no roles found"
    assert set(roles) <= with_scenario, f"roles without a Molecule scenario: {set(roles) - with_scenario}"
