# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Reading nvidia-smi: the driver, CUDA version and GPUs (nvidia_gpu_facts, host_state)."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

DEFAULT_SEARCH_DIRS = [
    "/usr/bin",
    "/usr/local/nvidia/bin",
    "/usr/local/bin",
    "/usr/lib/wsl/lib",
    "/opt/nvidia/bin",
]

# --query-gpu fields, in the order asked. `index`, `name` and `driver_version` exist in every branch
# (nvidia-smi --help-query-gpu); the others are dropped and the query retried when a driver answers
# 'Field "X" is not a valid field to query.' (compute_cap arrived in R510).
QUERY_FIELDS = (
    "index",
    "pci.bus_id",
    "uuid",
    "name",
    "memory.total",
    "driver_version",
    "mig.mode.current",
    "compute_cap",
)
REQUIRED_QUERY_FIELDS = ("index", "name", "driver_version")
QUERY_FORMAT = "--format=csv,noheader,nounits"

BROKEN_DRIVER_CAUSES = (
    "Usual causes: the kernel module is not loaded (check `lsmod | grep nvidia`, `dmesg | grep -i nvrm`); "
    "the driver was built for another kernel (kernel upgraded without DKMS rebuilding the module); "
    "Secure Boot refused the unsigned module; nouveau is bound to the GPU; or the driver package is "
    "half-installed. Reinstall/rebuild the driver for the running kernel and reboot."
)

NO_DEVICES_CAUSES = (
    "The driver is loaded but initialised no GPU. Usual causes: RmInitAdapter failed "
    "(see `dmesg | grep NVRM`), "
    "Resizable BAR / Above 4G decoding disabled in the firmware, a GPU newer than the driver, or the GPU "
    "is passed through to a VM or bound to vfio-pci."
)

GPU_LOST_CAUSES = (
    "A GPU has fallen off the bus or is in an error state (Xid 79 and similar in `dmesg`). "
    "Usual causes: power, overheating, PCIe/riser faults or a driver crash. "
    "Reboot the node; if it recurs, take the GPU out of service."
)

# An "X.Y" version: a CUDA version ("12.4") or a GPU's compute capability ("8.9"). The one home of this
# form: the filters import it and roles check it with the test gpulab.gpulab.cuda_version (plugins/test/).
XY_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
# A driver version ("550.54.14", "595.80"): dotted numbers, compared per component (cuda_check's filter).
DOTTED_VERSION = re.compile(r"^[0-9]+(?:\.[0-9]+)+$")


def is_xy_version(value: str) -> bool:
    """True for an "X.Y" version such as CUDA "12.4" or compute capability "8.9" (XY_VERSION)."""
    return XY_VERSION.match(value) is not None


_RE_MISMATCH = re.compile(r"Driver/library version mismatch", re.IGNORECASE)
_RE_NVML_VERSION = re.compile(r"NVML library version:\s*([0-9]+(?:\.[0-9]+)+)")
# nvidia-smi prints an ASCII apostrophe; pasted copies carry U+2018/U+2019.
_RE_NO_DRIVER = re.compile(r"couldn.?t communicate with the NVIDIA driver", re.IGNORECASE)
_RE_NO_DEVICES = re.compile(r"^\s*No devices were found\s*$", re.MULTILINE)
_RE_DEVICE_HANDLE = re.compile(r"Unable to determine the device handle for GPU ?([0-9A-Fa-f:.]+): (.*)")
_RE_GPU_LOST = re.compile(r"GPU is lost", re.IGNORECASE)
_RE_INVALID_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query')

