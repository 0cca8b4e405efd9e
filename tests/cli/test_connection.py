"""ansible-playbook's connection/privilege/vault options in gpulab, the passwords they ask for, extravars
in files, and the changed-host-key message."""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from gpulab import cli, connection
from gpulab import extravars as xvars
from gpulab.errors import ExitCode, UsageError
from gpulab.events import RunState, apply_event
from tests.cli.helpers import FIXTURES, PROJECT, project_env, run_gpulab

HEALTHY = PROJECT / "inventory" / "healthy.yml"


def _args(*argv: str) -> Any:
    return cli.build_parser().parse_args(["provision", *argv])


def test_options_keep_ansible_playbooks_names_and_meaning(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    vault_file = tmp_path / "vault-pass"
    vault_file.write_text("pw")
    args = _args(
        "-u",
        "admin",
        "-c",
        "ssh",
        "--key-file",
        str(key),
        "-T",
        "30",
        "--ssh-common-args",
        "-o ProxyJump=bastion",
        "--ssh-extra-args=-o ControlPersist=60s",
        "-k",
        "-b",
        "--become-user",
        "root",
        "--become-method",
        "sudo",
        "-K",
        "--vault-id",
        f"lab@{vault_file}",
        "--vault-id",
        "prod@prompt",
        "--vault-password-file",
        str(vault_file),
    )
    options = connection.from_args(args)
    assert options.cmdline() == [
        "--user=admin",
        "--connection=ssh",
        f"--private-key={key}",
        "--timeout=30",
        "--ssh-common-args=-o ProxyJump=bastion",
        "--ssh-extra-args=-o ControlPersist=60s",
        "--become-method=sudo",
        "--become-user=root",
        "--ask-pass",
        "--become",
        "--ask-become-pass",
        f"--vault-id=lab@{vault_file}",
        "--vault-id=prod@prompt",
        f"--vault-password-file={vault_file}",
    ]
    summary = options.summary()
    assert summary["vault_ids"] == ["lab", "prod"] and summary["ask_become_pass"] is True
    # ansible-playbook itself accepts the same arguments (its own parser, no run)
    from ansible.cli.playbook import PlaybookCLI  # type: ignore[import-untyped]

    parsed = PlaybookCLI(["ansible-playbook", *options.cmdline(), "site.yml"])
    parsed.parser = None
    parsed.init_parser()
    ns = parsed.parser.parse_args([*options.cmdline(), "site.yml"])
    assert (ns.remote_user, ns.timeout, ns.become_user, ns.ssh_common_args) == (
        "admin",
        30,
        "root",
        "-o ProxyJump=bastion",
    )
    assert ns.ask_pass and ns.become_ask_pass and ns.become


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--private-key", "nope"], "--private-key nope: no such file"),
        (["--become-password-file", "nope"], "--become-password-file nope: no such file"),
        (["--vault-password-file", "nope"], "--vault-password-file nope: no such file"),
        (["--vault-id", "lab@nope"], "--vault-id lab@nope: no such file"),
        (["-T", "0"], "--timeout must be at least 1"),
        (["-k", "--connection-password-file", "x"], "not allowed with argument"),
        (["-J", "--vault-password-file", "x"], "not allowed with argument"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        connection.from_args(_args(*argv))


def test_each_password_is_asked_once_and_matches_ansibles_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    answers = {"SSH password: ": "ssh-pw", "BECOME password[defaults to SSH password]: ": ""}

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answers.get(prompt, f"pw-{len(asked)}")

    options = connection.ConnectionOptions(
        ask_pass=True, ask_become_pass=True, ask_vault_pass=True, vault_ids=("prod@prompt",)
    )
    passwords = options.ask_passwords(ask)
    assert asked == [
        "SSH password: ",
        "BECOME password[defaults to SSH password]: ",
        "Vault password: ",
        "Vault password (prod): ",
    ]
    # an empty become password means "same as SSH", as in ansible-playbook
    assert list(passwords.values()) == ["ssh-pw", "ssh-pw", "pw-3", "pw-4"]

    # the regexes answer exactly the prompts ansible-core prints (its own code, prompts captured)
    from ansible import context
    from ansible.cli import CLI  # type: ignore[import-untyped]
    from ansible.module_utils.common.collections import ImmutableDict  # type: ignore[import-untyped]
    from ansible.parsing.vault import PromptVaultSecret  # type: ignore[import-untyped]

    printed: list[str] = []
    monkeypatch.setattr(CLI, "_get_secret", staticmethod(lambda prompt: printed.append(prompt) or "x"))
    for ask_pass in (True, False):
        monkeypatch.setattr(
            context,
            "CLIARGS",
            ImmutableDict(
                ask_pass=ask_pass,
                become_ask_pass=True,
                become_method="sudo",
                connection_password_file=None,
                become_password_file=None,
            ),
        )
        CLI.ask_passwords()
    assert printed == ["SSH password: ", "BECOME password[defaults to SSH password]: ", "BECOME password: "]

    def which(prompt: str) -> list[str]:
        return [regex for regex in passwords if re.search(regex, prompt, re.M)]

    assert which(printed[0]) == [connection.SSH_PROMPT]
    assert which(printed[1]) == which(printed[2]) == [connection.BECOME_PROMPT]
    assert which(PromptVaultSecret.default_prompt_formats[0] % "prod") == [connection.vault_id_prompt("prod")]
    assert which("Vault password: ") == [connection.VAULT_PROMPT]


@pytest.mark.slow
def test_k_and_K_answer_ansible_and_leave_no_password_anywhere(tmp_path: Path) -> None:
    """-k -K in a terminal: gpulab asks once; ansible-playbook's prompts are answered (else it would hang)."""
    env = project_env(tmp_path)
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "gpulab",
            "provision",
            "-i",
            str(HEALTHY),
            "-k",
            "-K",
            "-u",
            "admin",
            "-T",
            "17",
            "-e",
            "db_password=SNTL-extravar",
        ],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=120,
    )
    child.expect_exact("SSH password: ")
    child.sendline("SNTL-ssh-pw")
    child.expect_exact("BECOME password[defaults to SSH password]: ")
    child.sendline("SNTL-become-pw")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.OK, child.before
    assert "SNTL" not in str(child.before)
    run_dir = (tmp_path / "runs" / "last").resolve()
    command = json.loads((run_dir / "command").read_text())
    argv = command["command"]
    assert {"--ask-pass", "--ask-become-pass", "--user=admin", "--timeout=17"} <= set(argv)
    assert not any("SNTL" in value for value in command["env"].values())  # nor in the child's environment
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and b"SNTL" in p.read_bytes()]
    assert leaked == []
    assert not (run_dir / "env" / "passwords").exists() and not (run_dir / "env" / "ssh_key").exists()


