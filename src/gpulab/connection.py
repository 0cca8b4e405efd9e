"""ansible-playbook's connection, privilege-escalation and vault options, and the passwords they ask for.

The options keep ansible-playbook's names and meaning and are passed through to it on its command line
(never a secret there: only file paths and switches). Passwords are asked once here, without echo, and
handed to ansible-runner as ``passwords={prompt regex: answer}``: ansible-playbook prints its own prompt in
the runner's pty and the runner answers it. They are never written to ``env/passwords`` (the driver runs
with ``suppress_env_files``), never put in a child's environment and never on a command line.
"""

from __future__ import annotations

import argparse
import getpass
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gpulab.errors import UsageError

# The prompts ansible-playbook 2.19 prints (ansible/cli/__init__.py ask_passwords and setup_vault_secrets).
# The become prompt names the method unless AGNOSTIC_BECOME_PROMPT (default) makes it "BECOME".
SSH_PROMPT = r"^SSH password:\s*$"
BECOME_PROMPT = r"^(?!SSH )[A-Z][A-Z0-9_]* password(\[defaults to SSH password\])?:\s*$"
VAULT_PROMPT = r"^Vault password:\s*$"


def vault_id_prompt(label: str) -> str:
    """The prompt regex ansible prints for ``--vault-id LABEL@prompt``."""
    return rf"^Vault password \({re.escape(label)}\):\s*$"


Asker = Callable[[str], str]


@dataclass(frozen=True)
class ConnectionOptions:
    """What the user passed; ``cmdline()`` turns it back into ansible-playbook arguments."""

    user: str | None = None
    connection: str | None = None
    private_key: Path | None = None
    timeout: int | None = None
    ssh_common_args: str | None = None
    ssh_extra_args: str | None = None
    ask_pass: bool = False
    connection_password_file: Path | None = None
    become: bool = False
    become_method: str | None = None
    become_user: str | None = None
    ask_become_pass: bool = False
    become_password_file: Path | None = None
    vault_ids: tuple[str, ...] = ()
    vault_password_files: tuple[Path, ...] = ()
    ask_vault_pass: bool = False

    def cmdline(self) -> list[str]:
        """ansible-playbook arguments (argv form); file paths and switches only."""
        args: list[str] = []
        pairs: list[tuple[str, object]] = [
            ("--user", self.user),
            ("--connection", self.connection),
            ("--private-key", self.private_key),
            ("--timeout", self.timeout),
            ("--ssh-common-args", self.ssh_common_args),
            ("--ssh-extra-args", self.ssh_extra_args),
            ("--connection-password-file", self.connection_password_file),
            ("--become-method", self.become_method),
            ("--become-user", self.become_user),
            ("--become-password-file", self.become_password_file),
        ]
        for flag, value in pairs:
            if value is not None:
                # "--opt=value": ssh arguments start with "-" and must not read as an option
                args.append(f"{flag}={value}")
        if self.ask_pass:
            args.append("--ask-pass")
        if self.become:
            args.append("--become")
        if self.ask_become_pass:
            args.append("--ask-become-pass")
        args += [f"--vault-id={vault_id}" for vault_id in self.vault_ids]
        args += [f"--vault-password-file={path}" for path in self.vault_password_files]
        if self.ask_vault_pass:
            args.append("--ask-vault-password")
        return args

    def cmdline_text(self) -> str:
        return shlex.join(self.cmdline())

    def summary(self) -> dict[str, object]:
        """The options for the report: switches and names, no secret (password files by path only)."""
        return {
            "user": self.user,
            "connection": self.connection,
            "private_key": str(self.private_key) if self.private_key else None,
            "timeout": self.timeout,
            "ssh_common_args": self.ssh_common_args,
            "ssh_extra_args": self.ssh_extra_args,
            "ask_pass": self.ask_pass,
            "become": self.become,
            "become_method": self.become_method,
            "become_user": self.become_user,
            "ask_become_pass": self.ask_become_pass,
            "vault_ids": [v.split("@", 1)[0] for v in self.vault_ids],
            "vault_password_files": len(self.vault_password_files),
            "ask_vault_pass": self.ask_vault_pass,
        }

    def ask_passwords(self, ask: Asker = getpass.getpass) -> dict[str, str]:
        """Prompt once for each password the options ask for; ``{prompt regex: answer}`` for the runner."""
        answers: dict[str, str] = {}
        ssh_password = ""
        if self.ask_pass:
            ssh_password = ask("SSH password: ")
            answers[SSH_PROMPT] = ssh_password
        if self.ask_become_pass:
            label = "BECOME password[defaults to SSH password]: " if self.ask_pass else "BECOME password: "
            answers[BECOME_PROMPT] = ask(label) or ssh_password
        if self.ask_vault_pass:
            answers[VAULT_PROMPT] = ask("Vault password: ")
        for vault_id in self.vault_ids:
            label, _, source = vault_id.rpartition("@")
            if source == "prompt":
                answers[vault_id_prompt(label or "default")] = ask(f"Vault password ({label or 'default'}): ")
        return answers


