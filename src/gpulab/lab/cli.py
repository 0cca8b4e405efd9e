"""`gpulab lab ...` and `gpulab demo`: the simulated lab's commands, registered into the main CLI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gpulab.collection import work_dir
from gpulab.errors import ExitCode
from gpulab.lab import cluster, nvidia_smi, ssh
from gpulab.podman import PodmanError
from gpulab.runner import project_dir

SIMULATED = (
    "gpulab lab: GPUs and conda are SIMULATED here: each node's nvidia-smi replays a capture from a "
    "real GPU, and Miniforge/conda are gpulab's offline stand-ins "
    "(real Python envs; CUDA packages only recorded)."
)


def lab_state_dir() -> Path:
    env = os.environ.get("GPULAB_LAB_DIR")
    return Path(env).resolve() if env else work_dir(project_dir()) / ".gpulab" / "lab"


def lab_cache_dir() -> Path:
    return work_dir(project_dir()) / ".cache" / "gpulab-lab"


def cmd_up(args: argparse.Namespace) -> int:
    nodes = cluster.parse_nodes(args.nodes)
    if args.capture:
        from gpulab.lab.capture import add_capture_profiles

        nodes = add_capture_profiles(nodes, Path(args.capture))
    print(SIMULATED, flush=True)
    state = cluster.up(
        lab_state_dir(),
        nodes,
        lab_cache_dir(),
        port=args.port,
        connection=args.connection,
        sudo_password=args.sudo_password,
    )
    for node in state.nodes:
        where = f"ssh admin@127.0.0.1 -p {node.ssh_port}" if state.connection == "ssh" else ""
        print(f"  {node.name:<12} {node.container:<24} {node.profile:<24} {where}".rstrip())
    print(f"mirror: {state.mirror_url}")
    print(f"inventory: {state.inventory}")
    if state.connection == "ssh":
        print(f"ssh key: {state.ssh.private_key} (known hosts: {state.ssh.known_hosts})")
    if state.sudo_password:
        # The password itself is never printed (terminals and CI logs keep it): it is in a 0600 file.
        print(
            f"sudo password of admin: in {state.ssh.sudo_password} (0600); `gpulab provision -K` asks for it"
        )
        print(f"next: gpulab provision -K -i {state.inventory}")
    else:
        print(f"next: gpulab provision -i {state.inventory}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    removed = cluster.down(lab_state_dir())
    print("gpulab lab: removed " + (", ".join(removed) if removed else "nothing (no lab was up)"))
    return 0


def cmd_driver(args: argparse.Namespace) -> int:
    node = cluster.switch_driver(lab_state_dir(), args.node, args.profile)
    desc = nvidia_smi.PROFILES[node.profile].description
    print(f"gpulab lab: {node.name} now has profile {node.profile} ({desc})")
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    state = cluster.LabState.load(lab_state_dir())
    if state is None:
        raise cluster.LabError("no lab is up; run `gpulab lab up` first")
    print(state.inventory)
    return 0


def cmd_sshd(args: argparse.Namespace) -> int:
    node = cluster.sshd(lab_state_dir(), args.node, args.action)
    done = {
        "stop": "sshd stopped (the node is unreachable over SSH)",
        "start": f"sshd listening on 127.0.0.1:{node.ssh_port}",
        "new-host-keys": "new host keys, as after a reinstall (SSH will refuse them until trusted)",
        "trust": "the lab's known_hosts now holds every node's current host keys",
    }
    print(f"gpulab lab: {node.name}: {done[args.action]}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    for name, profile in sorted(nvidia_smi.PROFILES.items()):
        print(f"{name:<28} {profile.description}")
    return 0


DEMO_UPGRADE = ("gpu-l40s", "l40s-595.80")
DEMO_STEPS = 5


class DemoStepFailed(Exception):
    """A demo step went wrong: ``why`` says what, ``look`` where to look closer, ``code`` the exit code."""

    def __init__(self, why: str, look: list[str], code: int) -> None:
        super().__init__(why)
        self.why, self.look, self.code = why, look, code


def _provision(inventory: Path, report: Path, extra: list[str]) -> dict[str, Any]:
    """The real `gpulab provision`, in-process; its JSON report, or DemoStepFailed when it did not pass."""
    from gpulab.cli import build_parser

    argv = ["provision", "-i", str(inventory), "--report", str(report)]
    for item in extra:
        argv += ["-e", item]
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    data: dict[str, Any] = json.loads(report.read_text()) if report.is_file() else {}
    if rc != ExitCode.OK:
        bad = {n: h for n, h in data.get("hosts", {}).items() if h.get("status") != "ok"}
        why = f"gpulab provision exited {rc} ({data.get('status', 'no report')})"
        details = [
            f"{n}: {h.get('failed_task') or h.get('last_task')}: {h.get('message') or ''}"
            for n, h in bad.items()
        ]
        look = [f"gpulab report {data['ident']}" if data.get("ident") else "gpulab report"]
        if data.get("artifacts"):
            look.append(f"artifacts: {data['artifacts']} (job_events/, stdout)")
        raise DemoStepFailed("; ".join([why, *details]), look, rc)
    return data


def _step(number: int, text: str) -> None:
    print(f"\n== {number}/{DEMO_STEPS} {text}", flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_demo(args: argparse.Namespace) -> int:
    """up -> provision -> upgrade one node's driver -> provision again -> down; stops at the first failure."""
    state_dir = lab_state_dir()
    work = state_dir.parent / "demo"
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.report) if args.report else work / "demo.json"
    print(SIMULATED, flush=True)
    node_name, new_profile = DEMO_UPGRADE
    demo: dict[str, Any] = {
        "schema_version": 1,
        "simulated": True,
        "upgrade": {"node": node_name, "from_profile": None, "to_profile": new_profile},
        "runs": {},
        "failed_step": None,
    }
    # SIGTERM like Ctrl-C: the lab still comes down (during a provision, `gpulab provision` handles both).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    number, text, code, lab_up = 0, "", int(ExitCode.OK), False
    try:
        number, text = 1, "gpulab lab up: three simulated nodes (two GPU drivers, one CPU-only)"
        _step(number, text)
        state = cluster.up(state_dir, cluster.parse_nodes(cluster.DEFAULT_NODES), lab_cache_dir())
        lab_up = True  # (a failed `up` removes what it started itself)
        old_profile = next(n.profile for n in state.nodes if n.name == node_name)
        demo["upgrade"]["from_profile"] = old_profile
        number, text = 2, "gpulab provision: every node from bare OS to a verified environment"
        _step(number, text)
        demo["runs"]["initial"] = _provision(state.inventory, work / "initial.json", args.extra_vars)
        number, text = 3, f"driver upgrade on {node_name}: {old_profile} -> {new_profile}"
        _step(number, text)
        cluster.switch_driver(state_dir, node_name, new_profile)
        number, text = 4, "gpulab provision again: only the upgraded node should change"
        _step(number, text)
        demo["runs"]["after_upgrade"] = _provision(
            state.inventory, work / "after_upgrade.json", args.extra_vars
        )
    except DemoStepFailed as exc:
        code = exc.code
        demo["failed_step"] = {"step": number, "name": text, "why": exc.why, "look": exc.look}
    except (cluster.LabError, PodmanError, nvidia_smi.UnknownProfileError) as exc:
        code = int(ExitCode.USAGE_ERROR)
        demo["failed_step"] = {"step": number, "name": text, "why": str(exc), "look": ["gpulab lab up"]}
    except KeyboardInterrupt:
        code = int(ExitCode.INTERRUPTED)
        demo["failed_step"] = {"step": number, "name": text, "why": "interrupted", "look": []}
    finally:
        try:
            if lab_up and args.keep:
                _step(
                    5, "lab kept up (--keep): `gpulab lab inventory` finds it, `gpulab lab down` removes it"
                )
            elif lab_up:
                _step(5, "gpulab lab down")
                cluster.down(state_dir)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    demo["exit_code"] = code
    out.write_text(json.dumps(demo, indent=2) + "\n")
    failed = demo["failed_step"]
    if failed:
        print(
            f"\ngpulab demo: FAILED at step {failed['step']}/{DEMO_STEPS} ({failed['name']}): {failed['why']}"
        )
        for hint in failed["look"]:
            print(f"  look closer: {hint}")
    print(f"\ngpulab demo: report {out}")
    return code


