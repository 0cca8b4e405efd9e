"""Benchmark (not a test): the same playbook through each way gpulab reaches a host, side by side.

    .venv/bin/python benchmarks/bench_connection.py [--rounds 3] [--tasks 20] [--targets podman,ssh,...]

Targets: ``podman`` and ``ssh`` reach one container from the Debian 12 test image (``python -m
gpulab.lab.images``) as ``admin`` with sudo, as the lab and the Molecule scenarios reach theirs, through
``containers.podman.podman`` (the lab's ``--connection podman``) or its sshd on a loopback port (started
by ``gpulab.lab.ssh``, ControlPersist); ``local`` and ``local-pipelining`` run on this machine with the
local connection (no become), as the suite's site.yml tests do, with pipelining off and on;
``ssh-mitogen`` and ``local-mitogen`` are ``ssh`` and ``local`` with Mitogen's strategy (gpulab gives it to
site.yml's provision play only, docs/performance.md says why). Every run uses ansible.cfg and
Ansible's default strategy unless its name says otherwise. Each round runs the playbook (``--tasks``
module calls: stat, copy and command) once per target, rotating which goes first.
It prints the median wall time of each and its ratio to the first target; every run after the warm-up
must report ``changed=0``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from gpulab import strategy
from gpulab.lab import ssh
from gpulab.lab.images import IMAGE_REPO, ensure_image
from gpulab.podman import podman, podman_env

REPO = Path(__file__).resolve().parents[1]
IMAGE = "debian12"
TARGETS = ("podman", "ssh", "local", "local-pipelining", "ssh-mitogen", "local-mitogen")
# What a target sets beyond ansible.cfg (which pipelines the ssh connection only); the plain targets
# say ANSIBLE_STRATEGY=linear, Ansible's default, whatever the caller's environment says.
LINEAR = {"ANSIBLE_STRATEGY": "linear"}
ENV: dict[str, dict[str, str]] = {"local-pipelining": LINEAR | {"ANSIBLE_PIPELINING": "true"}}
MITOGEN_TARGETS = ("ssh-mitogen", "local-mitogen")

PLAYBOOK = """
- name: Module calls (through become on the containers), as the roles make them
  hosts: all
  gather_facts: false
  tasks:
    - name: Stat a file
      ansible.builtin.stat:
        path: /etc/passwd
      loop: "{{{{ range({stats}) | list }}}}"
    - name: Write a file
      ansible.builtin.copy:
        content: "file {{{{ item }}}}"
        dest: "{{{{ bench_dir }}}}/bench-{{{{ item }}}}"
        mode: "0644"
      loop: "{{{{ range({copies}) | list }}}}"
    - name: Run a command
      ansible.builtin.command:
        argv: [id, -u]
      changed_when: false
"""


def run_playbook(workdir: Path, target: str) -> tuple[float, str]:
    env = (
        podman_env()
        | ENV.get(target, LINEAR)
        | {
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),  # gpulab's settings, as the lab runs
            # ansible-playbook from this venv, as bench_provision.py runs it, whatever PATH says.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
        }
    )
    start = time.perf_counter()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(workdir / f"{target}.ini"), str(workdir / "play.yml")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{target}: ansible-playbook failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    recap = [line for line in proc.stdout.splitlines() if "ok=" in line]
    return seconds, recap[-1] if recap else ""


def mitogen_env() -> dict[str, str]:
    """Mitogen's linear strategy for every play (gpulab gives it to site.yml's provision play only)."""
    env = strategy.every_play_environ()
    if env is None:
        sys.exit(f"{', '.join(MITOGEN_TARGETS)}: Mitogen is not installed here (pip install mitogen)")
    return env


def write_inventories(workdir: Path, container: str) -> None:
    """One inventory per target; the SSH one after starting the container's sshd (gpulab.lab.ssh)."""
    files = ssh.files(workdir)
    port = ssh.serve(files, [container])[container]
    user = f"ansible_user={ssh.SSH_USER} ansible_become=true bench_dir=/tmp"
    (workdir / "podman.ini").write_text(f"{container} ansible_connection=containers.podman.podman {user}\n")
    ssh_inventory = (
        f"{container} ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={port} {user}"
        f" ansible_ssh_private_key_file={files.private_key} ansible_ssh_common_args='{files.common_args()}'\n"
    )
    for target in ("ssh", "ssh-mitogen"):
        (workdir / f"{target}.ini").write_text(ssh_inventory)
    local = f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}"
    local += f" bench_dir={workdir}\n"
    for target in ("local", "local-pipelining", "local-mitogen"):
        (workdir / f"{target}.ini").write_text(local)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20, help="module calls per playbook (at least 3)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated: {', '.join(TARGETS)}")
    args = parser.parse_args()
    targets = args.targets.split(",")
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    if set(targets) & set(MITOGEN_TARGETS):
        ENV.update(dict.fromkeys(MITOGEN_TARGETS, mitogen_env()))
    copies = max(1, args.tasks // 4)
    stats = max(1, args.tasks - copies - 1)
    ensure_image(IMAGE)
    name = f"gpulab-bench-connection-{uuid.uuid4().hex[:6]}"
    podman("run", "-d", "--name", name, "--network", "host", f"{IMAGE_REPO}:{IMAGE}", "sleep", "infinity")
    times: dict[str, list[float]] = {t: [] for t in targets}
    try:
        with tempfile.TemporaryDirectory(prefix="gpulab-bench-connection-") as tmp:
            workdir = Path(tmp)
            write_inventories(workdir, name)
            (workdir / "play.yml").write_text(PLAYBOOK.format(stats=stats, copies=copies))
            for target in targets:  # warm-up: makes the files, fills the caches, opens the master
                run_playbook(workdir, target)
            for round_no in range(args.rounds):
                shift = round_no % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    seconds, recap = run_playbook(workdir, target)
                    if "changed=0" not in recap:
                        sys.exit(f"{target}: expected changed=0 after the warm-up, got: {recap}")
                    times[target].append(seconds)
                    print(f"round {round_no + 1}: {target}: {seconds:.1f} s", flush=True)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
    medians = {t: statistics.median(v) for t, v in times.items()}
    print(f"\n{stats + copies + 1} module calls per run, {args.rounds} rounds, median wall time:")
    for target, seconds in medians.items():
        print(f"  {target:18} {seconds:6.1f} s   / {targets[0]}: {seconds / medians[targets[0]]:.2f}")


if __name__ == "__main__":
    main()