_RE_GPU_HEADER = re.compile(r"^GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])$")
_RE_BANNER = re.compile(r"^=+\s*NVSMI LOG\s*=+$")
_RE_WARNING = re.compile(r"^WARNING\b", re.IGNORECASE)
_RE_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B)?$", re.IGNORECASE)
_RE_KMOD = re.compile(r"Kernel Module(?: for \S+)?\s+([0-9]+(?:\.[0-9]+)+)")
# From R610, -q prints e.g. "610.57.04 [Deprecated; will be removed in CUDA 14.0. Use KMD Version instead]".
_DEPRECATED_SUFFIX = re.compile(r"\s*\[Deprecated[^\]]*\]\s*$")
_NOT_AVAILABLE = {"n/a", "[n/a]", "not found", "not supported", "[not supported]", "unknown error", ""}
_MIB_PER_UNIT = {"kib": 1 / 1024, "mib": 1, "gib": 1024, "tib": 1024 * 1024}

# Top-level keys of `-q`: R610 added KMD / CUDA UMD Version and deprecated the old names; read the new first.
_TEXT_DRIVER_KEYS = ("kmd version", "driver version")
_TEXT_CUDA_KEYS = ("cuda umd version", "cuda version")


class NvidiaSmiError(Exception):
    """A state of nvidia-smi that the caller must see as a failure."""

    def __init__(self, state: str, msg: str) -> None:
        super().__init__(msg)
        self.state = state
        self.msg = msg


class RebootRequired(Exception):
    """NVML says the loaded kernel module and the user-space library differ (upgrade without reboot)."""

    def __init__(self, library_version: str | None) -> None:
        super().__init__(library_version)
        self.library_version = library_version


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = _DEPRECATED_SUFFIX.sub("", value).strip()
    return None if value.lower() in _NOT_AVAILABLE else value


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def classify_error(output: str, rc: int) -> dict[str, Any] | None:
    """Recognise nvidia-smi's error messages (by text, not by exit code).

    Returns None when the output is not a known error, a dict with state reboot_required for the
    NVML mismatch, and raises NvidiaSmiError for the states that are failures.
    """
    if _RE_MISMATCH.search(output):
        match = _RE_NVML_VERSION.search(output)
        return {"state": "reboot_required", "library_version": match.group(1) if match else None}
    if _RE_NO_DRIVER.search(output):
        raise NvidiaSmiError(
            "driver_broken",
            f"nvidia-smi couldn't communicate with the NVIDIA driver (rc {rc}); it said: "
            f"{_first_line(output)!r}. {BROKEN_DRIVER_CAUSES}",
        )
    if _RE_NO_DEVICES.search(output):
        raise NvidiaSmiError(
            "no_devices", f"nvidia-smi: No devices were found (rc {rc}). {NO_DEVICES_CAUSES}"
        )
    handle = _RE_DEVICE_HANDLE.search(output)
    if handle or _RE_GPU_LOST.search(output):
        line = handle.group(0).strip() if handle else _first_line(output)
        raise NvidiaSmiError(
            "gpu_lost", f"nvidia-smi cannot reach a GPU (rc {rc}): {line}. {GPU_LOST_CAUSES}"
        )
    return None


def invalid_field(output: str) -> str | None:
    """The field named in nvidia-smi's 'Field "X" is not a valid field to query.', or None."""
    match = _RE_INVALID_FIELD.search(output)
    return match.group(1) if match else None


def normalize_bus_id(bus_id: str | None) -> str | None:
    """'0000:06:00.0' (old drivers) and '00000000:06:00.0' -> '00000000:06:00.0', for matching."""
    if not bus_id:
        return None
    parts = bus_id.strip().split(":")
    if len(parts) != 3:
        return bus_id.strip().upper()
    try:
        domain = int(parts[0], 16)
    except ValueError:
        return bus_id.strip().upper()
    return f"{domain:08X}:{parts[1]}:{parts[2]}".upper()


def parse_memory_mib(value: str | None, warnings: list[str], what: str) -> int | None:
    """'81559 MiB' / '81559' (nounits) -> 81559; other units are converted; anything else -> None, warned."""
    cleaned = _clean(value)
    if cleaned is None:
        return None
    match = _RE_MEMORY.match(cleaned)
    if not match:
        warnings.append(f"ignored {what} {cleaned!r}: not a memory size")
        return None
    unit = (match.group(2) or "MiB").lower()
    if unit not in _MIB_PER_UNIT:
        warnings.append(f"ignored {what} {cleaned!r}: unknown unit")
        return None
    return int(float(match.group(1)) * _MIB_PER_UNIT[unit])