def test_extravars_go_in_0600_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("x: from-file\n")
    (tmp_path / "vaulted.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    (tmp_path / "inline.yml").write_text(
        "y: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\nz: !unsafe '{{ a }}'\n"
    )
    extra = xvars.plan(
        ["x=1", "s=hunter2", "@a.yml", "@vaulted.yml", "@inline.yml", '{"x": "last"}'], tmp_path
    )
    assert extra.known() == {"x": "last", "s": "hunter2", "y": "<vaulted>", "z": "{{ a }}"}
    assert extra.vaulted_files() == [str(tmp_path / "vaulted.yml")]
    run_dir = tmp_path / "run"
    args = xvars.write(extra, {"gpulab_run_id": "r1"}, run_dir)
    env = run_dir / "env"
    assert args == [
        f"--extra-vars=@{env / 'extravars-00.json'}",
        f"--extra-vars=@{tmp_path / 'a.yml'}",
        f"--extra-vars=@{tmp_path / 'vaulted.yml'}",
        f"--extra-vars=@{tmp_path / 'inline.yml'}",
        f"--extra-vars=@{env / 'extravars-04.json'}",
    ]
    assert "hunter2" not in " ".join(args)
    assert json.loads((env / "extravars-00.json").read_text()) == {"x": "1", "s": "hunter2"}
    assert json.loads((env / "extravars").read_text()) == {"gpulab_run_id": "r1"}
    for path in env.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    xvars.remove_files(run_dir)
    assert list(env.iterdir()) == []


