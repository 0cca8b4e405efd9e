#!/usr/bin/python3
"""gpulab lab STAND-IN for nvidia-smi: replays outputs captured on real GPUs, byte for byte.

Installed as /usr/bin/nvidia-smi on a test host by `gpulab.lab.nvidia_smi.stage()`. It never invents a
value: it answers only from the captures of the profile named in /etc/gpulab-lab/nvidia-smi.profile,
whose files live in /usr/local/share/gpulab-lab/nvidia-smi/<profile>/ (manifest.json + captures).

What it answers:
- `nvidia-smi` (the table), `-q`/`-a`/`--query`, `-L`/`--list-gpus`, `--version`: the captured text.
- `-q -x` (in any order and spelling: `-q`/`-a`/`--query` with `-x`/`--xml-format`): the captured XML.
- `--query-gpu=F1,F2 --format=csv[,noheader][,nounits]`: columns picked from a capture of every field
  (`nvidia-smi --query-gpu=<all> --format=csv`); `nounits` strips the unit suffix from values (the
  header keeps it, as nvidia-smi does). An unknown field gets nvidia-smi's answer on stdout,
  `Field "X" is not a valid field to query.` plus a blank line, and exit code 2.
- Error profiles print their captured error text on stdout (nvidia-smi writes errors there) and exit
  with the code from `man nvidia-smi` (RETURN VALUE) for every invocation.
- Anything it has no capture of: a message on stderr that says so and exit code 255 (nvidia-smi's
  "other error"), never made-up output.

Stdlib only; runs under the python3 of Debian 12 (3.11) and Debian 13 (3.13). For tests outside a
container, GPULAB_LAB_NVIDIA_SMI_SYSROOT points at a staged tree instead of /.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PROFILE_FILE = "etc/gpulab-lab/nvidia-smi.profile"
DATA_DIR = "usr/local/share/gpulab-lab/nvidia-smi"
SYSROOT_ENV = "GPULAB_LAB_NVIDIA_SMI_SYSROOT"
QUERY_FLAGS = {"-q", "-a", "--query"}
XML_FLAGS = {"-x", "--xml-format"}
RC_INVALID_ARGUMENT = 2
RC_OTHER_ERROR = 255
STANDIN = "gpulab lab stand-in"

# Aliases documented by `nvidia-smi --help-query-gpu` ("name" or "gpu_name", ...); nvidia-smi prints the
# canonical name in the CSV header.
FIELD_ALIASES = {
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_serial": "serial",
    "gpu_bus_id": "pci.bus_id",
}


class NoCapture(Exception):
    """The profile has no capture that answers this invocation."""


def _out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _standin_error(message: str, rc: int = RC_OTHER_ERROR) -> int:
    sys.stderr.write(f"{STANDIN}: {message}\n")
    return rc


def _option_value(args: list[str], i: int, name: str) -> tuple[str, int]:
    """Value of `--name=V` or `--name V` at args[i]; returns (value, next index)."""
    arg = args[i]
    if arg.startswith(name + "="):
        return arg[len(name) + 1 :], i + 1
    if i + 1 < len(args):
        return args[i + 1], i + 2
    raise NoCapture


def _strip_unit(value: str, header: str) -> str:
    """`80 MiB` -> `80` under header `memory.total [MiB]` (a header without a unit leaves it alone)."""
    unit = header.partition(" [")[2]
    if unit.endswith("]") and value.endswith(" " + unit[:-1]):
        return value[: -len(unit)]
    return value


def query_gpu(allfields: bytes, fields_arg: str, format_arg: str) -> tuple[bytes, int]:
    """Answer `--query-gpu=<fields_arg> --format=<format_arg>` from an all-fields CSV capture."""
    options = [o.strip() for o in format_arg.split(",") if o.strip()]
    if "csv" not in options or any(o not in ("csv", "noheader", "nounits") for o in options):
        raise NoCapture
    lines = allfields.decode("utf-8").removesuffix("\n").split("\n")
    headers = lines[0].split(", ")
    rows = [line.split(", ") for line in lines[1:]]
    index = {h.split(" [", 1)[0]: n for n, h in enumerate(headers)}
    wanted = [f.strip() for f in fields_arg.split(",")]
    columns: list[int] = []
    for field in wanted:
        key = FIELD_ALIASES.get(field, field)
        if key not in index:
            return f'Field "{field}" is not a valid field to query.\n\n'.encode(), RC_INVALID_ARGUMENT
        columns.append(index[key])
    out: list[str] = []
    if "noheader" not in options:
        out.append(", ".join(headers[c] for c in columns))
    nounits = "nounits" in options
    for row in rows:
        out.append(", ".join(_strip_unit(row[c], headers[c]) if nounits else row[c] for c in columns))
    return ("\n".join(out) + "\n").encode("utf-8"), 0


def answer(args: list[str], manifest: dict[str, object], data: Path) -> tuple[bytes, int]:
    """Output and exit code for one invocation; raises NoCapture when no capture answers it."""
    responses = manifest.get("responses")
    if not isinstance(responses, dict):
        raise NoCapture

    def capture(kind: str) -> bytes:
        name = responses.get(kind)
        if not isinstance(name, str):
            raise NoCapture
        return (data / name).read_bytes()

    if not args:
        return capture("table"), 0
    if args in (["-q"], ["-a"], ["--query"]):
        return capture("query"), 0
    if len(args) == 2 and len(set(args) & QUERY_FLAGS) == 1 and len(set(args) & XML_FLAGS) == 1:
        return capture("query_xml"), 0
    if args in (["-L"], ["--list-gpus"]):
        return capture("list"), 0
    if args == ["--version"]:
        return capture("version"), 0
    fields: str | None = None
    fmt: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--query-gpu" or arg.startswith("--query-gpu="):
            fields, i = _option_value(args, i, "--query-gpu")
        elif arg == "--format" or arg.startswith("--format="):
            fmt, i = _option_value(args, i, "--format")
        else:
            raise NoCapture
    if fields is None or fmt is None:
        raise NoCapture
    return query_gpu(capture("query_gpu_csv"), fields, fmt)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sysroot = Path(os.environ.get(SYSROOT_ENV) or "/")
    profile_file = sysroot / PROFILE_FILE
    try:
        profile = profile_file.read_text(encoding="utf-8").strip()
    except OSError:
        return _standin_error(f"no profile file {profile_file}")
    data = sysroot / DATA_DIR / profile
    try:
        manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _standin_error(f"profile {profile} is not installed under {data}")
    error = manifest.get("error")
    if isinstance(error, dict):
        _out((data / str(error["file"])).read_bytes())
        return int(error["rc"])
    try:
        output, rc = answer(args, manifest, data)
    except NoCapture:
        return _standin_error(f"profile {profile} has no capture for this query")
    _out(output)
    return rc


if __name__ == "__main__":
    sys.exit(main())
