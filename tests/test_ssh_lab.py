"""The path real clusters take: lab nodes reached over SSH as `admin`, whose sudo asks for a password.

One two-node SSH lab (`gpulab lab up --connection ssh --sudo-password`) for the module, driven by
`gpulab provision/check -K` through a pty (pexpect answers the password prompt as a user would):
provision + idempotent re-run with pipelining and ControlPersist in effect, a wrong sudo password, a
node whose sshd is down, and a node whose host key changed. Also `python -m gpulab.lab.ssh serve` (the
Molecule hosts' SSH set-up, which every scenario runs) on a container that is not there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect  # type: ignore[import-untyped]
import pytest
import yaml

from gpulab.errors import ExitCode
from tests.conftest import REPO, require_containers, run_gpulab, tool_env

pytestmark = [pytest.mark.containers, pytest.mark.slow]

GPU, CPU = "ssh-gpu", "ssh-cpu"
PROMPT = r"(?i)become password[^\r\n]*:"


@dataclass
class SshLab:
    env: dict[str, str]
    inventory: Path
    password: str
    control_dir: Path
    base: Path


def _gpulab(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gpulab(args, env)


def _gpulab_k(lab: SshLab, args: list[str], password: str, timeout: int = 900) -> tuple[int, str]:
    """`gpulab ARGS -K` on a pty: answer the become password prompt once; (exit code, output)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "gpulab", *args, "-K", "-i", str(lab.inventory)],
        cwd=str(REPO),
        env=lab.env,
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
        dimensions=(50, 200),
    )
    child.expect(PROMPT, timeout=60)
    child.sendline(password)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"gpulab was killed by signal {child.signalstatus}"
    return int(child.exitstatus), str(child.before)


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="module")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    require_containers()
    base = tmp_path_factory.mktemp("ssh-lab")
    control_dir = base / "cp"  # this module's ControlPersist sockets, so the test can see them
    env = tool_env() | {
        "GPULAB_LAB_DIR": str(base / "lab"),
        "GPULAB_STATE_DIR": str(base / "runs"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
    }
    up = _gpulab(
        ["lab", "up", "--connection", "ssh", "--sudo-password", "--nodes", f"{GPU}=l40s-595.80,{CPU}=none"],
        env,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        password_file = base / "lab" / "ssh" / "sudo-password"
        password = password_file.read_text().strip()
        assert password and password not in up.stdout + up.stderr  # printed: where it is, never what
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert (base / "lab" / "ssh" / "id_ed25519").stat().st_mode & 0o777 == 0o600
        yield SshLab(env, base / "lab" / "inventory" / "hosts.yml", password, control_dir, base)
    finally:
        down = _gpulab(["lab", "down"], env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not (base / "lab" / "ssh").exists()  # key pair and password go with the lab


def test_inventory_uses_plain_ssh_with_lab_files_and_no_password(ssh_lab: SshLab) -> None:
    text = ssh_lab.inventory.read_text()
    inv = yaml.safe_load(text)
    group_vars = inv["all"]["vars"]
    assert group_vars["ansible_connection"] == "ssh"
    assert group_vars["ansible_user"] == "admin" and group_vars["ansible_become"] is True
    ssh_dir = ssh_lab.base / "lab" / "ssh"
    assert group_vars["ansible_ssh_private_key_file"] == str(ssh_dir / "id_ed25519")
    assert f"UserKnownHostsFile={ssh_dir / 'known_hosts'}" in group_vars["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=accept-new" in group_vars["ansible_ssh_common_args"]
    hosts = {**inv["all"]["children"]["gpu_nodes"]["hosts"], **inv["all"]["children"]["cpu_nodes"]["hosts"]}
    assert {h["ansible_host"] for h in hosts.values()} == {"127.0.0.1"}
    assert len({h["ansible_port"] for h in hosts.values()}) == 2  # one sshd port per node
    assert ssh_lab.password not in text
    assert "become_pass" not in text and "ansible_password" not in text


def test_provision_over_ssh_with_sudo_password_then_rerun_changes_nothing(ssh_lab: SshLab) -> None:
    first = ssh_lab.base / "first.json"
    rc, out = _gpulab_k(ssh_lab, ["provision", "--report", str(first)], ssh_lab.password)
    data = _report(first)
    assert rc == ExitCode.OK, out[-3000:]
    assert data["status"] == "ok" and set(data["hosts"]) == {GPU, CPU}
    assert data["options"]["strategy"] == "mitogen_linear"  # the full runs on Mitogen, sudo password and all
    for name, host in data["hosts"].items():
        assert host["status"] == "ok", (name, host["message"])
        assert host["mlp_check"]["passed"] is True, (name, host["mlp_check"])

    # The re-run changes nothing; at -vvv, pipelining shows as no module file copied to any node.
    second = ssh_lab.base / "second.json"
    rc, out = _gpulab_k(ssh_lab, ["provision", "-vvv", "--report", str(second)], ssh_lab.password)
    data = _report(second)
    assert rc == ExitCode.OK, out[-3000:]
    assert {name: host["counts"]["changed"] for name, host in data["hosts"].items()} == {GPU: 0, CPU: 0}
    stdout = (Path(data["artifacts"]) / "stdout").read_text(errors="replace")
    assert "ControlPersist=60s" in stdout and "BECOME-SUCCESS" in stdout  # sudo ran through the master
    puts = [line for line in stdout.splitlines() if "PUT " in line and "AnsiballZ_" in line]
    assert puts == [], puts[:3]

    # ControlPersist: a master per host is still listening after the run, and answers `ssh -O check` (the
    # linear plays' connection; the provision play of the first run had Mitogen's own, one per host).
    sockets = sorted(p for p in ssh_lab.control_dir.iterdir() if p.is_socket())
    assert len(sockets) == 2, sockets
    for sock in sockets:
        check = subprocess.run(
            ["ssh", "-O", "check", "-o", f"ControlPath={sock}", "lab-node"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0 and "Master running" in check.stderr, check.stderr

    # The password reached nothing on disk: not the reports, not the run's artifacts.
    for path in (ssh_lab.base / "runs").rglob("*"):
        if path.is_file():
            assert ssh_lab.password not in path.read_text(errors="replace"), path
    for path in (first, second):
        assert ssh_lab.password not in path.read_text()

    # `gpulab envs` over the same SSH + sudo-password connection: each node's env, its digest and last check.
    rc, out = _gpulab_k(ssh_lab, ["envs", "--json"], ssh_lab.password, timeout=300)
    assert rc == ExitCode.OK, out[-3000:]
    listed = json.loads(out[out.index("{") :].replace("\r\n", "\n"))
    assert listed["failed"] == {} and listed["unreachable"] == {} and set(listed["hosts"]) == {GPU, CPU}
    for name, host in listed["hosts"].items():
        env = host["envs"]["gpulab"]
        assert len(env["digest"]) == 64 and env["check"]["passed"] is True, (name, env)
        assert env["bytes"] > 0 and host["total_bytes"] >= env["bytes"], (name, host)


def test_wrong_sudo_password_is_a_host_failure_not_a_hang(ssh_lab: SshLab) -> None:
    report = ssh_lab.base / "wrong.json"
    rc, out = _gpulab_k(ssh_lab, ["check", "--report", str(report)], "not-the-password", timeout=300)
    data = _report(report)
    assert rc == ExitCode.HOST_FAILED, out[-3000:]
    for name, host in data["hosts"].items():
        assert host["status"] == "failed", (name, host)
        assert "sudo password" in (host["message"] or "").lower(), (name, host["message"])


def test_node_with_sshd_down_is_unreachable_and_the_others_finish(ssh_lab: SshLab) -> None:
    stop = _gpulab(["lab", "sshd", CPU, "stop"], ssh_lab.env)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    try:
        report, out_dir = ssh_lab.base / "sshd-down.json", ssh_lab.base / "rendered"
        rc, out = _gpulab_k(
            ssh_lab, ["render", "--output", str(out_dir), "--report", str(report)], ssh_lab.password, 600
        )
        data = _report(report)
        assert rc == ExitCode.HOST_UNREACHABLE, out[-3000:]
        assert data["hosts"][CPU]["status"] == "unreachable", data["hosts"][CPU]
        assert data["hosts"][GPU]["status"] == "ok", data["hosts"][GPU]["message"]
        assert (out_dir / GPU / "environment.yml").is_file()  # the reachable node finished its work
        assert not (out_dir / CPU).exists()
    finally:
        start = _gpulab(["lab", "sshd", CPU, "start"], ssh_lab.env)
        assert start.returncode == 0, start.stdout + start.stderr


def test_changed_host_key_names_the_host_and_what_to_do(ssh_lab: SshLab) -> None:
    rekey = _gpulab(["lab", "sshd", GPU, "new-host-keys"], ssh_lab.env)
    assert rekey.returncode == 0, rekey.stdout + rekey.stderr
    try:
        report = ssh_lab.base / "rekeyed.json"
        rc, out = _gpulab_k(
            ssh_lab, ["check", "--limit", GPU, "--report", str(report)], ssh_lab.password, timeout=300
        )
        data = _report(report)
        assert rc == ExitCode.HOST_UNREACHABLE, out[-3000:]
        message = data["hosts"][GPU]["message"] or ""
        port = yaml.safe_load(ssh_lab.inventory.read_text())["all"]["children"]["gpu_nodes"]["hosts"][GPU][
            "ansible_port"
        ]
        assert GPU in message and "host key" in message.lower(), message
        # What to do, exactly: remove this entry from the known_hosts file that holds it (the lab's own, as
        # any UserKnownHostsFile: `ssh-keygen -R` without `-f` would edit ~/.ssh/known_hosts instead).
        known_hosts = ssh_lab.base / "lab" / "ssh" / "known_hosts"
        assert "ssh-keygen" in message and f"[127.0.0.1]:{port}" in message, message
        assert str(known_hosts) in message, message
        assert GPU in out and "host key" in out  # also on the terminal, not only in the report
    finally:
        trust = _gpulab(["lab", "sshd", GPU, "trust"], ssh_lab.env)
        assert trust.returncode == 0, trust.stdout + trust.stderr


def test_serve_names_the_container_it_cannot_reach_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m gpulab.lab.ssh serve` (Molecule's create) on a container that does not exist: a one-line
    message naming it, exit 1, no traceback, and no port handed out."""
    require_containers()
    from gpulab.lab import ssh

    assert ssh.main(["serve", "--dir", str(tmp_path), "gpulab-no-such-container"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("gpulab: ") and "gpulab-no-such-container" in out, out
    assert not ssh.files(tmp_path).known_hosts.exists()
