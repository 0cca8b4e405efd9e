"""Benchmark (not a test): the Molecule hosts' podman connection with and without pipelining.

    .venv/bin/python benchmarks/bench_connection.py [--rounds 3] [--tasks 20]

One container from the Debian 12 test image (``python -m gpulab.lab.images``), reached as ``admin`` with
sudo as the scenarios reach theirs. Each round runs the same playbook (``--tasks`` module calls: stat,
copy and command, all through become) once with ``containers.podman.podman`` and once with
``molecule/shared/connection_plugins/gpulab_podman.py``, alternating which goes first. It prints the
median wall time of each and the ratio of the medians; both runs must succeed, and the second
connection's runs must report ``changed=0`` (the first run of the round made the files).
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

from gpulab.lab.images import IMAGE_REPO, ensure_image
from gpulab.podman import podman, podman_env

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "molecule" / "shared" / "connection_plugins"
CONNECTIONS = ("containers.podman.podman", "gpulab_podman")

PLAYBOOK = """
- name: Module calls through become, as the roles make them
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
        dest: "/tmp/bench-{{{{ item }}}}"
        mode: "0644"
      loop: "{{{{ range({copies}) | list }}}}"
    - name: Run a command
      ansible.builtin.command:
        argv: [id, -u]
      changed_when: false
"""


def run_playbook(workdir: Path, connection: str) -> tuple[float, str]:
    env = podman_env() | {
        "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS),
        "ANSIBLE_NOCOLOR": "1",
        # ansible-playbook from this venv, as bench_provision.py runs it, whatever PATH says.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(workdir / "hosts.ini"), "-c", connection, str(workdir / "play.yml")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{connection}: ansible-playbook failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    recap = [line for line in proc.stdout.splitlines() if "ok=" in line]
    return seconds, recap[-1] if recap else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20, help="module calls per playbook (at least 3)")
    args = parser.parse_args()
    copies = max(1, args.tasks // 4)
    stats = max(1, args.tasks - copies - 1)
    ensure_image("debian12")
    name = f"gpulab-bench-connection-{uuid.uuid4().hex[:6]}"
    podman("run", "-d", "--name", name, "--network", "host", f"{IMAGE_REPO}:debian12", "sleep", "infinity")
    times: dict[str, list[float]] = {c: [] for c in CONNECTIONS}
    try:
        with tempfile.TemporaryDirectory(prefix="gpulab-bench-connection-") as tmp:
            workdir = Path(tmp)
            (workdir / "hosts.ini").write_text(f"{name} ansible_user=admin ansible_become=true\n")
            (workdir / "play.yml").write_text(PLAYBOOK.format(stats=stats, copies=copies))
            run_playbook(workdir, CONNECTIONS[0])  # warm-up: makes the files, fills the caches
            for round_no in range(args.rounds):
                order = CONNECTIONS if round_no % 2 == 0 else CONNECTIONS[::-1]
                for connection in order:
                    seconds, recap = run_playbook(workdir, connection)
                    if "changed=0" not in recap:
                        sys.exit(f"{connection}: expected changed=0 after the warm-up, got: {recap}")
                    times[connection].append(seconds)
                    print(f"round {round_no + 1}: {connection}: {seconds:.1f} s", flush=True)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
    medians = {c: statistics.median(t) for c, t in times.items()}
    print(f"\n{stats + copies + 1} module calls per run, {args.rounds} rounds, median wall time:")
    for connection, seconds in medians.items():
        print(f"  {connection:26} {seconds:6.1f} s")
    ratio = medians[CONNECTIONS[0]] / medians[CONNECTIONS[1]]
    print(f"ratio (containers.podman.podman / gpulab_podman): {ratio:.2f}")


if __name__ == "__main__":
    main()