def _version(value: str | None, pattern: re.Pattern[str], what: str, warnings: list[str]) -> str | None:
    cleaned = _clean(value)
    if cleaned is None:
        return None
    if not pattern.match(cleaned):
        warnings.append(f"ignored {what} {cleaned!r}: not a version number")
        return None
    return cleaned


def _mig_mode(value: str | None) -> str | None:
    cleaned = _clean(value)
    return cleaned.lower() if cleaned else None


def new_gpu(index: int, bus_id: str | None) -> dict[str, Any]:
    return {
        "index": index,
        "name": None,
        "uuid": None,
        "pci_bus_id": bus_id,
        "memory_total_mib": None,
        "compute_capability": None,
        "compute_capability_source": None,
        "mig_mode": None,
        "mig_devices": None,
    }


def _result() -> dict[str, Any]:
    return {
        "driver_version": None,
        "cuda_driver_version": None,
        "gpus": [],
        "attached_gpus": None,
        "warnings": [],
    }


def parse_query_gpu_csv(text: str, fields: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse `--query-gpu=<fields> --format=csv,noheader,nounits`. Lines that are not a row are warnings."""
    result = _result()
    warnings: list[str] = result["warnings"]
    drivers: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        row = next(csv.reader([line], skipinitialspace=True))
        values = dict(zip(fields, (v.strip() for v in row), strict=False))
        if len(row) != len(fields) or not values.get("index", "").isdigit():
            warnings.append(f"ignored a line of --query-gpu output that is not a GPU row: {line!r}")
            continue
        gpu = new_gpu(int(values["index"]), _clean(values.get("pci.bus_id")))
        gpu["name"] = _clean(values.get("name"))
        gpu["uuid"] = _clean(values.get("uuid"))
        gpu["memory_total_mib"] = parse_memory_mib(values.get("memory.total"), warnings, "memory.total")
        gpu["mig_mode"] = _mig_mode(values.get("mig.mode.current"))
        cc = _clean(values.get("compute_cap"))
        if cc is not None and not is_xy_version(cc):
            warnings.append(f"ignored compute_cap {cc!r} of GPU {gpu['index']}: not M.m")
            cc = None
        if cc is not None:
            gpu["compute_capability"] = cc
            gpu["compute_capability_source"] = "nvidia-smi"
        driver = _version(values.get("driver_version"), DOTTED_VERSION, "driver_version", warnings)
        if driver:
            drivers.add(driver)
        result["gpus"].append(gpu)
    if len(drivers) > 1:
        warnings.append(f"GPUs report different driver versions: {', '.join(sorted(drivers))}")
    result["driver_version"] = min(drivers) if drivers else None
    result["gpus"].sort(key=lambda g: g["index"])
    return result


def _xml_text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    return found.text if found is not None else None


def parse_query_xml(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi -q -x`. Raises ValueError when the text is not nvidia-smi's XML log."""
    result = _result()
    warnings: list[str] = result["warnings"]
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<nvidia_smi_log")
    if start < 0:
        raise ValueError("no <nvidia_smi_log> document in the output")
    for line in text[:start].splitlines():
        if line.strip():
            warnings.append(line.strip())
    try:
        root = ET.fromstring(text[start:].strip())
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"root element is <{root.tag}>, not <nvidia_smi_log>")
    result["driver_version"] = _version(
        _xml_text(root, "driver_version"), DOTTED_VERSION, "driver_version", warnings
    )
    result["cuda_driver_version"] = _version(
        _xml_text(root, "cuda_version"), XY_VERSION, "cuda_version", warnings
    )
    attached = _clean(_xml_text(root, "attached_gpus"))
    result["attached_gpus"] = int(attached) if attached and attached.isdigit() else None
    for position, node in enumerate(root.findall("gpu")):
        bus = _clean(_xml_text(node, "pci/pci_bus_id")) or _clean(node.get("id"))
        gpu = new_gpu(position, bus)
        gpu["name"] = _clean(_xml_text(node, "product_name"))
        gpu["uuid"] = _clean(_xml_text(node, "uuid"))
        gpu["memory_total_mib"] = parse_memory_mib(
            _xml_text(node, "fb_memory_usage/total"), warnings, "fb_memory_usage/total"
        )
        gpu["mig_mode"] = _mig_mode(_xml_text(node, "mig_mode/current_mig"))
        gpu["mig_devices"] = len(node.findall("mig_devices/mig_device"))
        result["gpus"].append(gpu)
    return result