def add_options(parser: argparse.ArgumentParser) -> None:
    """ansible-playbook's options, same names and meaning (``ansible-playbook --help``)."""
    conn = parser.add_argument_group("connection options (as ansible-playbook)")
    conn.add_argument("-u", "--user", dest="remote_user", metavar="REMOTE_USER", help="connect as this user")
    conn.add_argument(
        "-c", "--connection", metavar="CONNECTION", help="connection type to use (default: the inventory's)"
    )
    conn.add_argument(
        "--private-key",
        "--key-file",
        dest="private_key_file",
        metavar="PRIVATE_KEY_FILE",
        type=Path,
        help="use this file to authenticate the connection",
    )
    conn.add_argument("-T", "--timeout", type=int, metavar="TIMEOUT", help="connection timeout in seconds")
    conn.add_argument(
        "--ssh-common-args", metavar="ARGS", help="common arguments for sftp/scp/ssh (e.g. ProxyCommand)"
    )
    conn.add_argument("--ssh-extra-args", metavar="ARGS", help="extra arguments for ssh only (e.g. -R)")
    conn_pass = conn.add_mutually_exclusive_group()
    conn_pass.add_argument(
        "-k", "--ask-pass", action="store_true", help="ask for the connection password (once, no echo)"
    )
    conn_pass.add_argument(
        "--connection-password-file",
        "--conn-pass-file",
        type=Path,
        metavar="FILE",
        help="connection password file",
    )

    priv = parser.add_argument_group("privilege escalation options (as ansible-playbook)")
    priv.add_argument("-b", "--become", action="store_true", help="run operations with become")
    priv.add_argument("--become-method", metavar="METHOD", help="privilege escalation method (default sudo)")
    priv.add_argument("--become-user", metavar="USER", help="run operations as this user (default root)")
    become_pass = priv.add_mutually_exclusive_group()
    become_pass.add_argument(
        "-K",
        "--ask-become-pass",
        action="store_true",
        help="ask for the privilege escalation password (once, no echo)",
    )
    become_pass.add_argument(
        "--become-password-file", "--become-pass-file", type=Path, metavar="FILE", help="become password file"
    )

    vault = parser.add_argument_group("vault options (as ansible-playbook)")
    vault.add_argument(
        "--vault-id",
        action="append",
        default=[],
        metavar="ID",
        help="vault identity (LABEL@SOURCE, repeatable)",
    )
    vault_pass = vault.add_mutually_exclusive_group()
    vault_pass.add_argument(
        "-J",
        "--ask-vault-password",
        "--ask-vault-pass",
        dest="ask_vault_pass",
        action="store_true",
        help="ask for the vault password (once, no echo)",
    )
    vault_pass.add_argument(
        "--vault-password-file",
        "--vault-pass-file",
        dest="vault_password_files",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="vault password file (repeatable; an executable file is run by ansible)",
    )


def _existing(path: Path | None, option: str) -> Path | None:
    if path is None:
        return None
    full = path.expanduser().absolute()  # not resolved: a vault client script is known by its name
    if not full.is_file():
        raise UsageError(f"{option} {path}: no such file")
    return full


def _vault_id(value: str) -> str:
    label, at, source = value.rpartition("@")
    if not at:  # a bare source: a file, or "prompt"
        label, source = "", value
    if source == "prompt":
        return value
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = path.resolve()
    if not path.is_file():
        raise UsageError(f"--vault-id {value}: no such file {source}")
    return f"{label}@{path}" if label else str(path)


def from_args(args: argparse.Namespace) -> ConnectionOptions:
    """Check the options (files exist, numbers make sense) and make them absolute for the runner's cwd."""
    timeout = getattr(args, "timeout", None)
    if timeout is not None and timeout < 1:
        raise UsageError("--timeout must be at least 1 second")
    get: Mapping[str, object] = vars(args)
    return ConnectionOptions(
        user=getattr(args, "remote_user", None),
        connection=getattr(args, "connection", None),
        private_key=_existing(getattr(args, "private_key_file", None), "--private-key"),
        timeout=timeout,
        ssh_common_args=getattr(args, "ssh_common_args", None),
        ssh_extra_args=getattr(args, "ssh_extra_args", None),
        ask_pass=bool(get.get("ask_pass")),
        connection_password_file=_existing(
            getattr(args, "connection_password_file", None), "--connection-password-file"
        ),
        become=bool(get.get("become")),
        become_method=getattr(args, "become_method", None),
        become_user=getattr(args, "become_user", None),
        ask_become_pass=bool(get.get("ask_become_pass")),
        become_password_file=_existing(getattr(args, "become_password_file", None), "--become-password-file"),
        vault_ids=tuple(_vault_id(v) for v in getattr(args, "vault_id", None) or []),
        vault_password_files=tuple(
            p
            for p in (
                _existing(Path(f), "--vault-password-file")
                for f in getattr(args, "vault_password_files", None) or []
            )
            if p is not None
        ),
        ask_vault_pass=bool(get.get("ask_vault_pass")),
    )