def run_lab_command(func: object, args: argparse.Namespace) -> int:
    """Turn lab/podman problems into one-line messages (exit 5: usage/config error, docs/cli.md)."""
    try:
        return func(args)  # type: ignore[operator, no-any-return]
    except (cluster.LabError, ssh.SshLabError, PodmanError, nvidia_smi.UnknownProfileError) as exc:
        print(f"gpulab lab: {exc}")
        return int(ExitCode.USAGE_ERROR)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser("lab", help="a simulated GPU lab in local containers (offline)")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)

    up = lab_sub.add_parser("up", help="start the lab's nodes and mirror, write its inventory")
    up.add_argument("--nodes", default=cluster.DEFAULT_NODES, help="NAME=PROFILE[@IMAGE],... or a count")
    up.add_argument("--capture", help="a directory of your own nvidia-smi captures (see docs/lab.md)")
    up.add_argument("--port", type=int, help="mirror port on 127.0.0.1 (default: a free one)")
    up.add_argument(
        "--connection",
        choices=cluster.CONNECTIONS,
        default=cluster.DEFAULT_CONNECTION,
        help="how Ansible reaches the nodes: ssh (default: sshd on a loopback port per node) or podman exec",
    )
    up.add_argument(
        "--sudo-password",
        action="store_true",
        help="SSH labs: admin's sudo asks for a password (<lab dir>/ssh/sudo-password; use -K)",
    )
    up.set_defaults(lab_func=cmd_up)

    down = lab_sub.add_parser("down", help="remove the containers and the mirror this lab created")
    down.set_defaults(lab_func=cmd_down)

    driver = lab_sub.add_parser("driver", help="swap a node's driver profile (rehearse an upgrade)")
    driver.add_argument("node")
    driver.add_argument("profile")
    driver.set_defaults(lab_func=cmd_driver)

    inv = lab_sub.add_parser("inventory", help="print the path of the lab's inventory")
    inv.set_defaults(lab_func=cmd_inventory)

    sshd = lab_sub.add_parser(
        "sshd", help="SSH labs: stop/start a node's sshd, give it new host keys, trust them"
    )
    sshd.add_argument("node")
    sshd.add_argument("action", choices=cluster.SSHD_ACTIONS)
    sshd.set_defaults(lab_func=cmd_sshd)

    profiles = lab_sub.add_parser("profiles", help="list the GPU/driver profiles a node can have")
    profiles.set_defaults(lab_func=cmd_profiles)

    lab.set_defaults(func=lambda args: run_lab_command(args.lab_func, args))

    demo = subparsers.add_parser(
        "demo", help="offline demo: simulated lab up, provision, driver upgrade, provision, report, down"
    )
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.add_argument("--report", help="write the demo's JSON report here (default .gpulab/demo/demo.json)")
    demo.add_argument(
        "-e", "--extra-vars", action="append", default=[], help="extra vars for both provisions"
    )
    demo.set_defaults(func=lambda args: run_lab_command(cmd_demo, args))
