"""`gpulab lab ...` and `gpulab demo`: the simulated lab's commands, registered into the main CLI."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gpulab.lab import cluster, nvidia_smi
from gpulab.lab.podman import PodmanError

SIMULATED = (
    "gpulab lab: GPUs and conda are SIMULATED here: each node's nvidia-smi replays a capture from a real GPU, "
    "and Miniforge/conda are gpulab's offline stand-ins (real Python envs; CUDA packages only recorded)."
)


def project_dir() -> Path:
    env = os.environ.get("GPULAB_PROJECT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[3]


def lab_state_dir() -> Path:
    env = os.environ.get("GPULAB_LAB_DIR")
    return Path(env).resolve() if env else project_dir() / ".gpulab" / "lab"


def lab_cache_dir() -> Path:
    return project_dir() / ".cache" / "gpulab-lab"


def cmd_up(args: argparse.Namespace) -> int:
    nodes = cluster.parse_nodes(args.nodes)
    if args.capture:
        from gpulab.lab.capture import add_capture_profiles

        nodes = add_capture_profiles(nodes, Path(args.capture))
    print(SIMULATED, flush=True)
    state = cluster.up(lab_state_dir(), nodes, lab_cache_dir(), port=args.port)
    for node in state.nodes:
        print(f"  {node.name:<12} {node.container:<24} {node.profile}")
    print(f"mirror: {state.mirror_url}")
    print(f"inventory: {state.inventory}")
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


def cmd_profiles(args: argparse.Namespace) -> int:
    for name, profile in sorted(nvidia_smi.PROFILES.items()):
        print(f"{name:<28} {profile.description}")
    return 0


def run_lab_command(func: object, args: argparse.Namespace) -> int:
    """Turn lab/podman problems into one-line messages (exit 5: usage/config error)."""
    try:
        return func(args)  # type: ignore[operator, no-any-return]
    except (cluster.LabError, PodmanError, nvidia_smi.UnknownProfileError) as exc:
        print(f"gpulab lab: {exc}")
        return 5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser("lab", help="a simulated GPU lab in local containers (offline)")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)

    up = lab_sub.add_parser("up", help="start the lab's nodes and mirror, write its inventory")
    up.add_argument("--nodes", default=cluster.DEFAULT_NODES, help="NAME=PROFILE[@IMAGE],... or a count")
    up.add_argument("--capture", help="a directory of your own nvidia-smi captures (see docs/lab.md)")
    up.add_argument("--port", type=int, help="mirror port on 127.0.0.1 (default: a free one)")
    up.set_defaults(lab_func=cmd_up)

    down = lab_sub.add_parser("down", help="remove every container and process the lab created")
    down.set_defaults(lab_func=cmd_down)

    driver = lab_sub.add_parser("driver", help="swap a node's driver profile (rehearse an upgrade)")
    driver.add_argument("node")
    driver.add_argument("profile")
    driver.set_defaults(lab_func=cmd_driver)

    inv = lab_sub.add_parser("inventory", help="print the path of the lab's inventory")
    inv.set_defaults(lab_func=cmd_inventory)

    profiles = lab_sub.add_parser("profiles", help="list the GPU/driver profiles a node can have")
    profiles.set_defaults(lab_func=cmd_profiles)

    lab.set_defaults(func=lambda args: run_lab_command(args.lab_func, args))
