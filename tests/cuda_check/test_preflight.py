"""cuda_check's preflight, run by real ansible-playbook on the controller: which CUDA candidates and pins
it refuses (the "X.Y" form, checked with the gpulab.gpulab.cuda_version test) and what it says then.

One playbook run covers every case: each case is a host (ansible_connection=local) of a generated inventory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ._load import role_defaults, run_playbook

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "preflight_cases.yml"
TASK = "gpulab.gpulab.cuda_check : preflight | Check the CUDA candidates and the pin"

# case -> (variables, passes)
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "defaults": ({}, True),
    "pin_only": ({"cuda_check_cuda_candidates": [], "cuda_check_cuda_version_pin": "12.4"}, True),
    # An unquoted YAML 12.4 is read as text, as the builtin `match` test the preflight used before did.
    "float_candidate": ({"cuda_check_cuda_candidates": [12.4]}, True),
    "major_only_candidate": ({"cuda_check_cuda_candidates": ["13.0", "12"]}, False),
    "three_part_candidate": ({"cuda_check_cuda_candidates": ["12.4.1"]}, False),
    "bad_pin": ({"cuda_check_cuda_version_pin": "v12.4"}, False),
    "nothing_to_choose": ({"cuda_check_cuda_candidates": [], "cuda_check_cuda_version_pin": ""}, False),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    hosts = {
        name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **variables}
        for name, (variables, _) in CASES.items()
    }
    return run_playbook(PLAYBOOK, tmp_path_factory.mktemp("cuda_check_preflight"), hosts)


@pytest.mark.parametrize("case", [name for name, (_, passes) in CASES.items() if passes])
def test_x_y_candidates_and_pins_pass(run: dict[str, Any], case: str) -> None:
    assert case not in run["failed"], run["failed"][case]
    assert "passed" in run["msgs"][case]


@pytest.mark.parametrize("case", [name for name, (_, passes) in CASES.items() if not passes])
def test_a_bad_candidate_or_pin_is_refused_naming_the_host_and_both_values(
    run: dict[str, Any], case: str
) -> None:
    assert case in run["failed"], run["msgs"].get(case)
    task, msg = run["failed"][case]
    assert task == TASK
    variables = {**role_defaults(), **CASES[case][0]}
    assert msg == (
        f'{case}: cuda_check_cuda_candidates must be a non-empty list of "X.Y" CUDA versions '
        f"(got {json.dumps(variables['cuda_check_cuda_candidates'])}) and cuda_check_cuda_version_pin "
        f'"" or "X.Y" (got {json.dumps(variables["cuda_check_cuda_version_pin"])}).'
    )
