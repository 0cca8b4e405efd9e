"""Benchmark (not a test): what a `gpulab provision` re-run costs against Ansible's floor, on lab nodes.

    python benchmarks/bench_rerun.py [--nodes 4] [--connection ssh|podman] [--scale 1,2,4] [--json FILE]

Brings up a lab of N nodes (`gpulab lab up`, in a temporary lab directory, taken down at the end) and
measures in one run, side by side on the same nodes:

1. floor: `ansible all -m ansible.builtin.setup` (a round trip per host + fact gathering), before the re-runs;
2. cold: `gpulab provision` (playbooks/site.yml) on bare nodes;
3. no-op: the same again; the report must show changed=0 on every host (else the exit code is 1);
4. one-changed: one node's driver upgraded (`gpulab lab driver`, as `gpulab demo` does), then provision;
5. one node alone: another node upgraded the same way and provisioned alone (`--limit`): what rebuilding
   one node costs, the yardstick of issue 15's one-changed goal (<= that + 2x the floor);
6. floor again, after the re-runs. The ratios use the SMALLER of the two floor runs.

With `--scale K1,K2,...` (each <= N) it then times floor, no-op and one-changed on K-node subsets
(`--limit`) and prints the seconds per extra host of each (least-squares slope over the subsets and the
full N-node runs).

The lab is not the product: every Ansible task on a lab node pays the lab's connection (a `podman exec`,
or SSH to a container on 127.0.0.1), and the installer, conda and the MLP check's numpy training are
gpulab's stand-ins. The floor pays the same connection, so the ratios compare like with like; the
overhead split (from the runner's job events) names the stand-ins' share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from gpulab.lab import cluster  # noqa: E402
from gpulab.lab.cli import DEMO_UPGRADE  # noqa: E402

# The driver upgrade of the one-changed re-run: the demo's (L40S 550.127.05 -> 595.80, CUDA 12.4 -> 13.2).
UPGRADE_FROM = "l40s-550.127.05"
UPGRADE_TO = DEMO_UPGRADE[1]
# Task names (substrings of `role : task`) whose time is the stand-ins' real work, not gpulab's overhead.
WORK_TASKS: dict[str, tuple[str, ...]] = {
    "installer": ("Run the installer in batch mode",),
    "env build": ("Create the new environment beside the live one",),
    "MLP training": ("Run the MLP check",),
}
_RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")


@dataclass(frozen=True)
class Options:
    nodes: int
    connection: cluster.Connection
    scale: tuple[int, ...]
    json_path: Path | None


@dataclass(frozen=True)
class LabPlan:
    """Node names and profiles, and which node each one-changed re-run upgrades (never the same twice)."""

    profiles: tuple[tuple[str, str], ...]
    main_changed: str
    alone_changed: str
    scale_changed: tuple[str, ...]

    def spec(self) -> str:
        return ",".join(f"{name}={profile}" for name, profile in self.profiles)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.profiles)

    def subset(self, size: int, changed: str) -> tuple[str, ...]:
        """`size` nodes that include `changed`: it first, then the others in order."""
        return (changed, *[n for n in self.names if n != changed][: size - 1])


@dataclass
class Timing:
    name: str
    seconds: float
    hosts: int
    exit_code: int
    changed: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)  # tasks each host began (report `tasks_run`)
    split: dict[str, float] = field(default_factory=dict)
    note: str = ""


def parse_scale(text: str) -> tuple[int, ...]:
    """`1,2,4,8` -> (1, 2, 4, 8): positive, unique, sorted."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--scale takes node counts like 1,2,4: {text!r}") from exc
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"--scale takes positive node counts like 1,2,4: {text!r}")
    return tuple(values)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help=f"lab nodes, 1..{cluster.MAX_NODES}")
    parser.add_argument("--connection", choices=cluster.CONNECTIONS, default=cluster.DEFAULT_CONNECTION)
    parser.add_argument("--scale", type=parse_scale, default=(), help="subset sizes, e.g. 1,2,4")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the results here")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= cluster.MAX_NODES:
        parser.error(f"--nodes must be between 1 and {cluster.MAX_NODES} (the lab's limit)")
    if args.scale and args.scale[-1] > args.nodes:
        parser.error(f"--scale {args.scale[-1]} needs at least --nodes {args.scale[-1]}")
    try:
        plan_lab(args.nodes, args.scale)
    except ValueError as exc:
        parser.error(str(exc))
    return Options(args.nodes, args.connection, args.scale, args.json_path)


