"""Benchmark (not a test): test units of two checkouts, side by side.

    .venv/bin/python benchmarks/bench_scenarios.py --old DIR [--rounds 2] UNIT [UNIT ...]

UNIT is a Molecule scenario's label in tests/test_molecule.py (`dl_env/default`) or a pytest
node id (`tests/cli/test_fast_path.py`, `tests/dl_env/test_role_local.py::test_...`). DIR is another
checkout of this repository (`git worktree add /tmp/old <commit>`). Each round runs every unit once from
each checkout, one at a time (`pytest -n 0 UNIT`, cwd = the checkout), alternating which checkout goes
first, and times it. Both use this venv's packages, each checkout its own `gpulab` package
(PYTHONPATH=<checkout>/src, so the lab's stand-ins are the checkout's too) and its own roles, plugins and
Molecule files. Every run must pass. It prints each run, then per unit the median wall time and the
median CPU time of each checkout and the ratios new / old.

CPU time is the whole machine's (busy time in /proc/stat while the unit ran: pytest, Ansible, podman and
the processes inside the containers alike), so run it on an otherwise idle machine. It is the figure that
predicts `.ci/run`: there both workers keep the two cores busy, and a unit that only waits less (fewer round
trips) but burns the same CPU does not shorten the suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def node_id(unit: str) -> str:
    """The pytest node id of a unit: a path stays, a scenario label names its test_molecule.py case."""
    return unit if unit.startswith("tests/") else f"tests/test_molecule.py::test_scenario[{unit}]"


def busy_seconds() -> float:
    """CPU seconds the machine has spent busy since boot, all CPUs (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_unit(checkout: Path, unit: str) -> tuple[float, float]:
    """The unit's wall time and the machine's CPU time while it ran, in seconds."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0", node_id(unit)]
    src = os.pathsep.join(filter(None, [str(checkout / "src"), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": src}
    start, cpu = time.perf_counter(), busy_seconds()
    proc = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, env=env, check=False)
    seconds, cpu = time.perf_counter() - start, busy_seconds() - cpu
    if proc.returncode != 0:
        sys.exit(f"{unit} failed in {checkout} (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other checkout (the baseline)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("units", nargs="+")
    args = parser.parse_args()
    checkouts = {"old": args.old.resolve(), "new": REPO}
    times: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        order = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
        for unit in args.units:
            for which in order:
                seconds, cpu = run_unit(checkouts[which], unit)
                times.setdefault((unit, which), []).append(seconds)
                cpus.setdefault((unit, which), []).append(cpu)
                print(f"round {round_no + 1}: {unit} {which}: {seconds:.1f} s, CPU {cpu:.1f} s", flush=True)
    print(f"\nold = {checkouts['old']}, new = {checkouts['new']}; median of {args.rounds} rounds:")
    for unit in args.units:
        old, new = (statistics.median(times[(unit, w)]) for w in ("old", "new"))
        old_cpu, new_cpu = (statistics.median(cpus[(unit, w)]) for w in ("old", "new"))
        print(
            f"  {unit:28} wall old {old:6.1f} s new {new:6.1f} s ({new / old:.2f})"
            f"  CPU old {old_cpu:6.1f} s new {new_cpu:6.1f} s ({new_cpu / old_cpu:.2f})"
        )


if __name__ == "__main__":
    main()
