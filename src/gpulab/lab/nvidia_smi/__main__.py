"""`python -m gpulab.lab.nvidia_smi stage --root DIR --profile NAME` and `... list` (gpulab lab stand-in)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpulab.lab.nvidia_smi import PROFILES, UnknownProfileError, stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpulab.lab.nvidia_smi",
        description="Fake nvidia-smi (gpulab lab stand-in): list profiles or stage one for a test host.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    stage_parser = sub.add_parser("stage", help="write a profile's files under DIR as they land under /")
    stage_parser.add_argument("--root", required=True, type=Path, help="directory standing for the host's /")
    stage_parser.add_argument("--profile", required=True, help="profile name (see `list`)")
    sub.add_parser("list", help="print the profiles: name, kind, description")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("".join(f"{p.name}\t{p.kind}\t{p.description}\n" for p in PROFILES.values()), end="")
        return 0
    try:
        stage(args.root, args.profile)
    except UnknownProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
