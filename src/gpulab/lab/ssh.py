"""SSH lab nodes (`gpulab lab up`, the default connection) and Molecule hosts: the key pair, known_hosts and
sudo password, and each container's sshd (started, stopped, given new host keys) on its own loopback port.

Everything lives in `<state dir>/ssh/` (0700): the user's ~/.ssh is never read for keys or written.
Secrets reach the containers on podman's standard input, never on a command line.
Molecule's create (molecule/shared/playbooks/create.yml) runs `python -m gpulab.lab.ssh serve`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gpulab.podman import PodmanError, podman

SSH_USER = "admin"
SSHD_PID_FILE = "/run/sshd.pid"
AUTHORIZED_KEYS = f"/home/{SSH_USER}/.ssh/authorized_keys"
SUDOERS = "/etc/sudoers.d/90-admin"  # written by gpulab.lab.images' post-install (NOPASSWD)


class SshLabError(RuntimeError):
    """An SSH lab node could not be set up; the message says which node and what failed."""


@dataclass(frozen=True)
class SshFiles:
    """The lab's SSH files, under `<state dir>/ssh/` (`files()`)."""

    root: Path
    private_key: Path
    public_key: Path
    known_hosts: Path
    sudo_password: Path

    def common_args(self) -> str:
        """`ansible_ssh_common_args`: the lab's own known_hosts, and only the lab's key offered."""
        return (
            f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=accept-new"
            " -o IdentitiesOnly=yes"
        )


def files(state_dir: Path) -> SshFiles:
    root = state_dir / "ssh"
    key = root / "id_ed25519"
    return SshFiles(root, key, key.with_suffix(".pub"), root / "known_hosts", root / "sudo-password")


def _private_dir(ssh: SshFiles) -> None:
    ssh.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    ssh.root.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file that is 0600 from its first byte."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def make_key_pair(ssh: SshFiles) -> None:
    """A fresh ed25519 key pair for this lab (no passphrase; 0600 in a 0700 directory)."""
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise SshLabError("ssh-keygen is not installed (apt-get install -y openssh-client)")
    _private_dir(ssh)
    ssh.private_key.unlink(missing_ok=True)
    ssh.public_key.unlink(missing_ok=True)
    argv = [exe, "-q", "-t", "ed25519", "-N", "", "-C", "gpulab-lab", "-f", str(ssh.private_key)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SshLabError(f"ssh-keygen failed: {(proc.stderr or proc.stdout).strip()}")
    ssh.private_key.chmod(0o600)


def make_sudo_password(ssh: SshFiles) -> str:
    """A random sudo password for the lab's admin, kept only in a 0600 file (never in the inventory)."""
    password = secrets.token_urlsafe(18)
    _private_dir(ssh)
    _write_private(ssh.sudo_password, password + "\n")
    return password


def authorize_key(container: str, ssh: SshFiles) -> None:
    """Let the key pair's holder log in as admin."""
    write = f"umask 077 && cat > {AUTHORIZED_KEYS} && chown admin:admin {AUTHORIZED_KEYS}"
    podman("exec", "-i", container, "sh", "-c", write, stdin=ssh.public_key.read_text())


def require_sudo_password(container: str, password: str) -> None:
    """Give admin `password` and make admin's sudo ask for it."""
    podman("exec", "-i", container, "chpasswd", stdin=f"{SSH_USER}:{password}\n")
    sudoers = f"printf 'admin ALL=(ALL:ALL) ALL\\n' > {SUDOERS} && chmod 0440 {SUDOERS}"
    podman("exec", container, "sh", "-c", sudoers)


def start_sshd(container: str, port: int, *, new_host_keys: bool = False) -> None:
    """Start the node's sshd on 127.0.0.1:`port` (host keys made first when missing, or anew)."""
    keys = "rm -f /etc/ssh/ssh_host_* && " if new_host_keys else ""
    script = f"mkdir -p /run/sshd && {keys}ssh-keygen -A >/dev/null && /usr/sbin/sshd -p {int(port)}"
    try:
        podman("exec", container, "sh", "-c", script)
    except PodmanError as exc:
        raise SshLabError(f"sshd did not start in {container} on port {port}: {exc}") from exc
    wait_for_sshd(port, container)


def free_port(port: int = 0) -> int:
    """`port` (any free one for 0) once bound on 127.0.0.1 and let go; 0 when it is taken."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return 0
        return int(sock.getsockname()[1])


def start_sshd_on_free_port(container: str, attempts: int = 3) -> int:
    """Start the container's sshd on a free loopback port and return it (another process may take a port
    between probe and bind, so a failed start is tried again on another)."""
    error = ""
    for _ in range(attempts):
        port = free_port()
        try:
            start_sshd(container, port)
            return port
        except SshLabError as exc:
            error = str(exc)
    raise SshLabError(f"{error} (tried {attempts} free ports)")


def serve(ssh: SshFiles, containers: list[str]) -> dict[str, int]:
    """Make `containers` reachable as admin over SSH: a fresh key pair authorized in each, each one's sshd on
    a free loopback port, their host keys in known_hosts. Returns container -> port."""
    make_key_pair(ssh)
    ports: dict[str, int] = {}
    for container in containers:
        authorize_key(container, ssh)
        ports[container] = start_sshd_on_free_port(container)
    write_known_hosts(ssh, ports)
    return ports


# Every sshd process: the listener and each connection's (`sshd-session` since OpenSSH 9.8), so that no
# ControlPersist master survives the stop either, as on a node that went down (minbase has no pkill).
_KILL_ALL_SSHD = (
    """\
