# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Filter `cuda_check_select`: choose the CUDA build a node can run.

Pure Python so the unit tests call `select_cuda` directly with the role's own data from
`roles/cuda_check/vars/main.yml`. The tables (toolkit -> minimum driver, minor-version compatibility
floors, GPU targets per toolkit) are data in vars/main.yml with their sources; what a version looks like
comes from `plugins/module_utils/nvidia_smi.py`. A host that can run no candidate, and bad input, raise
`SelectionError`, which the filter turns into `AnsibleFilterError` (the collection's one filter error
style: plugins/plugin_utils/filter_errors.py).
"""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.gpulab.gpulab.plugins.module_utils.nvidia_smi import DOTTED_VERSION, is_xy_version
from ansible_collections.gpulab.gpulab.plugins.plugin_utils.filter_errors import (
    FilterInputError,
    filter_table,
)


class SelectionError(FilterInputError):
    """No CUDA version can be chosen for this host, or the input data is bad; the message says which."""


def version_tuple(version: str) -> tuple[int, ...]:
    """'550.54.14' -> (550, 54, 14). Compares per component, never as a string or float."""
    text = str(version).strip()
    if not DOTTED_VERSION.match(text):
        raise ValueError(f"not a version number: {version!r}")
    return tuple(int(part) for part in text.split("."))


def _cuda_tuple(version: str) -> tuple[int, int]:
    text = str(version).strip()
    if not is_xy_version(text):
        raise ValueError(f"not a CUDA version of the form X.Y: {version!r}")
    major, minor = text.split(".")
    return int(major), int(minor)


def _fmt(cuda: tuple[int, int]) -> str:
    return f"{cuda[0]}.{cuda[1]}"


def driver_max_cuda(driver: str, toolkit_drivers: list[dict[str, str]]) -> str | None:
    """Newest CUDA whose toolkit driver (NVIDIA Table 3) the driver meets."""
    best: tuple[int, int] | None = None
    for row in toolkit_drivers:
        if version_tuple(driver) >= version_tuple(row["driver"]):
            cuda = _cuda_tuple(row["cuda"])
            if best is None or cuda > best:
                best = cuda
    return _fmt(best) if best else None


def driver_supports(
    driver: str,
    max_cuda: str | None,
    candidate: str,
    toolkit_drivers: list[dict[str, str]],
    minor_compat: list[dict[str, Any]],
    use_minor_compat: bool,
) -> tuple[bool, str]:
    """Whether `driver` runs CUDA `candidate`, and why (or why not)."""
    cand = _cuda_tuple(candidate)
    drv = version_tuple(driver)
    row = next((r for r in toolkit_drivers if _cuda_tuple(r["cuda"]) == cand), None)
    if row is not None and drv >= version_tuple(row["driver"]):
        return True, "driver {} >= {}, the CUDA {} toolkit driver".format(driver, row["driver"], candidate)
    if max_cuda is not None and cand <= _cuda_tuple(max_cuda):
        return True, f"driver {driver} reports CUDA {max_cuda}"
    floor = next((f for f in minor_compat if int(f["major"]) == cand[0]), None)
    if use_minor_compat and floor is not None and drv >= version_tuple(floor["driver"]):
        return (
            True,
            f"driver {driver} >= {floor['driver']} runs CUDA {cand[0]}.x by minor version compatibility",
        )
    needs = []
    if row is not None:
        needs.append(">= {} (CUDA {} toolkit driver)".format(row["driver"], candidate))
    if use_minor_compat and floor is not None and (row is None or floor["driver"] != row["driver"]):
        needs.append(f">= {floor['driver']} (CUDA {cand[0]}.x minor version compatibility)")
    need_text = " or ".join(needs) if needs else "a driver newer than any in the table"
    return False, "CUDA {} needs driver {}; this driver is {} (max CUDA {})".format(
        candidate,
        need_text,
        driver,
        max_cuda or "unknown",
    )


def gpu_targets(candidate: str, cuda_archs: list[dict[str, Any]]) -> list[str] | None:
    """GPU targets of the newest toolkit entry at or below `candidate`."""
    cand = _cuda_tuple(candidate)
    best: tuple[tuple[int, int], list[str]] | None = None
    for entry in cuda_archs:
        cuda = _cuda_tuple(entry["cuda"])
        if cuda <= cand and (best is None or cuda > best[0]):
            best = (cuda, [str(s) for s in entry["sm"]])
    return best[1] if best else None


def cc_supported(cc: str, targets: list[str]) -> bool:
    """A cubin for M.n runs on M.m when n <= m (same major): that is how e.g. Ada 8.9 runs 8.6 code."""
    major, minor = _cuda_tuple(cc)
    return any(
        t_major == major and t_minor <= minor for t_major, t_minor in (_cuda_tuple(t) for t in targets)
    )


def gpus_supported(
    candidate: str, gpus: list[dict[str, Any]], cuda_archs: list[dict[str, Any]]
) -> tuple[bool, str]:
    targets = gpu_targets(candidate, cuda_archs)
    if targets is None:
        return False, f"no GPU target list known for CUDA {candidate}"
    bad = []
    for gpu in gpus:
        cc = gpu.get("compute_capability")
        if cc and not cc_supported(str(cc), targets):
            bad.append(
                "GPU {} {} (compute capability {})".format(gpu.get("index"), gpu.get("name") or "?", cc)
            )
    if bad:
        return False, "CUDA {} has no code for {}; its targets are {}".format(
            candidate, ", ".join(bad), " ".join(targets)
        )
    return True, f"CUDA {candidate} supports every GPU's compute capability"


def select_cuda(
    facts: dict[str, Any],
    candidates: list[str],
    pin: str,
    toolkit_drivers: list[dict[str, str]],
    minor_compat: list[dict[str, Any]],
    cuda_archs: list[dict[str, Any]],
    use_minor_compat: bool = True,
    fallback_to_cpu: bool = False,
) -> dict[str, Any]:
    """Pick the CUDA version: cuda_version ('' = CPU build) and the reasons. Raises SelectionError when
    none fits (unless `fallback_to_cpu`), naming the variable to change."""
    result: dict[str, Any] = {
        "cuda_version": "",
        "driver_version": "",
        "driver_max_cuda": "",
        "driver_max_cuda_source": "",
        "considered": [],
        "notes": [],
    }
    state = facts.get("nvidia_smi_state")
    if not facts.get("nvidia_gpu_present"):
        result["notes"].append("no NVIDIA GPU: CPU build")
        return result
    driver = facts.get("nvidia_driver_version")
    if state == "reboot_required":
        # The driver that will run after the pending reboot is the new user-space library.
        driver = facts.get("nvidia_library_version") or facts.get("nvidia_kernel_module_version")
        result["notes"].append(
            f"reboot pending: selecting for driver {driver} (the one active after the reboot)"
        )
    if not driver:
        raise SelectionError(
            "the NVIDIA driver version is unknown, so no CUDA version can be chosen: "
            "run nvidia-smi on the host to see why it reports none"
        )
    result["driver_version"] = driver
    reported = facts.get("nvidia_cuda_driver_version") if state != "reboot_required" else None
    max_cuda = reported or driver_max_cuda(driver, toolkit_drivers)
    result["driver_max_cuda"] = max_cuda or ""
    result["driver_max_cuda_source"] = "nvidia-smi" if reported else "driver-table"
    gpus = list(facts.get("nvidia_gpus") or [])
    unknown_cc = [str(g.get("index")) for g in gpus if not g.get("compute_capability")]
    if unknown_cc:
        result["notes"].append(
            "compute capability unknown for GPU {}: not checked against the CUDA targets".format(
                ", ".join(unknown_cc)
            )
        )

    def check(candidate: str) -> dict[str, Any]:
        ok_drv, why_drv = driver_supports(
            driver, max_cuda, candidate, toolkit_drivers, minor_compat, use_minor_compat
        )
        ok_cc, why_cc = gpus_supported(candidate, gpus, cuda_archs)
        failures = [why for ok, why in ((ok_drv, why_drv), (ok_cc, why_cc)) if not ok]
        return {"cuda": candidate, "ok": not failures, "reasons": [why_drv, why_cc], "failures": failures}

    if pin:
        verdict = check(pin)
        result["considered"].append(verdict)
        if not verdict["ok"]:
            raise SelectionError(
                "cuda_check_cuda_version_pin is {}, but this host cannot run it: driver {}, maximum CUDA {}. "
                "{}. Upgrade the driver or set cuda_check_cuda_version_pin to a version it runs "
                '("" chooses).'.format(pin, driver, max_cuda or "unknown", "; ".join(verdict["failures"]))
            )
        result["cuda_version"] = pin
        return result

    for candidate in sorted(candidates, key=_cuda_tuple, reverse=True):
        verdict = check(candidate)
        result["considered"].append(verdict)
        if verdict["ok"]:
            result["cuda_version"] = candidate
            return result
    why = " | ".join("{}: {}".format(c["cuda"], "; ".join(c["failures"])) for c in result["considered"])
    if fallback_to_cpu:
        result["notes"].append(f"no CUDA candidate works ({why}); cuda_check_fallback_to_cpu: CPU build")
        return result
    raise SelectionError(
        "none of the CUDA candidates {} can run on this host (driver {}, maximum CUDA {}): {}. "
        "Upgrade the driver, add a CUDA version to cuda_check_cuda_candidates, or set "
        "cuda_check_fallback_to_cpu: true for a CPU environment.".format(
            ", ".join(candidates) or "(none)", driver, max_cuda or "unknown", why
        )
    )


# Keys of the local fact that describe the host; a change in any of them is a change of the fact file.
RECORD_KEYS = ("driver", "cuda_driver_version", "cuda_version", "gpu_present", "gpus")


# Types of the local fact's keys; a record with another type anywhere was not written by this role.
FACT_TYPES: dict[str, type | tuple[type, ...]] = {
    **{key: str for key in ("driver", "cuda_driver_version", "cuda_version")},
    "gpu_present": bool,
    "gpus": list,
    **{key: str for key in ("checked_at", "driver_seen_since", "previous_driver")},
}


def parse_fact(text: str) -> dict[str, Any]:
    """The previous local fact as {"record": dict, "problem": str}.

    A file that is not a JSON object with the types this role writes (truncated, garbage bytes, another
    type) is no record ({}), and `problem` says why, so the role can say so and rewrite it.
    """
    if not text:
        return {"record": {}, "problem": ""}
    if any("\udc80" <= char <= "\udcff" for char in text):  # b64decode's escapes for bytes not UTF-8
        return {"record": {}, "problem": "it is not UTF-8 text"}
    try:
        value = json.loads(text)
    except ValueError as exc:
        return {"record": {}, "problem": f"it is not JSON ({exc})"}
    if not isinstance(value, dict):
        return {"record": {}, "problem": f"it holds a JSON {type(value).__name__}, not an object"}
    for key, kind in FACT_TYPES.items():
        if key in value and value[key] is not None and not isinstance(value[key], kind):
            return {
                "record": {},
                "problem": f"its {key} is a {type(value[key]).__name__} ({json.dumps(value[key])[:40]})",
            }
    return {"record": value, "problem": ""}


def build_record(previous: dict[str, Any], seen: dict[str, Any], now: str) -> dict[str, Any]:
    """The new local fact. Timestamps move only when what was seen changed (so a re-run is changed=0).

    `seen` holds RECORD_KEYS. `checked_at` is when the content last changed, `driver_seen_since` when this
    driver was first seen, `previous_driver` the driver before the current one (kept across runs).
    """
    record = {key: seen.get(key) for key in RECORD_KEYS}
    same = bool(previous) and all(previous.get(key) == record[key] for key in RECORD_KEYS)
    record["checked_at"] = previous.get("checked_at", now) if same else now
    if previous and previous.get("driver") == record["driver"]:
        record["driver_seen_since"] = previous.get("driver_seen_since", record["checked_at"])
        record["previous_driver"] = previous.get("previous_driver", "")
    else:
        record["driver_seen_since"] = now
        record["previous_driver"] = previous.get("driver", "") if previous else ""
    return record


def driver_change(previous: dict[str, Any], driver: str) -> dict[str, Any]:
    """Whether the driver differs from the one recorded by the previous run."""
    before = previous.get("driver") or ""
    return {"changed": bool(previous) and before != (driver or ""), "previous": before}


def cuda_check_select(facts: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    try:
        return select_cuda(facts, **kwargs)
    except SelectionError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # int() over a table's cell, a row without its keys
        raise SelectionError(f"cuda_check: bad input for the CUDA selection: {exc}") from None


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return filter_table(
            {
                "cuda_check_select": cuda_check_select,
                "cuda_check_parse_fact": parse_fact,
                "cuda_check_record": build_record,
                "cuda_check_driver_change": driver_change,
            }
        )