def parse_query_q(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi -q` text tolerantly: what it does not know it skips, never fails.

    Nesting is read from indentation (tabs count as 4 columns); a line is `key : value` (split at the first
    colon, any spacing) or a section title. Only a few paths are read; every other line is ignored.
    """
    result = _result()
    warnings: list[str] = result["warnings"]
    top: dict[str, str] = {}
    gpu: dict[str, Any] | None = None
    stack: list[tuple[int, str]] = []  # (indent, lower-cased section title) inside the current block

    for raw in text.splitlines():
        line = raw.expandtabs(4).rstrip()
        stripped = line.strip()
        if not stripped or _RE_BANNER.match(stripped):
            continue
        if _RE_WARNING.match(stripped):
            warnings.append(stripped)
            continue
        indent = len(line) - len(line.lstrip())
        header = _RE_GPU_HEADER.match(stripped) if indent == 0 else None
        if header:
            gpu = new_gpu(len(result["gpus"]), header.group("bus"))
            gpu["mig_devices"] = 0
            result["gpus"].append(gpu)
            stack = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if ":" not in stripped:
            if indent == 0:
                gpu = None  # a new top-level section ends the GPU block
            mig_device = stripped.lower() == "mig device" and [s for _, s in stack] in ([], ["mig devices"])
            if gpu is not None and mig_device:
                gpu["mig_devices"] += 1
            stack.append((indent, " ".join(stripped.lower().split())))
            continue
        key, value = stripped.split(":", 1)
        key = " ".join(key.lower().split())
        if indent == 0:
            gpu = None
            top.setdefault(key, value)
            continue
        if gpu is None:
            continue
        path = (*(s for _, s in stack), key)
        if path == ("product name",):
            gpu["name"] = _clean(value)
        elif path == ("gpu uuid",):
            gpu["uuid"] = _clean(value)
        elif path == ("pci", "bus id"):
            gpu["pci_bus_id"] = _clean(value) or gpu["pci_bus_id"]
        elif path == ("mig mode", "current"):
            gpu["mig_mode"] = _mig_mode(value)
        elif path == ("fb memory usage", "total"):
            gpu["memory_total_mib"] = parse_memory_mib(value, warnings, "FB Memory Usage Total")

    driver_key = next((k for k in _TEXT_DRIVER_KEYS if _clean(top.get(k))), None)
    cuda_key = next((k for k in _TEXT_CUDA_KEYS if _clean(top.get(k))), None)
    if driver_key:
        result["driver_version"] = _version(top[driver_key], DOTTED_VERSION, driver_key.title(), warnings)
    if cuda_key:
        result["cuda_driver_version"] = _version(top[cuda_key], XY_VERSION, cuda_key.title(), warnings)
    attached = _clean(top.get("attached gpus"))
    result["attached_gpus"] = int(attached) if attached and attached.isdigit() else None
    return result


# GPU product name -> compute capability, used only when the driver cannot answer the
# `compute_cap` query (drivers before R510). Source: https://developer.nvidia.com/cuda-gpus as
# tabulated in huggingface/huggingface.js#2010 (N4 in docs/pytorch-cuda-matrix.md); B300 = 10.3 and
# Thor = 11.0 from the CUDA 13.0 nvcc target list (N1/N3). First match wins; patterns are searched in
# the upper-cased product name.
NAME_TO_COMPUTE_CAPABILITY: tuple[tuple[str, str], ...] = (
    (r"\bGB10\b", "12.1"),
    (r"\bRTX PRO \d+ BLACKWELL\b", "12.0"),
    (r"\bRTX 50\d0\b", "12.0"),
    (r"\bB300\b", "10.3"),
    (r"\bG?B200\b", "10.0"),
    (r"\bTHOR\b", "11.0"),
    (r"\bG?H200\b", "9.0"),
    (r"\bH100\b", "9.0"),
    (r"\bH800\b", "9.0"),
    (r"\bL40S?\b", "8.9"),
    (r"\bL4\b", "8.9"),
    (r"\bRTX 40\d0\b", "8.9"),
    (r"\bRTX \d+ ADA\b", "8.9"),
    (r"\bORIN\b", "8.7"),
    (r"\bA100\b", "8.0"),
    (r"\bA800\b", "8.0"),
    (r"\bA30\b", "8.0"),
    (r"\bA40\b", "8.6"),
    (r"\bA10G?\b", "8.6"),
    (r"\bRTX 30\d0\b", "8.6"),
    (r"\bRTX A\d+\b", "8.6"),
    (r"\bT4\b", "7.5"),
    (r"\bRTX 20\d0\b", "7.5"),
    (r"\bXAVIER\b", "7.2"),
    (r"\bV100\b", "7.0"),
    (r"\bTITAN V\b", "7.0"),
    (r"\bTX2\b", "6.2"),
    (r"\bGTX 10\d0\b", "6.1"),
    (r"\bP40\b", "6.1"),
    (r"\bP100\b", "6.0"),
    (r"\bJETSON NANO\b", "5.3"),
)


def compute_capability_from_name(name: str | None) -> str | None:
    if not name:
        return None
    upper = name.upper()
    for pattern, cc in NAME_TO_COMPUTE_CAPABILITY:
        if re.search(pattern, upper):
            return cc
    return None


def apply_compute_capability(gpus: list[dict[str, Any]]) -> None:
    """Fill a compute capability nvidia-smi did not give from the name table, in place."""
    for gpu in gpus:
        if gpu["compute_capability"] is None:
            cc = compute_capability_from_name(gpu["name"])
            gpu["compute_capability"] = cc
            gpu["compute_capability_source"] = "name-table" if cc else None


def parse_proc_version(text: str) -> str | None:
    match = _RE_KMOD.search(text)
    return match.group(1) if match else None


def find_nvidia_smi(path: str, env_path: str) -> str | None:
    """Return the nvidia-smi to run; None when none is installed."""
    if path:
        return path
    dirs = [d for d in env_path.split(os.pathsep) if d] + DEFAULT_SEARCH_DIRS
    for directory in dirs:
        candidate = os.path.join(directory, "nvidia-smi")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# Seconds to wait for a killed nvidia-smi to go (one stuck in the driver may never go).
KILL_GRACE = 5


def run_bounded(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run nvidia-smi with LC_ALL=C (its messages are matched in English) for at most `timeout` seconds.

    It runs in its own session so that, when it does not answer, the whole process group is killed: a
    hung nvidia-smi may ignore SIGTERM, and a child left behind would hold the output pipes open (an
    `ansible.builtin.command` timeout or coreutils `timeout` without `-k` would then wait for ever).
    """
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "LC_ALL": "C"},
            start_new_session=True,
        )
    except OSError as exc:  # e.g. not executable: an answer gpulab does not know, like a shell's 126
        return 126, "", str(exc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=KILL_GRACE)
            after = "killed it"
        except subprocess.TimeoutExpired:
            after = (
                f"killed it, but process {proc.pid} did not end within {KILL_GRACE} s "
                "(stuck in the driver: only a reboot ends it)"
            )
        raise NvidiaSmiError(
            "timeout",
            f"`{' '.join(argv)}` did not answer within {timeout:g} seconds ({after}): a hung GPU or driver? "
            f"{GPU_LOST_CAUSES}",
        ) from None
    return (
        proc.returncode,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
    )


def _call(run: Any, argv: list[str]) -> tuple[int, str]:
    """Run nvidia-smi; known error states raise (NvidiaSmiError, RebootRequired). Returns (rc, stdout)."""
    rc, out, err = run(argv)
    known = classify_error(f"{out}\n{err}", rc)
    if known is not None:
        raise RebootRequired(known["library_version"])
    return rc, out if rc == 0 else f"{out}\n{err}"


def query_gpus(run: Any, smi: str, notes: list[str]) -> dict[str, Any] | None:
    """`--query-gpu`, dropping the optional fields this driver does not know; None when it cannot answer."""
    fields = list(QUERY_FIELDS)
    while True:
        rc, out = _call(run, [smi, "--query-gpu=" + ",".join(fields), QUERY_FORMAT])
        if rc == 0:
            return parse_query_gpu_csv(out, fields)
        bad = invalid_field(out)
        if bad in fields and bad not in REQUIRED_QUERY_FIELDS:
            notes.append(f"this driver does not know the --query-gpu field {bad}; queried without it")
            fields.remove(bad)
            continue
        notes.append(f"`{smi} --query-gpu` failed (rc {rc}): {_first_line(out)!r}")
        return None


def _merge_by_bus(gpus: list[dict[str, Any]], other: dict[str, Any]) -> None:
    """Take the MIG device count (which --query-gpu does not give) from a -q / -q -x parse."""
    by_bus = {normalize_bus_id(g["pci_bus_id"]): g for g in other["gpus"]}
    for gpu in gpus:
        match = by_bus.get(normalize_bus_id(gpu["pci_bus_id"]))
        if match is not None and gpu["mig_devices"] is None:
            gpu["mig_devices"] = match["mig_devices"]


def _require(value: Any, field: str, smi: str) -> None:
    if value is None:
        raise NvidiaSmiError(
            "missing_field",
            f"nvidia-smi gave no {field}: neither `{smi} --query-gpu=... {QUERY_FORMAT}`, `{smi} -q -x` nor "
            f"`{smi} -q` printed it. Run them on the host to see what this driver prints.",
        )


def read_nvidia_smi(run: Any, smi: str) -> dict[str, Any]:
    """Driver, CUDA version and GPUs: --query-gpu, then -q -x, then the -q text for what is still missing."""
    notes: list[str] = []
    warnings: list[str] = []
    sources: dict[str, str] = {}
    found: dict[str, Any] = {"driver_version": None, "cuda_driver_version": None, "gpus": None}

    def take(parsed: dict[str, Any], source: str) -> None:
        warnings.extend(parsed["warnings"])
        for key, part in (("gpus", "gpus"), ("driver_version", "driver"), ("cuda_driver_version", "cuda")):
            if found[key] is None and (parsed[key] or (key == "gpus" and parsed["attached_gpus"] == 0)):
                found[key] = parsed[key]
                sources[part] = source
        if found["gpus"] is not None and sources.get("gpus") != source:
            _merge_by_bus(found["gpus"], parsed)
        if parsed["attached_gpus"] is not None and parsed["attached_gpus"] != len(parsed["gpus"]):
            warnings.append(
                f"nvidia-smi ({source}) says {parsed['attached_gpus']} GPUs are attached but lists "
                f"{len(parsed['gpus'])}"
            )

    csv_part = query_gpus(run, smi, notes)
    if csv_part is not None:
        take(csv_part, "query-gpu")
    rc, out = _call(run, [smi, "-q", "-x"])
    xml_part = None
    if rc == 0:
        try:
            xml_part = parse_query_xml(out)
        except ValueError as exc:
            notes.append(f"`{smi} -q -x` gave no usable XML: {exc}")
    else:
        notes.append(f"`{smi} -q -x` failed (rc {rc}): {_first_line(out)!r}")
    if xml_part is not None:
        take(xml_part, "xml")
    if None in found.values() or any(g["mig_devices"] is None for g in found["gpus"]):
        rc, out = _call(run, [smi, "-q"])
        if rc == 0:
            take(parse_query_q(out), "text")
        else:
            notes.append(f"`{smi} -q` failed (rc {rc}): {_first_line(out)!r}")
    if not sources:
        raise NvidiaSmiError(
            "unknown_error",
            "nvidia-smi answered none of --query-gpu, -q -x and -q with output gpulab knows: "
            + "; ".join(notes),
        )
    _require(
        found["driver_version"], "driver version (--query-gpu field driver_version, -q `Driver Version`)", smi
    )
    gpus: list[dict[str, Any]] = found["gpus"] or []
    for gpu in gpus:
        _require(gpu["name"], f"name of GPU {gpu['index']} (--query-gpu field name, -q `Product Name`)", smi)
    if found["cuda_driver_version"] is None:
        notes.append("nvidia-smi printed no CUDA version; the role derives it from the driver version")
    apply_compute_capability(gpus)
    return {**found, "gpus": gpus, "sources": sources, "warnings": warnings, "notes": notes}


def gather(run: Any, nvidia_smi_path: str, proc_version_path: str, env_path: str) -> dict[str, Any]:
    """Collect the facts. `run(argv) -> (rc, stdout, stderr)`. Raises NvidiaSmiError for failures."""
    kmod = None
    if proc_version_path and os.path.isfile(proc_version_path):
        try:
            with open(proc_version_path, encoding="utf-8", errors="replace") as handle:
                kmod = parse_proc_version(handle.read())
        except OSError:
            kmod = None

    facts: dict[str, Any] = {
        "nvidia_gpu_present": False,
        "nvidia_smi_state": "absent",
        "nvidia_smi_path": None,
        "nvidia_driver_version": None,
        "nvidia_cuda_driver_version": None,
        "nvidia_kernel_module_version": kmod,
        "nvidia_library_version": None,
        "nvidia_smi_sources": {},
        "nvidia_smi_warnings": [],
        "nvidia_gpus": [],
    }
    if nvidia_smi_path and not os.path.exists(nvidia_smi_path):
        raise NvidiaSmiError("absent", f"nvidia_smi_path {nvidia_smi_path} does not exist")
    smi = find_nvidia_smi(nvidia_smi_path, env_path)
    if smi is None:
        return facts
    facts["nvidia_smi_path"] = smi
    try:
        read = read_nvidia_smi(run, smi)
    except RebootRequired as pending:
        facts["nvidia_smi_state"] = "reboot_required"
        facts["nvidia_gpu_present"] = True
        facts["nvidia_library_version"] = pending.library_version
        return facts
    facts.update(
        {
            "nvidia_gpu_present": len(read["gpus"]) > 0,
            "nvidia_smi_state": "ok",
            "nvidia_driver_version": read["driver_version"],
            "nvidia_cuda_driver_version": read["cuda_driver_version"],
            "nvidia_smi_sources": read["sources"],
            "nvidia_smi_warnings": read["warnings"],
            "nvidia_gpus": read["gpus"],
        }
    )
    return facts


# The options that say how to read nvidia-smi (nvidia_gpu_facts, and host_state's record).
OPTIONS: dict[str, dict[str, Any]] = {
    "nvidia_smi_path": {"type": "path", "default": ""},
    "proc_version_path": {"type": "path", "default": "/proc/driver/nvidia/version"},
    "timeout": {"type": "int", "default": 60},
}


def read_host(nvidia_smi_path: str, proc_version_path: str, timeout: float) -> dict[str, Any]:
    """gather() on this host: each nvidia-smi call bounded by `timeout`, nvidia-smi found on PATH when no
    path is given. Raises NvidiaSmiError."""
    return gather(
        lambda argv: run_bounded(argv, timeout),
        nvidia_smi_path or "",
        proc_version_path or "",
        os.environ.get("PATH", ""),
    )