def test_key_value_extravars_parse_like_ansible_playbook() -> None:
    """ansible's own parse_kv: several pairs in one -e, quoting; an empty -e is skipped, as ansible does."""
    extra = xvars.plan(['a=1 b="two words"', "c=x=y", "", "msg='hello there'"])
    assert extra.known() == {"a": "1", "b": "two words", "c": "x=y", "msg": "hello there"}
    with pytest.raises(UsageError, match="unbalanced"):
        xvars.plan(['a="open'])


@pytest.mark.slow
def test_extravars_never_on_the_command_line_and_later_wins(tmp_path: Path) -> None:
    (tmp_path / "v.yml").write_text('test_driver_version: "2.0"\n')
    env = project_env(tmp_path)

    def run(*extra: str) -> dict[str, Any]:
        proc = run_gpulab("provision", "-i", str(HEALTHY), "--limit", "good1", *extra, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        report: dict[str, Any] = json.loads((tmp_path / "runs" / "last" / "report.json").read_text())
        return report

    report = run("-e", "test_driver_version=1.0", "-e", "@v.yml", "-e", "token=SNTL-cmdline")
    assert report["hosts"]["good1"]["driver_version"] == "2.0"  # the file came later: it wins
    run_dir = Path(report["artifacts"])
    command = (run_dir / "command").read_text()
    assert "SNTL" not in command and "test_driver_version=1.0" not in command and "@" in command
    assert not list((run_dir / "env").glob("extravars*"))  # removed after the run
    report = run("-e", "@v.yml", "-e", "test_driver_version=3.0")
    assert report["hosts"]["good1"]["driver_version"] == "3.0"


def test_host_key_advice_without_ssh_hint_uses_the_offending_file() -> None:
    from gpulab.events import host_key_advice

    text = (
        "Failed to connect to the host via ssh: @ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\r\n"
        "Offending key in /srv/lab/ssh/known_hosts:7\r\nHost key verification failed."
    )
    advice = host_key_advice("gpu-1", {"msg": text})
    assert "`ssh-keygen -f /srv/lab/ssh/known_hosts -R gpu-1`" in advice
    assert host_key_advice("gpu-1", {"msg": "Connection refused"}) == ""


def test_changed_host_key_says_which_host_and_what_to_do() -> None:
    events = json.loads((FIXTURES / "ssh_host_key_changed.events.json").read_text())
    state = RunState()
    lines = [apply_event(state, event) for event in events]
    a, b = state.hosts["node-a"], state.hosts["node-b"]
    assert a.status == b.status == "unreachable"
    assert "the SSH host key of node-a changed" in a.message
    # ssh's own command: the known_hosts file that holds the key, ssh's target (address, port), not the alias
    assert "`ssh-keygen -f /home/deivit/.ssh/known_hosts -R 192.168.56.10`" in a.message
    assert "`ssh-keygen -f /home/user/.ssh/known_hosts -R 10.1.10.200`" in b.message
    assert "reinstalled" in a.message and "attack" in a.message
    assert lines[0] is not None and "node-a" in lines[0] and "ssh-keygen -f" in lines[0]
    # the summary repeats the advice whole under the table
    from gpulab.report import build_report, render_summary

    report = build_report(
        state,
        ident="i",
        command="provision",
        playbook="p",
        inventories=[],
        options={},
        started_at="",
        ended_at="",
        runner_status="failed",
        rc=4,
        cancelled=False,
        run_dir="r",
    )
    summary = render_summary(report)
    assert report["exit_code"] == ExitCode.HOST_UNREACHABLE
    assert f"node-a: {a.message}" in summary.splitlines()


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ("Task failed: Incorrect sudo password", "the sudo password was rejected: give it with -K"),
        ("Task failed: Missing sudo password", "the sudo password is needed: give it with -K"),
        ("Task failed: something else", None),
    ],
)
def test_become_password_failures_say_which_option_gives_it(msg: str, expected: str | None) -> None:
    """The messages ansible's ssh connection raises (plugins/connection/ssh.py, 'Incorrect %s password')."""
    events = json.loads((FIXTURES / "mixed.events.json").read_text())
    failed = next(e for e in events if e["event"] == "runner_on_failed")
    failed["event_data"]["res"]["msg"] = msg
    state = RunState()
    apply_event(state, failed)
    host = state.hosts[failed["event_data"]["host"]]
    assert host.status == "failed"
    if expected is None:
        assert host.message == msg
    else:
        assert host.message.startswith(msg) and expected in host.message