def plan_lab(nodes: int, scale: Sequence[int] = ()) -> LabPlan:
    """The lab's default mix (cycled) with enough L40S 550 nodes for one fresh upgrade per re-run.

    Nodes are turned into L40S 550 from the last one back, so node1 (the main run's) keeps its place.
    """
    mix = [n.profile for n in cluster.parse_nodes(cluster.DEFAULT_NODES)]
    profiles = [mix[i % len(mix)] for i in range(nodes)]
    need = 2 + len(scale)  # the main one-changed run, the node alone, one per scale size
    for index in reversed(range(nodes)):
        if profiles.count(UPGRADE_FROM) >= need:
            break
        profiles[index] = UPGRADE_FROM
    upgradable = [f"node{i + 1}" for i, p in enumerate(profiles) if p == UPGRADE_FROM]
    if len(upgradable) < need:
        raise ValueError(f"{nodes} nodes cannot give {need} driver upgrades (one per re-run): add --nodes")
    return LabPlan(
        tuple((f"node{i + 1}", p) for i, p in enumerate(profiles)),
        upgradable[0],
        upgradable[1],
        tuple(upgradable[2:need]),
    )


def floor_of(seconds: Iterable[float]) -> float:
    """The floor the ratios use: the smaller of its runs (the least the machine's load added)."""
    return min(seconds)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def changed_hosts(report: Mapping[str, Any]) -> dict[str, int]:
    """Host -> its `changed` count, from a gpulab report's per-host counts."""
    return {name: int(host.get("counts", {}).get("changed", 0)) for name, host in report["hosts"].items()}


def noop_problems(report: Mapping[str, Any]) -> list[str]:
    """Why a run is not a no-op: a host that changed something (its changed tasks) or did not end ok."""
    problems: list[str] = []
    for name, host in sorted(report["hosts"].items()):
        changed = int(host.get("counts", {}).get("changed", 0))
        if host.get("status") != "ok":
            problems.append(f"{name}: status {host.get('status')}")
        elif changed:
            problems.append(f"{name}: changed={changed} ({', '.join(host.get('changed_tasks', []))})")
    return problems


def one_changed_problems(report: Mapping[str, Any], changed: str) -> list[str]:
    """Why a one-changed run is not one: the upgraded node changed nothing, or another node changed."""
    counts = changed_hosts(report)
    problems = [f"{changed}: changed=0 after its driver upgrade"] if counts.get(changed, 0) == 0 else []
    problems += [
        f"{n}: changed={c} (only {changed} was upgraded)" for n, c in counts.items() if n != changed and c
    ]
    problems += [
        f"{n}: status {h.get('status')}" for n, h in report["hosts"].items() if h.get("status") != "ok"
    ]
    return problems


def work_category(task: str) -> str | None:
    """The stand-in work a task does (`installer`, `env build`, `MLP training`), or None: gpulab's own."""
    for category, needles in WORK_TASKS.items():
        if any(needle in task for needle in needles):
            return category
    return None


def split_work(events: Iterable[Mapping[str, Any]], wall: float) -> dict[str, float]:
    """Wall time split: each work category's mean seconds per host, and `rest` (wall minus those).

    Hosts run in parallel, so per-host means are what the wall time is made of; `rest` is gpulab, Ansible
    and the lab connection together (every other task, fact gathering, start-up, report).
    """
    per_host: dict[str, dict[str, float]] = {}
    for event in events:
        if event.get("event") not in _RESULT_EVENTS:
            continue
        data = event.get("event_data", {})
        if data.get("host") is None:
            continue
        bucket = per_host.setdefault(str(data["host"]), {})  # every host counts, with or without work
        category = work_category(str(data.get("task", "")))
        if category is not None and data.get("duration") is not None:
            bucket[category] = bucket.get(category, 0.0) + float(data["duration"])
    hosts = max(len(per_host), 1)
    split = {c: sum(h.get(c, 0.0) for h in per_host.values()) / hosts for c in WORK_TASKS}
    split["rest"] = wall - sum(split.values())
    return split


def slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares seconds per extra host through (hosts, seconds); nan with fewer than two sizes."""
    xs = [float(x) for x, _ in points]
    if len(set(xs)) < 2:
        return float("nan")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(y for _, y in points)
    num = sum((x - mean_x) * (y - mean_y) for x, (_, y) in zip(xs, points, strict=True))
    return num / sum((x - mean_x) ** 2 for x in xs)


def render_table(timings: Mapping[str, Timing], floor_names: Sequence[str]) -> str:
    """The main table: wall time and the ratio to the floor of each run, and the no-op/one-changed to cold."""
    floor = floor_of(timings[n].seconds for n in floor_names)
    cold = timings["cold"].seconds
    lines = ["| run | wall s | / floor | / cold |", "| --- | ---: | ---: | ---: |"]
    for name, t in timings.items():
        if name in floor_names:
            mark = " (used)" if t.seconds == floor else ""
            lines.append(f"| {name}{mark} | {t.seconds:.1f} | {ratio(t.seconds, floor):.2f} | |")
        else:
            lines.append(
                f"| {name} | {t.seconds:.1f} | {ratio(t.seconds, floor):.1f}x"
                f" | {ratio(t.seconds, cold):.2f} |"
            )
    return "\n".join(lines)


def render_split(timing: Timing) -> str:
    parts = [f"{k} {v:.1f}s ({ratio(v, timing.seconds):.0%})" for k, v in timing.split.items()]
    return f"{timing.name}: " + ", ".join(parts)


def render_scale(rows: Mapping[int, Mapping[str, float]]) -> str:
    kinds = ("floor", "no-op", "one-changed")
    lines = ["| nodes | " + " | ".join(f"{k} s" for k in kinds) + " |", "| ---: |" + " ---: |" * len(kinds)]
    for size, row in sorted(rows.items()):
        lines.append(f"| {size} | " + " | ".join(f"{row[k]:.1f}" for k in kinds) + " |")
    per = {k: slope([(s, r[k]) for s, r in rows.items()]) for k in kinds}
    lines.append("| s per extra host | " + " | ".join(f"{per[k]:.2f}" for k in kinds) + " |")
    return "\n".join(lines)


# --- what touches the lab (not unit-tested: needs podman and minutes) -------------------------------


class Bench:
    def __init__(self, work: Path, options: Options) -> None:
        from gpulab.podman import podman_env

        self.work = work
        self.options = options
        self.env = podman_env() | {
            "GPULAB_LAB_DIR": str(work / "lab"),
            "GPULAB_STATE_DIR": str(work / "runs"),
            "GPULAB_PROJECT_DIR": str(REPO),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "NO_COLOR": "1",
        }
        self.inventory = work / "lab" / "inventory" / "hosts.yml"
        self.count = 0

    def gpulab(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gpulab", *args]
        return subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)

    def provision(self, name: str, limit: Sequence[str] = ()) -> tuple[Timing, dict[str, Any]]:
        self.count += 1
        report_path = self.work / f"report-{self.count}.json"
        args = ["provision", "-i", str(self.inventory), "--report", str(report_path)]
        if limit:
            args += ["--limit", ",".join(limit)]
        start = time.perf_counter()
        proc = self.gpulab(*args)
        seconds = time.perf_counter() - start
        report: dict[str, Any] = (
            json.loads(report_path.read_text()) if report_path.is_file() else {"hosts": {}}
        )
        timing = Timing(name, seconds, len(report["hosts"]), proc.returncode, changed_hosts(report))
        timing.tasks = {n: int(h.get("tasks_run", 0)) for n, h in report["hosts"].items()}
        events_dir = Path(report.get("artifacts", "")) / "job_events"
        if events_dir.is_dir():
            events = (json.loads(p.read_text()) for p in events_dir.glob("*.json"))
            timing.split = split_work(events, seconds)
        if proc.returncode != 0:
            timing.note = f"gpulab exited {proc.returncode}: {proc.stdout[-1500:]}"
        print(
            f"  {name}: {seconds:.1f}s exit {proc.returncode} changed {timing.changed} tasks {timing.tasks}",
            flush=True,
        )
        return timing, report

    def floor(self, name: str, limit: Sequence[str] = ()) -> Timing:
        env = self.env | {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),  # the same forks and pipelining as gpulab's runs
            "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
        }
        argv = ["ansible", "all", "-i", str(self.inventory), "-m", "ansible.builtin.setup", "-o"]
        if limit:
            argv += ["--limit", ",".join(limit)]
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        hosts = sum(1 for line in proc.stdout.splitlines() if " | SUCCESS" in line)
        timing = Timing(name, seconds, hosts, proc.returncode)
        if proc.returncode != 0:
            timing.note = f"ansible exited {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}"
        print(f"  {name}: {seconds:.1f}s exit {proc.returncode} ({hosts} hosts answered)", flush=True)
        return timing

    def upgrade(self, node: str) -> None:
        proc = self.gpulab("lab", "driver", node, UPGRADE_TO, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"gpulab lab driver {node} {UPGRADE_TO} failed: {proc.stdout}{proc.stderr}")

    def podman_exec_seconds(self, node: str) -> float:
        """The lab's own price of one `podman exec` (the podman connection makes several per task)."""
        from gpulab.podman import podman

        container = f"{cluster.CONTAINER_PREFIX}{cluster.lab_id(self.work / 'lab')}-{node}"
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            podman("exec", container, "true")
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def provision_strategy(report: Mapping[str, Any]) -> str:
    """The strategy site.yml's provision play ran with: the driver's choice (report `options.strategy`,
    gpulab.strategy), else the configured one."""
    chosen = report.get("options", {}).get("strategy")
    return str(chosen or os.environ.get("ANSIBLE_STRATEGY", "linear"))


