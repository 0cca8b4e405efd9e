"""strategy.py: which strategy the driver gives site.yml's provision play (Mitogen is a gpulab dependency).

That the play really runs on it is shown by the SIGKILL test (tests/cli/test_stop_site.py: the host's Mitogen
interpreter is among the run's processes, and none is left after the kill)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpulab import strategy
from tests.conftest import REPO, VENV_BIN, repo_ansible_env


def test_mitogen_is_given_to_the_provision_play_with_its_plugins_ahead_of_the_users() -> None:
    plan = strategy.plan({}, False, {"ANSIBLE_STRATEGY_PLUGINS": "/srv/my-strategies"})
    assert plan.extravars == {"gpulab_provision_strategy": "mitogen_linear"}
    ours, theirs = plan.envvars["ANSIBLE_STRATEGY_PLUGINS"].split(os.pathsep)
    assert (Path(ours) / "mitogen_linear.py").is_file() and theirs == "/srv/my-strategies"


def test_the_users_choice_or_an_execution_environment_keep_the_configured_strategy() -> None:
    assert strategy.plan({"gpulab_provision_strategy": "linear"}, False, {}) == strategy.Plan()
    assert strategy.plan({}, False, {"ANSIBLE_STRATEGY": "free"}) == strategy.Plan()
    assert strategy.plan({}, True, {}) == strategy.Plan()  # the EE image carries no Mitogen


def test_without_mitogen_installed_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strategy.importlib.util, "find_spec", lambda name: None)
    assert strategy.mitogen_plugins() is None
    assert strategy.plan({}, False, {}) == strategy.Plan()


def test_site_yml_reads_the_strategy_for_its_provision_play_only(tmp_path: Path) -> None:
    """A strategy nobody has: the validate and fast-path plays run (on the configured strategy), the provision
    play does not start."""
    proc = subprocess.run(
        [
            "ansible-playbook",
            str(REPO / "playbooks" / "site.yml"),
            "-i",
            "node1,",
            "-c",
            "local",
            "-e",
            json.dumps(
                {
                    "gpulab_provision_strategy": "nonesuch",
                    "gpulab_state_file": str(tmp_path / "state.json"),
                    "ansible_python_interpreter": sys.executable,
                }
            ),
        ],
        env=repo_ansible_env(PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Invalid play strategy specified: nonesuch" in out, out
    assert "Fast path | Read the host and its record in one round trip" in out and "ok: [node1]" in out, out
    assert "PLAY [Provision GPU nodes]" in out and "Take the gpulab host lock" not in out, out
