"""Benchmark (not a test): Molecule scenarios of two checkouts, side by side.

    .venv/bin/python benchmarks/bench_scenarios.py --old DIR [--rounds 2] SCENARIO [SCENARIO ...]

SCENARIO is a label of tests/test_molecule.py (`miniconda/default`, `harness`). DIR is another checkout
of this repository (`git worktree add /tmp/old <commit>`). Each round runs every scenario once from each
checkout, one at a time (`pytest -n 0 tests/test_molecule.py::test_scenario[SCENARIO]`, cwd = the
checkout), alternating which checkout goes first, and times it. Both use this venv and its `gpulab`
package: what differs is the checkouts' Molecule files, roles and plugins. Every run must pass. It prints
each run, then per scenario the median wall time of each checkout and the ratio new / old.
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


def run_scenario(checkout: Path, scenario: str) -> float:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0"]
    argv.append(f"tests/test_molecule.py::test_scenario[{scenario}]")
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, env=os.environ, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{scenario} failed in {checkout} (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other checkout (the baseline)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args()
    checkouts = {"old": args.old.resolve(), "new": REPO}
    times: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        order = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
        for scenario in args.scenarios:
            for which in order:
                seconds = run_scenario(checkouts[which], scenario)
                times.setdefault((scenario, which), []).append(seconds)
                print(f"round {round_no + 1}: {scenario} {which}: {seconds:.1f} s", flush=True)
    print(f"\nold = {checkouts['old']}, new = {checkouts['new']}; median of {args.rounds} rounds:")
    for scenario in args.scenarios:
        old, new = (statistics.median(times[(scenario, w)]) for w in ("old", "new"))
        print(f"  {scenario:28} old {old:6.1f} s  new {new:6.1f} s  new / old {new / old:.2f}")


if __name__ == "__main__":
    main()