def run(options: Options) -> int:
    plan = plan_lab(options.nodes, options.scale)
    problems: list[str] = []
    result: dict[str, Any] = {
        "nodes": options.nodes,
        "connection": options.connection,
        "lab": plan.spec(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_before": load_average(),
        "nproc": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-rerun-") as tmp:
        bench = Bench(Path(tmp), options)
        print(f"lab up: {plan.spec()} ({options.connection})", flush=True)
        up_start = time.perf_counter()
        up = bench.gpulab("lab", "up", "--nodes", plan.spec(), "--connection", options.connection)
        if up.returncode != 0:
            print(up.stdout + up.stderr)
            return 5
        result["lab_up_s"] = round(time.perf_counter() - up_start, 1)
        try:
            timings: dict[str, Timing] = {}
            timings["floor before"] = bench.floor("floor before")
            timings["cold"], report = bench.provision("cold")
            # The provision play's strategy (the fast-path play keeps the configured one): docs/performance.md
            # compares Mitogen's with linear.
            result["strategy"] = provision_strategy(report)
            timings["no-op"], report = bench.provision("no-op")
            problems += [f"no-op: {p}" for p in noop_problems(report)]
            bench.upgrade(plan.main_changed)
            timings["one-changed"], report = bench.provision(f"one-changed ({plan.main_changed} upgraded)")
            timings["one-changed"].name = "one-changed"
            problems += [f"one-changed: {p}" for p in one_changed_problems(report, plan.main_changed)]
            bench.upgrade(plan.alone_changed)
            alone = f"one node alone ({plan.alone_changed} upgraded)"
            timings["one node alone"], report = bench.provision(alone, [plan.alone_changed])
            timings["one node alone"].name = "one node alone"
            problems += [f"one node alone: {p}" for p in one_changed_problems(report, plan.alone_changed)]
            timings["floor after"] = bench.floor("floor after")
            problems += [f"{t.name}: {t.note}" for t in timings.values() if t.exit_code != 0]
            scale_rows: dict[int, dict[str, float]] = {}
            for size, changed in zip(options.scale, plan.scale_changed, strict=True):
                subset = plan.subset(size, changed)
                print(f"scale {size}: {','.join(subset)}", flush=True)
                row = {"floor": bench.floor(f"floor {size}", subset).seconds}
                noop, report = bench.provision(f"no-op {size}", subset)
                problems += [f"no-op {size}: {p}" for p in noop_problems(report)]
                bench.upgrade(changed)
                one, report = bench.provision(f"one-changed {size}", subset)
                problems += [f"one-changed {size}: {p}" for p in one_changed_problems(report, changed)]
                row |= {"no-op": noop.seconds, "one-changed": one.seconds}
                scale_rows[size] = row
            # The full lab is the largest point of the curve (its floor: the smaller of the two floor runs).
            scale_rows[options.nodes] = {
                "floor": floor_of(timings[n].seconds for n in ("floor before", "floor after")),
                "no-op": timings["no-op"].seconds,
                "one-changed": timings["one-changed"].seconds,
            }
            exec_s = bench.podman_exec_seconds(plan.names[0]) if options.connection == "podman" else None
        finally:
            bench.gpulab("lab", "down", timeout=600)
    result["load_after"] = load_average()
    result["timings"] = {name: asdict(t) for name, t in timings.items()}
    floor_names = ("floor before", "floor after")
    floor = floor_of(timings[n].seconds for n in floor_names)
    result["ratios"] = {
        "floor_used_s": floor,
        "noop_over_floor": ratio(timings["no-op"].seconds, floor),
        "one_changed_over_floor": ratio(timings["one-changed"].seconds, floor),
        "cold_over_floor": ratio(timings["cold"].seconds, floor),
        "noop_over_cold": ratio(timings["no-op"].seconds, timings["cold"].seconds),
        # Issue 15: one-changed <= that node's rebuild alone + 2x the floor, i.e. this <= 1.
        "one_changed_over_alone_plus_2_floors": ratio(
            timings["one-changed"].seconds, timings["one node alone"].seconds + 2 * floor
        ),
    }
    result["scale"] = {str(k): v for k, v in scale_rows.items()}
    result["podman_exec_s"] = exec_s
    result["problems"] = problems
    lab = f"{options.nodes} lab nodes ({plan.spec()})"
    print(f"\n{lab}, connection {options.connection}, provision play strategy {result.get('strategy', '?')}")
    print(f"load average {result['load_before']} before, {result['load_after']} after; {os.cpu_count()} CPUs")
    print(render_table(timings, floor_names))
    print(f"ratios use the smaller floor run ({floor:.1f}s); '/ cold' = run / cold provision")
    print(
        "one-changed / (one node alone + 2x floor): "
        f"{result['ratios']['one_changed_over_alone_plus_2_floors']:.2f} (issue 15's goal: <= 1)"
    )
    print(
        "\nwhere the time went (mean s per host from job events; rest = gpulab + Ansible + lab connection):"
    )
    for name in ("cold", "no-op", "one-changed", "one node alone"):
        print("  " + render_split(timings[name]))
    if len(scale_rows) > 1:
        print("\nscaling (--limit subsets of the same lab; one floor run per size):")
        print(render_scale(scale_rows))
    print(
        "\nlab, not product: nodes are containers on this machine; each task's round trip is "
        + (f"podman exec ({exec_s:.2f}s each, several per task)" if exec_s else "SSH to 127.0.0.1")
        + "; installer, conda and the MLP check's numpy training are stand-ins. The floor pays the same"
        " connection, so the ratios compare like with like."
    )
    for problem in problems:
        print(f"PROBLEM {problem}")
    if options.json_path:
        options.json_path.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
