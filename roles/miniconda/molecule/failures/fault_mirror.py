"""Serve the lab mirror root once per fault kind (gpulab.lab.mirror, inject_fault) from a background process.

Used by the `failures` scenario on the controller:
  fault_mirror.py start --root DIR --state FILE   # prints and writes {"pid": N, "urls": {kind: base URL}}
  fault_mirror.py stop --state FILE
Each base URL serves the lab mirror's files, with every request under /miniconda/ failing as its kind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from gpulab.lab.mirror import FaultKind

KINDS: tuple[FaultKind, ...] = ("checksum", "truncate", "404")
LIFETIME_S = 3600


def _serve(root: Path, state: Path) -> None:
    from gpulab.lab.mirror import Mirror

    mirrors = []
    urls = {}
    for kind in KINDS:
        mirror = Mirror(root)
        urls[kind] = mirror.start()
        mirror.inject_fault("/miniconda/", kind)
        mirrors.append(mirror)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "urls": urls}))
    tmp.replace(state)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        time.sleep(LIFETIME_S)
    finally:
        for mirror in mirrors:
            mirror.stop()


def start(root: Path, state: Path) -> int:
    state.unlink(missing_ok=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            _serve(root, state)
            os._exit(0)
        os._exit(0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if state.is_file():
            print(state.read_text())
            return 0
        time.sleep(0.1)
    print(f"the fault mirror did not start (no {state})", file=sys.stderr)
    return 1


def stop(state: Path) -> int:
    if not state.is_file():
        return 0
    pid = int(json.loads(state.read_text())["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    state.unlink()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--root", type=Path)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    if args.action == "start":
        if args.root is None or not args.root.is_dir():
            print(f"--root {args.root} is not a directory", file=sys.stderr)
            return 1
        return start(args.root, args.state)
    return stop(args.state)


if __name__ == "__main__":
    sys.exit(main())
