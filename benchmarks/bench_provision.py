"""Benchmark (not a test): `gpulab provision` against raw `ansible-playbook` on the same playbook and hosts.

    .venv/bin/python benchmarks/bench_provision.py [--rounds 7] [--project DIR] [-i INVENTORY]

Each round runs both, alternating which goes first. The script prints the median wall time of each,
the ratio of the medians (gpulab / ansible-playbook) and the median of the per-round ratios.
`gpulab provision` runs in this process through its Python entry point (``gpulab.cli.main``, i.e.
ansible-runner's API with its event handler, live progress, report and artifacts); the baseline is a
plain ``ansible-playbook`` subprocess (the driver itself never starts one). Default: the
test project in tests/cli/fixtures/project against its healthy local inventory (two
``ansible_connection=local`` hosts), which changes nothing outside /tmp.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROJECT = REPO / "tests" / "cli" / "fixtures" / "project"


def run_gpulab(project: Path, inventory: Path, state: Path) -> tuple[float, int]:
    from gpulab.cli import main

    os.environ["GPULAB_PROJECT_DIR"] = str(project)
    os.environ["GPULAB_STATE_DIR"] = str(state)
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = main(["provision", "-i", str(inventory), "--keep-runs", "3"])
    return time.perf_counter() - start, code


def run_ansible_playbook(project: Path, inventory: Path) -> tuple[float, int]:
    from gpulab.collection import collections_dir

    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(project / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(project / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(collections_dir(project)),  # as gpulab.runner passes it
        ANSIBLE_HOST_KEY_CHECKING=os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)]),
    )
    argv = ["ansible-playbook", "-i", str(inventory), str(project / "playbooks" / "site.yml")]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=project, env=env, capture_output=True, check=False)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    parser.add_argument("-i", "--inventory", type=Path)
    args = parser.parse_args()
    project = args.project.resolve()
    inventory = (args.inventory or project / "inventory" / "healthy.yml").resolve()
    gpulab_times: list[float] = []
    raw_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-") as tmp:
        run_gpulab(project, inventory, Path(tmp))  # warm-up: imports, page cache
        for index in range(args.rounds):
            order = ("gpulab", "raw") if index % 2 == 0 else ("raw", "gpulab")
            for which in order:
                if which == "gpulab":
                    seconds, code = run_gpulab(project, inventory, Path(tmp))
                    gpulab_times.append(seconds)
                else:
                    seconds, code = run_ansible_playbook(project, inventory)
                    raw_times.append(seconds)
                print(f"round {index + 1}: {which:<7} {seconds:6.2f}s exit {code}", flush=True)
    g, r = statistics.median(gpulab_times), statistics.median(raw_times)
    print(f"\nmedian gpulab provision {g:.2f}s, ansible-playbook {r:.2f}s over {args.rounds} rounds")
    print(f"ratio gpulab/ansible-playbook = {g / r:.2f}")
    paired = statistics.median(a / b for a, b in zip(gpulab_times, raw_times, strict=True))
    print(f"median of the per-round ratios = {paired:.2f} (steadier when the machine's load drifts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
