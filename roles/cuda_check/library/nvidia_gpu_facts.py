#!/usr/bin/python
# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Ansible module: read the NVIDIA driver and GPUs of a host with nvidia-smi (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Report the NVIDIA driver, the newest CUDA it supports and the GPUs of a host
description:
  - Runs C(nvidia-smi -q) and parses the driver version, the CUDA version the driver supports and,
    per GPU, the name, UUID, PCI bus id, framebuffer memory and MIG mode.
  - Reads the compute capability with C(nvidia-smi --query-gpu=index,pci.bus_id,compute_cap
    --format=csv,noheader,nounits). Drivers that do not know the C(compute_cap) field (before R510)
    fall back to a GPU name to compute capability table (source U(https://developer.nvidia.com/cuda-gpus)
    as tabulated in huggingface/huggingface.js#2010); C(compute_capability_source) says which was used.
  - Handles the states a real node can be in. No C(nvidia-smi) anywhere is C(absent) (not a failure).
  - "The NVML message C(Driver/library version mismatch) (a driver upgraded without reboot) is
    C(reboot_required): the version of the loaded kernel module (from O(proc_version_path)) and of the new
    user-space library are reported and the module succeeds, so the caller decides."
  - The driver not answering (C(driver_broken)), C(No devices were found) (C(no_devices)), a GPU that fell
    off the bus (C(gpu_lost)) and output that cannot be parsed fail with a message that says what happened
    and what usually causes it.
  - Makes no change; supports check mode.
options:
  nvidia_smi_path:
    description:
      - Path of C(nvidia-smi). Empty (the default) searches C(PATH), then C(/usr/bin),
        C(/usr/local/nvidia/bin),
        C(/usr/local/bin), C(/usr/lib/wsl/lib), C(/opt/nvidia/bin).
      - A path that is given but does not exist is an error (a typo should not look like a host without GPU).
    type: path
    default: ""
  proc_version_path:
    description:
      - File that describes the loaded kernel module (C(/proc/driver/nvidia/version) on a real host).
    type: path
    default: /proc/driver/nvidia/version
  timeout:
    description: Seconds one nvidia-smi call may take (a hung GPU can block it).
    type: int
    default: 60
author: gpulab contributors
"""

EXAMPLES = r"""
- name: Read GPU facts
  nvidia_gpu_facts:

- name: Read GPU facts with an explicit nvidia-smi
  nvidia_gpu_facts:
    nvidia_smi_path: /usr/local/nvidia/bin/nvidia-smi
"""

RETURN = r"""
ansible_facts:
  description: Facts about the driver and GPUs.
  returned: success
  type: dict
  contains:
    nvidia_gpu_present:
      description: Whether a working NVIDIA driver with at least one GPU was found.
      type: bool
    nvidia_smi_state:
      description:
        - ok, absent, reboot_required.
        - Failures carry driver_broken, no_devices, gpu_lost or unparseable in C(nvidia_smi_state)
          (absent when an explicit O(nvidia_smi_path) does not exist).
      type: str
    nvidia_smi_path:
      description: The nvidia-smi used, or null.
      type: str
    nvidia_driver_version:
      description: Driver version, e.g. 580.95.05 (KMD Version from R610 on); null when absent.
      type: str
    nvidia_cuda_driver_version:
      description:
        - Newest CUDA the driver supports as nvidia-smi prints it (CUDA UMD Version from R610 on).
        - null when nvidia-smi does not show it.
      type: str
    nvidia_kernel_module_version:
      description: Version of the loaded kernel module from proc_version_path, or null.
      type: str
    nvidia_library_version:
      description: In state reboot_required, the NVML (user-space) library version when nvidia-smi prints it.
      type: str
    nvidia_gpus:
      description: One dict per GPU.
      type: list
      elements: dict
      sample:
        - index: 0
          name: NVIDIA H100 80GB HBM3
          uuid: GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1
          pci_bus_id: "00000000:18:00.0"
          memory_total_mib: 81559
          compute_capability: "9.0"
          compute_capability_source: nvidia-smi
          mig_mode: disabled
          mig_devices: 0
"""

import os
import re
from typing import Any

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

DEFAULT_SEARCH_DIRS = [
    "/usr/bin",
    "/usr/local/nvidia/bin",
    "/usr/local/bin",
    "/usr/lib/wsl/lib",
    "/opt/nvidia/bin",
]

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

_RE_MISMATCH = re.compile(r"Driver/library version mismatch", re.IGNORECASE)
_RE_NVML_VERSION = re.compile(r"NVML library version:\s*([0-9]+(?:\.[0-9]+)+)")
# nvidia-smi prints an ASCII apostrophe; pasted copies carry U+2018/U+2019.
_RE_NO_DRIVER = re.compile(r"couldn.?t communicate with the NVIDIA driver", re.IGNORECASE)
_RE_NO_DEVICES = re.compile(r"^\s*No devices were found\s*$", re.MULTILINE)
_RE_DEVICE_HANDLE = re.compile(r"Unable to determine the device handle for GPU ?([0-9A-Fa-f:.]+): (.*)")
_RE_GPU_LOST = re.compile(r"GPU is lost", re.IGNORECASE)
_RE_INVALID_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query')

_RE_KV = re.compile(r"^(?P<indent> *)(?P<key>\S.*?)\s+: ?(?P<value>.*)$")
_RE_SECTION = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][^:]*?)\s*$")
_RE_GPU_HEADER = re.compile(r"^GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s*$")
_RE_BANNER = re.compile(r"^=+NVSMI LOG=+\s*$")
_RE_VERSION = re.compile(r"^[0-9]+(?:\.[0-9]+)+$")
_RE_CUDA = re.compile(r"^[0-9]+\.[0-9]+$")
_RE_MIB = re.compile(r"^([0-9]+) MiB$")
_RE_CC = re.compile(r"^[0-9]+\.[0-9]+$")
_RE_KMOD = re.compile(r"Kernel Module(?: for \S+)?\s+([0-9]+(?:\.[0-9]+)+)")
_DEPRECATED_SUFFIX = re.compile(r"\s*\[Deprecated[^\]]*\]\s*$")
_NOT_AVAILABLE = {"N/A", "[N/A]", "Not Found", "Not Supported", "[Not Supported]", ""}


class NvidiaSmiError(Exception):
    """A state of nvidia-smi that the caller must see as a failure."""

    def __init__(self, state: str, msg: str) -> None:
        super().__init__(msg)
        self.state = state
        self.msg = msg


def _clean(value: str) -> str | None:
    value = _DEPRECATED_SUFFIX.sub("", value).strip()
    return None if value in _NOT_AVAILABLE else value


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


def _new_gpu(position: int, bus_id: str) -> dict[str, Any]:
    return {
        "index": position,
        "name": None,
        "uuid": None,
        "pci_bus_id": bus_id,
        "memory_total_mib": None,
        "compute_capability": None,
        "compute_capability_source": None,
        "mig_mode": None,
        "mig_devices": 0,
    }


def parse_query_q(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi -q` text. Raises NvidiaSmiError(state='unparseable') quoting the bad line."""
    top: dict[str, str | None] = {}
    top_lines: dict[str, str] = {}
    gpus: list[dict[str, Any]] = []
    gpu: dict[str, Any] | None = None
    # Stack of (indent, section name) inside the current GPU (or top-level section).
    stack: list[tuple[int, str]] = []

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or _RE_BANNER.match(line.strip()):
            continue
        header = _RE_GPU_HEADER.match(line)
        if header:
            gpu = _new_gpu(len(gpus), header.group("bus"))
            gpus.append(gpu)
            stack = []
            continue
        kv = _RE_KV.match(line)
        section = None if kv else _RE_SECTION.match(line)
        if not kv and not section:
            raise NvidiaSmiError("unparseable", f"cannot parse this line of `nvidia-smi -q` output: {line!r}")
        match = kv or section
        assert match is not None
        indent = len(match.group("indent"))
        key = match.group("key").strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if section:
            if indent == 0 and gpu is None and key not in ("vGPU Driver Capability", "Unit"):
                raise NvidiaSmiError(
                    "unparseable", f"cannot parse this line of `nvidia-smi -q` output: {line!r}"
                )
            stack.append((indent, key))
            if gpu is not None and key == "MIG Device" and [s for _, s in stack] == ["MIG Device"]:
                gpu["mig_devices"] += 1
            continue
        value = match.group("value")
        path = (*tuple(s for _, s in stack), key)
        if indent == 0:
            # A top-level key after the GPU sections would be odd; keep the first value.
            top.setdefault(key, _clean(value))
            top_lines.setdefault(key, line)
            continue
        if gpu is None:
            continue
        if path == ("Product Name",):
            gpu["name"] = _clean(value)
        elif path == ("GPU UUID",):
            gpu["uuid"] = _clean(value)
        elif path == ("PCI", "Bus Id"):
            gpu["pci_bus_id"] = _clean(value) or gpu["pci_bus_id"]
        elif path == ("MIG Mode", "Current"):
            mode = _clean(value)
            gpu["mig_mode"] = mode.lower() if mode else None
        elif path == ("FB Memory Usage", "Total"):
            cleaned = _clean(value)
            if cleaned is not None:
                mib = _RE_MIB.match(cleaned)
                if not mib:
                    raise NvidiaSmiError(
                        "unparseable",
                        f"cannot parse the FB memory total in this line of `nvidia-smi -q`: {line!r}",
                    )
                gpu["memory_total_mib"] = int(mib.group(1))

    driver_key = "KMD Version" if "KMD Version" in top else "Driver Version"
    cuda_key = "CUDA UMD Version" if "CUDA UMD Version" in top else "CUDA Version"
    driver = top.get(driver_key)
    if driver is None or not _RE_VERSION.match(driver):
        line = top_lines.get(driver_key) or _first_line(text)
        raise NvidiaSmiError(
            "unparseable", f"no driver version found in `nvidia-smi -q` output; first unusable line: {line!r}"
        )
    cuda = top.get(cuda_key)
    if cuda is not None and not _RE_CUDA.match(cuda):
        raise NvidiaSmiError(
            "unparseable",
            f"cannot parse the CUDA version in this line of `nvidia-smi -q`: {top_lines[cuda_key]!r}",
        )
    return {"driver_version": driver, "cuda_driver_version": cuda, "gpus": gpus}


def parse_compute_cap_csv(text: str) -> dict[str, dict[str, Any]]:
    """Parse `--query-gpu=index,pci.bus_id,compute_cap --format=csv,noheader,nounits` by bus id."""
    result: dict[str, dict[str, Any]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            raise NvidiaSmiError(
                "unparseable", f"cannot parse this line of `nvidia-smi --query-gpu` output: {line!r}"
            )
        cc = parts[2] if _RE_CC.match(parts[2]) else None
        if cc is None and parts[2] not in _NOT_AVAILABLE:
            raise NvidiaSmiError("unparseable", f"cannot parse the compute capability in this line: {line!r}")
        result[parts[1].upper()] = {"index": int(parts[0]), "compute_capability": cc}
    return result


def compute_capability_from_name(name: str | None) -> str | None:
    if not name:
        return None
    upper = name.upper()
    for pattern, cc in NAME_TO_COMPUTE_CAPABILITY:
        if re.search(pattern, upper):
            return cc
    return None


def apply_compute_capability(gpus: list[dict[str, Any]], by_bus: dict[str, dict[str, Any]] | None) -> None:
    """Fill compute_capability (and the nvidia-smi index) in place; fall back to the name table."""
    for gpu in gpus:
        row = (by_bus or {}).get(str(gpu["pci_bus_id"]).upper())
        if row is not None:
            gpu["index"] = row["index"]
            if row["compute_capability"] is not None:
                gpu["compute_capability"] = row["compute_capability"]
                gpu["compute_capability_source"] = "nvidia-smi"
                continue
        cc = compute_capability_from_name(gpu["name"])
        gpu["compute_capability"] = cc
        gpu["compute_capability_source"] = "name-table" if cc else None
    gpus.sort(key=lambda g: g["index"])


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
        "nvidia_gpus": [],
    }
    if nvidia_smi_path and not os.path.exists(nvidia_smi_path):
        raise NvidiaSmiError("absent", f"nvidia_smi_path {nvidia_smi_path} does not exist")
    smi = find_nvidia_smi(nvidia_smi_path, env_path)
    if smi is None:
        return facts
    facts["nvidia_smi_path"] = smi

    rc, out, err = run([smi, "-q"])
    combined = f"{out}\n{err}"
    known = classify_error(combined, rc)
    if known is not None:
        facts["nvidia_smi_state"] = "reboot_required"
        facts["nvidia_gpu_present"] = True
        facts["nvidia_library_version"] = known["library_version"]
        return facts
    if rc != 0:
        raise NvidiaSmiError(
            "unparseable",
            f"`{smi} -q` failed with rc {rc} and output gpulab does not know: {_first_line(combined)!r}",
        )
    parsed = parse_query_q(out)

    cc_rc, cc_out, cc_err = run(
        [smi, "--query-gpu=index,pci.bus_id,compute_cap", "--format=csv,noheader,nounits"]
    )
    by_bus = None
    if cc_rc == 0:
        by_bus = parse_compute_cap_csv(cc_out)
    else:
        # Older drivers: 'Field "compute_cap" is not a valid field to query.' -> the name table.
        # Any other error of this second call is reported by the -q call already, or ignored here.
        classify_error(f"{cc_out}\n{cc_err}", cc_rc)
    apply_compute_capability(parsed["gpus"], by_bus)

    facts.update(
        {
            "nvidia_gpu_present": len(parsed["gpus"]) > 0,
            "nvidia_smi_state": "ok",
            "nvidia_driver_version": parsed["driver_version"],
            "nvidia_cuda_driver_version": parsed["cuda_driver_version"],
            "nvidia_gpus": parsed["gpus"],
        }
    )
    return facts


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "path", "default": ""},
            "proc_version_path": {"type": "path", "default": "/proc/driver/nvidia/version"},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    timeout = module.params["timeout"]

    def run(argv: list[str]) -> tuple[int, str, str]:
        # LC_ALL=C: nvidia-smi's messages are only matched in English.
        rc, out, err = module.run_command(
            ["timeout", str(timeout), *argv] if module.get_bin_path("timeout") else argv,
            environ_update={"LC_ALL": "C"},
        )
        if rc == 124:
            raise NvidiaSmiError(
                "gpu_lost",
                f"`{' '.join(argv)}` did not answer within {timeout} seconds (hung GPU or driver?)",
            )
        return rc, out, err

    try:
        facts = gather(
            run,
            module.params["nvidia_smi_path"] or "",
            module.params["proc_version_path"] or "",
            os.environ.get("PATH", ""),
        )
    except NvidiaSmiError as exc:
        module.fail_json(msg=exc.msg, nvidia_smi_state=exc.state)
    except Exception as exc:  # never a traceback for the user
        module.fail_json(
            msg=f"nvidia_gpu_facts failed unexpectedly: {type(exc).__name__}: {exc}",
            nvidia_smi_state="unparseable",
        )
    module.exit_json(changed=False, ansible_facts=facts, nvidia_smi_state=facts["nvidia_smi_state"])


if __name__ == "__main__":
    main()
