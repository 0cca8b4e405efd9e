"""strategy.py: which strategy the driver gives site.yml's provision play (Mitogen is a gpulab dependency).

That the play really runs on it is shown by the SIGKILL test (tests/cli/test_stop_site.py: the host's Mitogen
interpreter is among the run's processes, and none is left after the kill)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab import strategy
from gpulab.extravars import ExtraVars
from gpulab.runner import RunRequest
from tests.conftest import REPO, VENV_BIN, repo_ansible_env


def _request(tmp_path: Path, hosts: dict[str, Any], playbook: str = "site.yml", **kw: Any) -> RunRequest:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return RunRequest(playbook=REPO / "playbooks" / playbook, inventories=(inventory,), **kw)


SSH_NODE = {"ansible_connection": "ssh", "ansible_host": "10.0.0.5"}


def test_mitogen_is_given_to_the_provision_play_with_its_plugins_ahead_of_the_users(tmp_path: Path) -> None:
    plan = strategy.plan(_request(tmp_path, {"node1": SSH_NODE}), {"ANSIBLE_STRATEGY_PLUGINS": "/srv/mine"})
    assert plan.extravars == {"gpulab_provision_strategy": "mitogen_linear"}
    ours, theirs = plan.envvars["ANSIBLE_STRATEGY_PLUGINS"].split(os.pathsep)
    assert (Path(ours) / "mitogen_linear.py").is_file() and theirs == "/srv/mine"


def test_the_users_choice_an_execution_environment_or_another_playbook_keep_the_configured_strategy(
    tmp_path: Path,
) -> None:
    hosts = {"node1": SSH_NODE}
    linear = ExtraVars(({"gpulab_provision_strategy": "linear"},))
    assert strategy.plan(_request(tmp_path, hosts, extravars=linear), {}) == strategy.Plan()
    assert strategy.plan(_request(tmp_path, hosts), {"ANSIBLE_STRATEGY": "free"}) == strategy.Plan()
    assert strategy.plan(_request(tmp_path, hosts, ee_image="gpulab-ee"), {}) == strategy.Plan()  # no Mitogen
    assert strategy.plan(_request(tmp_path, hosts, playbook="verify.yml"), {}) == strategy.Plan()


def test_without_mitogen_installed_nothing_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strategy.importlib.util, "find_spec", lambda name: None)
    assert strategy.mitogen_plugins() is None
    assert strategy.plan(_request(tmp_path, {"node1": SSH_NODE}), {}) == strategy.Plan()


def test_a_local_host_escalating_to_the_user_gpulab_runs_as_keeps_the_configured_strategy(
    tmp_path: Path,
) -> None:
    """Ansible skips become from root to root on the local connection; Mitogen would run sudo, which a root
    shell without sudo does not have (the default inventory, provisioning this machine as root)."""
    default = RunRequest(REPO / "playbooks" / "site.yml", (REPO / "inventory" / "local",))
    mitogen = {"gpulab_provision_strategy": "mitogen_linear"}
    assert strategy.plan(default, {}).extravars == ({} if getpass.getuser() == "root" else mitogen)

    local = {"ansible_connection": "local"}
    assert strategy.escalates_to_itself([SSH_NODE, local], "root", "ssh", "root")
    assert not strategy.escalates_to_itself([local], "alice", "ssh", "root")  # sudo, with either strategy
    assert strategy.escalates_to_itself([local | {"ansible_become_user": "alice"}], "alice", "ssh", "root")
    assert not strategy.escalates_to_itself([local | {"ansible_become": "false"}], "root", "ssh", "root")
    assert strategy.escalates_to_itself([{}], "root", "local", "root")  # `-c local`
    assert not strategy.escalates_to_itself([SSH_NODE], "root", "local", "root")  # the host's own wins
    # Read from the inventory: a host that does not escalate keeps Mitogen.
    request = _request(tmp_path, {"node1": local | {"ansible_become": False}})
    assert strategy.plan(request, {}).extravars == mitogen


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
