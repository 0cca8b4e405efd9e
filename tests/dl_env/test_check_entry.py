"""`tasks_from: check`: the MLP check's JSON becomes run-level set_stats, and a failed or broken check
fails the host with its reason. The env's python is a stand-in script that prints a given result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ._load import run_role_entry

RESULTS = {
    "good": (
        0,
        {
            "passed": True,
            "backend": "numpy",
            "device": "cpu",
            "gpu_name": None,
            "reason": None,
            "tasks": {
                "xor": {"loss": 0.4, "accuracy": 1.0, "seconds": 0.1},
                "spirals": {"loss": 0.05, "accuracy": 0.995, "seconds": 2.0},
            },
        },
    ),
    "bad": (
        1,
        {"passed": False, "backend": "numpy", "device": "cpu", "reason": "spirals: accuracy 0.61 < 0.99"},
    ),
    "broken": (4, None),
}


def fake_env(root: Path, host: str) -> Path:
    rc, result = RESULTS[host]
    envs = root / host / "envs"
    (envs / "gpulab" / "bin").mkdir(parents=True)
    body = (
        f"print({json.dumps(json.dumps(result))})"
        if result
        else "import sys; sys.stderr.write('ImportError: numpy\\n')"
    )
    python = envs / "gpulab" / "bin" / "python"
    python.write_text(f"#!{sys.executable}\nimport sys\n{body}\nsys.exit({rc})\n", encoding="utf-8")
    python.chmod(0o755)
    return envs


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("dl_env_check")
    hosts = {
        h: {"dl_env_envs_dir": str(fake_env(tmp, h)), "dl_env_spec_dir": str(tmp / h / "spec")}
        for h in RESULTS
    }
    for h in RESULTS:
        (tmp / h / "spec").mkdir()
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "hosts": {**hosts, "no-env": {"dl_env_envs_dir": str(tmp / "none"), "dl_env_spec_dir": str(tmp)}},
        }
    }
    proc = run_role_entry(
        tmp, inventory, "check", ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_SHOW_CUSTOM_STATS="1"
    )
    return {"proc": proc, "out": json.loads(proc.stdout)}


def test_stats_carry_the_check_per_host(run: dict[str, Any]) -> None:
    stats = run["out"]["global_custom_stats"]["gpulab"]
    good = stats["good"]
    assert good["passed"] is True and good["backend"] == "numpy" and good["device"] == "cpu"
    assert good["loss"] == 0.05 and good["accuracy"] == 0.995 and good["seconds"] == 2.1
    assert good["env_action"] == "checked" and good["env_prefix"].endswith("/good/envs/gpulab")
    assert good["pin_changes"] == []  # a check renders no spec, so it changes no pin
    assert stats["bad"]["passed"] is False and stats["bad"]["reason"] == "spirals: accuracy 0.61 < 0.99"
    assert stats["broken"]["passed"] is False and "ImportError: numpy" in stats["broken"]["reason"]


def test_failed_checks_fail_the_host_with_the_reason(run: dict[str, Any]) -> None:
    assert run["proc"].returncode == 2
    summary = run["out"]["stats"]
    assert summary["good"]["failures"] == 0
    assert all(summary[h]["failures"] == 1 for h in ("bad", "broken", "no-env"))
    text = run["proc"].stdout
    assert "The MLP check failed in environment gpulab" in text and "spirals: accuracy 0.61 < 0.99" in text
    assert "There is no environment gpulab at" in text