for proc in /proc/[0-9]*; do
  case "$(cat "$proc/comm" 2>/dev/null)" in sshd*) kill "${proc#/proc/}" 2>/dev/null || true;; esac
done
rm -f """
    + SSHD_PID_FILE
)


def stop_sshd(container: str) -> None:
    """Stop the node's sshd and its open sessions (the node stays up: an SSH host that is unreachable)."""
    podman("exec", container, "sh", "-c", _KILL_ALL_SSHD)


def sshd_running(container: str) -> bool:
    out = podman(
        "exec", container, "sh", "-c", f"test -s {SSHD_PID_FILE} && cat {SSHD_PID_FILE}", check=False
    )
    return bool(out.strip())


def wait_for_sshd(port: int, container: str, timeout: float = 15.0) -> None:
    """Until sshd on `port` sends its banner."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SshLabError(
                f"sshd of {container} did not answer on 127.0.0.1:{port} within {timeout:.0f} s"
            )
        time.sleep(0.2)


def host_key_lines(container: str, port: int) -> list[str]:
    """known_hosts lines for the node's current host keys, read through podman (a trusted channel)."""
    out = podman("exec", container, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")
    keys = [line.split() for line in out.splitlines()]
    return [f"[127.0.0.1]:{port} {fields[0]} {fields[1]}" for fields in keys if len(fields) >= 2]


def write_known_hosts(ssh: SshFiles, nodes: dict[str, int]) -> None:
    """The lab's known_hosts: every node's host keys (container name -> port), replacing older entries."""
    lines = [line for container, port in nodes.items() for line in host_key_lines(container, port)]
    _write_private(ssh.known_hosts, "".join(f"{line}\n" for line in lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulab.lab.ssh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="start sshd in running containers; print the connection as JSON")
    serve_cmd.add_argument("--dir", type=Path, required=True, help="where ssh/ (keys, known_hosts) goes")
    serve_cmd.add_argument("containers", nargs="+")
    args = parser.parse_args(argv)
    ssh = files(args.dir)
    try:
        ports = serve(ssh, args.containers)
    except (SshLabError, PodmanError) as exc:
        print(f"gpulab: {exc}")
        return 1
    out = {"user": SSH_USER, "identity_file": str(ssh.private_key), "known_hosts": str(ssh.known_hosts)}
    print(json.dumps(out | {"ports": ports}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
