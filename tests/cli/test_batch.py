"""Rolling runs: `gpulab provision --batch N|P% [--max-fail P]` (site.yml's `serial` and
`max_fail_percentage`), run for real on five local hosts of the stand-in project, one of which fails."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab.cli import batch_size, percentage
from gpulab.events import Batch, RunState
from gpulab.report import rollout
from tests.cli.helpers import PROJECT, project_env
from tests.conftest import REPO, repo_ansible_env, run_gpulab

ROLLING = PROJECT / "inventory" / "rolling.yml"
KEYWORDS = ("serial", "max_fail_percentage")


def _provision(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / "report.json"
    proc = run_gpulab(
        ["provision", "-i", str(ROLLING), "--report", str(report), *args], project_env(tmp_path), cwd=tmp_path
    )
    return proc.returncode, json.loads(report.read_text()), proc.stdout + proc.stderr


def test_site_yml_has_the_rolling_keywords_the_stand_in_tests() -> None:
    real = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    stand_in = yaml.safe_load((PROJECT / "playbooks" / "site.yml").read_text())
    provision = next(play for play in real if play.get("name") == "Provision GPU nodes")
    assert {k: provision[k] for k in KEYWORDS} == {k: stand_in[0][k] for k in KEYWORDS}


@pytest.mark.slow
def test_a_failed_first_batch_stops_the_rollout(tmp_path: Path) -> None:
    rc, report, out = _provision(tmp_path, "--batch", "2")
    assert rc == 2, out
    assert report["batches"] == [
        {"play": "Provision test hosts", "batch": 1, "hosts": ["r1", "r2"], "stopped": True}
    ]
    status = {name: host["status"] for name, host in report["hosts"].items()}
    assert status == {"r1": "stopped", "r2": "failed"} | dict.fromkeys(["r3", "r4", "r5"], "not-reached")
    # r1 was cut short at the task where r2 failed: its later tasks never ran
    assert report["hosts"]["r1"]["env_action"] is None
    stopped = report["hosts"]["r1"]["message"]
    assert "stopped when r2 failed at 'Fail where the inventory asks for it'" in stopped
    assert "stopped after batch 1 (r2 failed; --max-fail 0%)" in report["hosts"]["r3"]["message"]
    assert report["hosts"]["r3"]["counts"]["ok"] == 0
    assert report["options"]["batch"] == "2" and report["options"]["max_fail_percentage"] == 0
    assert "not reached: r3, r4, r5" in out


@pytest.mark.slow
def test_max_fail_lets_the_rollout_go_on_and_percent_batches(tmp_path: Path) -> None:
    rc, report, out = _provision(tmp_path, "--batch", "40%", "--max-fail", "50")
    assert rc == 2, out  # r2 still failed
    assert [b["hosts"] for b in report["batches"]] == [["r1", "r2"], ["r3", "r4"], ["r5"]]
    assert not any(b["stopped"] for b in report["batches"])
    status = {name: host["status"] for name, host in report["hosts"].items()}
    assert status == {"r1": "ok", "r2": "failed", "r3": "ok", "r4": "ok", "r5": "ok"}
    assert "not reached" not in out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch", "reached"), [("2", {"r1", "r2"}), ("100%", {"r1", "r2", "r3", "r4", "r5"})]
)
def test_the_playbooks_own_max_fail_default(tmp_path: Path, batch: str, reached: set[str]) -> None:
    """What a plain ansible-playbook or AWX run gets with only gpulab_batch set (docs/awx.md): a rolling run
    stops after the failed batch; with every host in one batch, r2's failure does not stop the others."""
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(ROLLING),
            str(PROJECT / "playbooks" / "site.yml"),
            "-e",
            f"gpulab_batch={batch}",
        ],
        env=repo_ansible_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP") :]
    assert {line.split()[0] for line in recap.splitlines()[1:] if ":" in line} == reached, proc.stdout
    assert proc.returncode == 2


@pytest.mark.slow
def test_without_batch_every_host_runs_at_once(tmp_path: Path) -> None:
    rc, report, _ = _provision(tmp_path)
    assert rc == 2
    assert report["batches"] == [] and report["options"]["batch"] is None
    assert sorted(h["status"] for h in report["hosts"].values()) == ["failed", "ok", "ok", "ok", "ok"]


def test_rollout_picks_the_batched_play_over_a_run_once_validate_play() -> None:
    state = RunState(batches=[Batch("Validate", ["a"]), Batch("Provision", ["a", "b"])])
    assert rollout(state, ["a", "b", "c"]) == (
        [{"play": "Provision", "batch": 1, "hosts": ["a", "b"], "stopped": False}],
        ["c"],
    )


@pytest.mark.parametrize(("text", "value"), [("1", "1"), ("20%", "20%"), ("100%", "100%")])
def test_batch_sizes(text: str, value: str) -> None:
    assert batch_size(text) == value


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "x", "2.5", ""])
def test_bad_batch_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a batch size"):
        batch_size(text)


def test_percentages() -> None:
    assert percentage("0") == 0 and percentage("25%") == 25
    with pytest.raises(argparse.ArgumentTypeError):
        percentage("150")


def test_max_fail_without_batch_is_a_usage_error(tmp_path: Path) -> None:
    argv = ["provision", "-i", str(ROLLING), "--max-fail", "10"]
    proc = run_gpulab(argv, project_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 5
    assert "--max-fail needs --batch" in proc.stderr
