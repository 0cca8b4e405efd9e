"""Ansible Vault through gpulab like through ansible-playbook: vaulted -e @file (whole file and !vault
values), vaulted group_vars, --vault-password-file, --vault-id and -J (prompted once by gpulab, answered to
ansible's own prompt by ansible-runner). Fixtures are made with the real ansible-vault CLI; the healthy test
project publishes test_driver_version as the report's driver_version, which shows what ansible decrypted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from gpulab.errors import ExitCode
from tests.cli.helpers import PROJECT

VAULT = str(Path(sys.executable).parent / "ansible-vault")
PASSWORD = "vault-pw-Q7x"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GPULAB_PROJECT_DIR=str(PROJECT), GPULAB_STATE_DIR=str(tmp_path / "runs"))
    env.pop("ANSIBLE_CONFIG", None)
    return env


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-pass"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def _encrypt(path: Path, password_file: Path) -> None:
    subprocess.run([VAULT, "encrypt", "--vault-password-file", str(password_file), str(path)], check=True)


def _gpulab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpulab", "provision", "--limit", "good1", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _driver(tmp_path: Path) -> Any:
    report = json.loads((tmp_path / "runs" / "last" / "report.json").read_text())
    return report["hosts"]["good1"]["driver_version"]


@pytest.mark.slow
def test_vaulted_extra_vars_file_and_group_vars(tmp_path: Path) -> None:
    password_file = _password_file(tmp_path)
    vaulted = tmp_path / "secret.yml"
    vaulted.write_text('test_driver_version: "901.11"\n')
    _encrypt(vaulted, password_file)
    assert vaulted.read_text().startswith("$ANSIBLE_VAULT;")
    healthy = PROJECT / "inventory" / "healthy.yml"

    proc = _gpulab(
        tmp_path, "-i", str(healthy), "-e", "@secret.yml", "--vault-password-file", str(password_file)
    )
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert _driver(tmp_path) == "901.11"
    report = json.loads((tmp_path / "runs" / "last" / "report.json").read_text())
    assert report["options"]["extravars_vaulted_files"] == [str(vaulted)]
    assert "901.11" not in (Path(report["artifacts"]) / "command").read_text()

    # without the password ansible says why; gpulab does not decrypt, so it does not fail first
    proc = _gpulab(tmp_path, "-i", str(healthy), "-e", "@secret.yml")
    assert proc.returncode != ExitCode.OK
    assert "vault" in proc.stdout.lower(), proc.stdout

    # vaulted group_vars next to an inventory, and --vault-id LABEL@FILE
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(healthy, inv / "hosts.yml")
    group_vault = inv / "group_vars" / "all" / "vault.yml"
    group_vault.write_text('test_driver_version: "902.22"\n')
    _encrypt(group_vault, password_file)
    proc = _gpulab(tmp_path, "-i", str(inv / "hosts.yml"), "--vault-id", f"lab@{password_file}")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert _driver(tmp_path) == "902.22"


@pytest.mark.slow
def test_inline_vault_value_in_an_extra_vars_file(tmp_path: Path) -> None:
    password_file = _password_file(tmp_path)
    made = subprocess.run(
        [
            VAULT,
            "encrypt_string",
            "--vault-password-file",
            str(password_file),
            "903.33",
            "--name",
            "test_driver_version",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / "vars.yml").write_text(made.stdout)
    assert "!vault" in made.stdout
    proc = _gpulab(
        tmp_path,
        "-i",
        str(PROJECT / "inventory" / "healthy.yml"),
        "-e",
        "@vars.yml",
        "--vault-password-file",
        str(password_file),
    )
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert _driver(tmp_path) == "903.33"


@pytest.mark.slow
def test_ask_vault_pass_prompts_once_and_answers_ansible(tmp_path: Path) -> None:
    """-J in a terminal: gpulab asks (no echo), ansible-playbook's own prompt is answered by the runner."""
    password_file = _password_file(tmp_path)
    vaulted = tmp_path / "secret.yml"
    vaulted.write_text('test_driver_version: "904.44"\n')
    _encrypt(vaulted, password_file)
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "gpulab",
            "provision",
            "--limit",
            "good1",
            "-i",
            str(PROJECT / "inventory" / "healthy.yml"),
            "-e",
            "@secret.yml",
            "-J",
        ],
        cwd=str(tmp_path),
        env=_env(tmp_path),
        encoding="utf-8",
        timeout=120,
    )
    child.expect("Vault password: ")
    child.sendline(PASSWORD)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.OK, child.before
    assert PASSWORD not in str(child.before)  # not echoed
    assert _driver(tmp_path) == "904.44"
    run_dir = tmp_path / "runs" / "last"
    leaked = [p for p in run_dir.resolve().rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaked == []
    assert not (run_dir / "env" / "passwords").exists()
    assert "--ask-vault-password" in (run_dir / "command").read_text()
