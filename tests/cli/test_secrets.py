"""No secret in anything the driver writes or prints: sentinel secrets planted in every secret-bearing
variable (inventory group_vars and -e), real runs through ansible-runner on a local host
(fixtures/secrets_project uses each variable the careless way: facts, set_stats, a --diff'ed file, debug,
a failure message), then every byte under the state dir, the --report copy, stdout and stderr is searched.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab.errors import ExitCode
from gpulab.redact import Redactor, inventory_secret_values, secret_values
from tests.cli.helpers import FIXTURES
from tests.conftest import run_gpulab

SECRETS_PROJECT = FIXTURES / "secrets_project"
MARK = "SNTL-"  # every sentinel holds it

# Every variable of roles/*/defaults that can carry a credential, plus generic secret names.
GROUP_VARS: dict[str, Any] = {
    "miniconda_mirror_url": "https://mirroruser:SNTL-mirror-pw@mirror.example/miniconda",
    "miniconda_installer_url": "https://SNTL-installer-token@dl.example/Miniconda3-latest-Linux-x86_64.sh",
    "miniconda_proxy_env": {"https_proxy": "http://proxyuser:SNTL-proxyenv-pw@proxy.example:3128"},
    "miniconda_proxy_servers": {"https": "http://proxyuser:SNTL-proxyservers-pw@proxy.example:3128"},
    "miniconda_channels": ["https://conda.example/t/SNTL-channel-token/main"],
    "miniconda_channel_alias": "https://aliasuser:SNTL-alias-pw@conda.example",
    "miniconda_custom_channels": {"internal": "https://cu:SNTL-custom-pw@conda.example"},
    "miniconda_default_channels": ["https://du:SNTL-default-pw@conda.example/main"],
    "dl_env_channels": ["https://conda.example/t/SNTL-dlchannel-token/conda-forge"],
    "test_api_token": "SNTL-api-token",
    "test_db_password": "SNTL-db-password",
}
INDEX_URL = "https://__token__:SNTL-index-pw@pypi.example/simple"


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "hosts": {"node1": {"ansible_connection": "local"}},
                }
            }
        )
    )
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(GROUP_VARS))
    return inv / "hosts.yml"


def _gpulab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(GPULAB_PROJECT_DIR=str(SECRETS_PROJECT), GPULAB_STATE_DIR=str(tmp_path / "runs"))
    env.pop("ANSIBLE_CONFIG", None)
    return run_gpulab(list(args), env, cwd=tmp_path, timeout=180)


def _leaks(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and MARK.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


@pytest.mark.slow
def test_sentinel_secrets_never_reach_what_gpulab_writes(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    out_dir = tmp_path / "hosts-side"  # what the playbook writes "on the host": secrets belong there
    out_dir.mkdir()
    common = [
        "-i",
        str(inventory),
        "-e",
        f"dl_env_pip_index_url={INDEX_URL}",
        "-e",
        f"test_out_dir={out_dir}",
    ]
    runs = [
        (["provision", *common, "--diff", "--report", "r1.json"], ExitCode.OK),
        (
            ["provision", *common, "--diff", "-e", "test_fail=true", "--report", "r2.json"],
            ExitCode.HOST_FAILED,
        ),
        (["provision", *common, "-e", "test_fail=true", "-v"], ExitCode.HOST_FAILED),
        (["render", *common, "--output", str(out_dir), "-e", "test_fail=true"], ExitCode.HOST_FAILED),
        (["render", *common, "--output", str(out_dir), "--diff"], ExitCode.OK),
    ]
    for args, code in runs:
        proc = _gpulab(tmp_path, *args)
        assert proc.returncode == code, (args, proc.stderr)
        assert MARK not in proc.stdout, (args, proc.stdout)
        assert MARK not in proc.stderr, (args, proc.stderr)
    # the sentinels really went through the playbook (the test is not vacuous) ...
    assert MARK in (out_dir / "node1.condarc").read_text()
    assert MARK in (out_dir / "node1.environment.yml").read_text()
    # ... and nothing gpulab wrote holds one: run artifacts (events, stdout, command, fact cache), reports
    assert _leaks(tmp_path / "runs") == []
    for name in ("r1.json", "r2.json"):
        assert MARK not in (tmp_path / name).read_text()
    report = json.loads((tmp_path / "r2.json").read_text())
    host = report["hosts"]["node1"]
    # masked, still useful: host names and paths stay, credentials go
    assert host["facts"]["miniconda_effective_mirror"] == "https://***@mirror.example/miniconda"
    assert "token ***, password ***" in host["message"]
    assert host["failed_task"] == "Fail the way a download fails"
    # the extravars files held the index URL during the run and are gone after it
    run_dir = Path(report["artifacts"])
    assert not list((run_dir / "env").glob("extravars*"))


def test_redactor_rules() -> None:
    values = secret_values(
        {
            "miniconda_proxy_servers": {"https": "http://u:pw-1234@proxy:3128"},
            "vault_api_token": "tok-abcdef",
            "dl_env_pip_index_url": "https://pypi.example/simple",  # no credentials: nothing to mask
            "miniconda_version": "py313_25.11.1-1",  # not secret
        }
    )
    assert values == {"u:pw-1234", "pw-1234", "tok-abcdef"}
    redact = Redactor(values)
    assert (
        redact.text("via http://u:pw-1234@proxy:3128 and tok-abcdef") == "via http://***@proxy:3128 and ***"
    )
    assert redact.text("https://conda.example/t/abc123xyz/main") == "https://conda.example/t/***/main"
    data = redact.data({"ask_become_pass": True, "db_password": "x1", "msg": "pw-1234", "passed": True})
    assert data == {"ask_become_pass": True, "db_password": "***", "msg": "***", "passed": True}


def test_inventory_secret_values_read_group_vars(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    # a vaulted file (gpulab has no password for it) must not hide the plain ones next to it
    (inventory.parent / "group_vars" / "all.yml").rename(inventory.parent / "group_vars" / "plain.yml")
    (inventory.parent / "group_vars" / "all").mkdir()
    (inventory.parent / "group_vars" / "plain.yml").rename(
        inventory.parent / "group_vars" / "all" / "plain.yml"
    )
    (inventory.parent / "group_vars" / "all" / "vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    (inventory.parent / "group_vars" / "all" / "inline.yml").write_text(
        "db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n"
    )
    values = inventory_secret_values([inventory])
    assert "<vaulted>" not in values
    assert {
        "SNTL-api-token",
        "SNTL-db-password",
        "proxyuser:SNTL-proxyenv-pw",
        "SNTL-channel-token",
    } <= values
    assert not any("mirror.example" in v for v in values)  # only the credentials, never the whole URL
