"""nvidia_gpu_facts: every fixture parsed as the fixture says; every error state; the module end to end."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpulab.lab import nvidia_smi as lab_nvidia_smi

from ._load import MODULE_PATH, REPO, fixtures, gpu_facts, proc_fixtures

NvidiaSmiError = gpu_facts.NvidiaSmiError

# file -> (driver, cuda, number of GPUs, first GPU, last GPU); a GPU is
# (pci_bus_id, name, uuid, memory_total_mib, mig_mode, mig_devices, name-table compute capability).
QUERY_Q: dict[str, tuple[str, str | None, int, tuple[Any, ...], tuple[Any, ...]]] = {
    "a40-x10__550.127.05.txt": (
        "550.127.05",
        "12.4",
        10,
        ("00000000:4F:00.0", "NVIDIA A40", "GPU-4e65de01-972e-93cf-b077-181a5378972a", 46068, None, 0, "8.6"),
        ("00000000:D6:00.0", "NVIDIA A40", "GPU-c373ab5a-5eab-b35c-02ee-e76e8b7f0853", 46068, None, 0, "8.6"),
    ),
    "h100-80gb-hbm3-sxm-x8__565.57.01.txt": (
        "565.57.01",
        "12.7",
        8,
        (
            "00000000:18:00.0",
            "NVIDIA H100 80GB HBM3",
            "GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1",
            81559,
            "disabled",
            0,
            "9.0",
        ),
        (
            "00000000:DB:00.0",
            "NVIDIA H100 80GB HBM3",
            "GPU-33135771-a848-ece1-b61e-489e221d663c",
            81559,
            "disabled",
            0,
            "9.0",
        ),
    ),
    "h100-80gb-hbm3__590.48.01__idle.txt": (
        "590.48.01",
        "13.1",
        1,
        (
            "00000000:00:09.0",
            "NVIDIA H100 80GB HBM3",
            "GPU-00000000-0000-0000-0000-000000000000",
            81559,
            "disabled",
            0,
            "9.0",
        ),
        (
            "00000000:00:09.0",
            "NVIDIA H100 80GB HBM3",
            "GPU-00000000-0000-0000-0000-000000000000",
            81559,
            "disabled",
            0,
            "9.0",
        ),
    ),
    "h100-nvl-x2__550.54.14.txt": (
        "550.54.14",
        "12.4",
        2,
        (
            "00000000:AD:00.0",
            "NVIDIA H100 NVL",
            "GPU-806f8ea2-6428-1096-a076-bb687fb45fb0",
            95830,
            "disabled",
            0,
            "9.0",
        ),
        (
            "00000000:AE:00.0",
            "NVIDIA H100 NVL",
            "GPU-db6d02a2-1413-eccf-8a17-d99eac29d365",
            95830,
            "disabled",
            0,
            "9.0",
        ),
    ),
    "h200-mig__590.48.01__idle.txt": (
        "590.48.01",
        "13.1",
        1,
        (
            "00000000:83:00.0",
            "NVIDIA H200",
            "GPU-00000000-0000-0000-0000-000000000000",
            143771,
            "enabled",
            5,
            "9.0",
        ),
        (
            "00000000:83:00.0",
            "NVIDIA H200",
            "GPU-00000000-0000-0000-0000-000000000000",
            143771,
            "enabled",
            5,
            "9.0",
        ),
    ),
    "l40s__550.127.05.txt": (
        "550.127.05",
        "12.4",
        1,
        (
            "00000000:A1:00.0",
            "NVIDIA L40S",
            "GPU-1db6b1cf-de5e-b497-caca-1a027578d587",
            46068,
            None,
            0,
            "8.9",
        ),
        (
            "00000000:A1:00.0",
            "NVIDIA L40S",
            "GPU-1db6b1cf-de5e-b497-caca-1a027578d587",
            46068,
            None,
            0,
            "8.9",
        ),
    ),
    "l40s__595.80__idle.txt": (
        "595.80",
        "13.2",
        1,
        (
            "00000000:01:00.0",
            "NVIDIA L40S",
            "GPU-00000000-0000-0000-0000-000000000000",
            46068,
            None,
            0,
            "8.9",
        ),
        (
            "00000000:01:00.0",
            "NVIDIA L40S",
            "GPU-00000000-0000-0000-0000-000000000000",
            46068,
            None,
            0,
            "8.9",
        ),
    ),
    "rtx-2000-ada__550.54.15.txt": (
        "550.54.15",
        "12.4",
        1,
        (
            "00000000:02:00.0",
            "NVIDIA RTX 2000 Ada Generation",
            "GPU-c6b48bc3-71e0-b290-72c0-ae54e2120397",
            16380,
            None,
            0,
            "8.9",
        ),
        (
            "00000000:02:00.0",
            "NVIDIA RTX 2000 Ada Generation",
            "GPU-c6b48bc3-71e0-b290-72c0-ae54e2120397",
            16380,
            None,
            0,
            "8.9",
        ),
    ),
    # R610: "KMD Version"/"CUDA UMD Version" win over the deprecated "Driver Version"/"CUDA Version" lines.
    "rtx-2080-super__610.57.04__idle.txt": (
        "610.57.04",
        "13.3",
        1,
        (
            "00000000:0C:00.0",
            "NVIDIA GeForce RTX 2080 SUPER",
            "GPU-00000000-0000-0000-0000-000000000000",
            8192,
            None,
            0,
            "7.5",
        ),
        (
            "00000000:0C:00.0",
            "NVIDIA GeForce RTX 2080 SUPER",
            "GPU-00000000-0000-0000-0000-000000000000",
            8192,
            None,
            0,
            "7.5",
        ),
    ),
    "rtx-4060-ti-x2__550.54.14.txt": (
        "550.54.14",
        "12.4",
        2,
        (
            "00000000:03:00.0",
            "NVIDIA GeForce RTX 4060 Ti",
            "GPU-5fd2f5bb-12a1-ad58-a590-2f48aa312d92",
            16380,
            None,
            0,
            "8.9",
        ),
        (
            "00000000:09:00.0",
            "NVIDIA GeForce RTX 4060 Ti",
            "GPU-064b552e-b923-6fed-6f91-386f97032a9d",
            16380,
            None,
            0,
            "8.9",
        ),
    ),
    "rtx-4090-x8__550.127.05.txt": (
        "550.127.05",
        "12.4",
        8,
        (
            "00000000:01:00.0",
            "NVIDIA GeForce RTX 4090",
            "GPU-8ee5f1e0-e705-aac5-6d6e-b97ad59601ef",
            24564,
            None,
            0,
            "8.9",
        ),
        (
            "00000000:E1:00.0",
            "NVIDIA GeForce RTX 4090",
            "GPU-78ae265e-d539-389c-f1b8-41b35aa0adb6",
            24564,
            None,
            0,
            "8.9",
        ),
    ),
    "rtx-6000-ada-x8__550.127.05.txt": (
        "550.127.05",
        "12.4",
        8,
        (
            "00000000:01:00.0",
            "NVIDIA RTX 6000 Ada Generation",
            "GPU-6130ccb8-7d66-5560-15ea-9a2a08dc87e7",
            49140,
            None,
            0,
            "8.9",
        ),
        (
            "00000000:E1:00.0",
            "NVIDIA RTX 6000 Ada Generation",
            "GPU-16791b1a-38de-bc9c-6a07-cdb9e95e91cd",
            49140,
            None,
            0,
            "8.9",
        ),
    ),
    # `-q -d MEMORY,PERFORMANCE` excerpt of a vGPU host: "CUDA Version : Not Found", only one GPU section,
    # no name/UUID/FB lines in it. The parser keeps what is there and reports the rest as unknown.
    "rtx-pro-6000-blackwell-x4__580.105.06__cuda-not-found__excerpt.txt": (
        "580.105.06",
        None,
        1,
        ("00000000:42:00.0", None, None, None, None, 0, None),
        ("00000000:42:00.0", None, None, None, None, 0, None),
    ),
}

GPU_KEYS = ("pci_bus_id", "name", "uuid", "memory_total_mib", "mig_mode", "mig_devices", "compute_capability")


def test_every_query_q_fixture_has_an_expectation() -> None:
    assert sorted(fixtures("query-q")) == sorted(QUERY_Q)


@pytest.mark.parametrize("name", sorted(QUERY_Q))
def test_query_q_fixture(name: str) -> None:
    driver, cuda, count, first, last = QUERY_Q[name]
    parsed = gpu_facts.parse_query_q(fixtures("query-q")[name].read_text(encoding="utf-8"))
    gpu_facts.apply_compute_capability(parsed["gpus"], None)  # no CSV: the name table answers
    assert parsed["driver_version"] == driver
    assert parsed["cuda_driver_version"] == cuda
    gpus = parsed["gpus"]
    assert len(gpus) == count
    assert [g["index"] for g in gpus] == list(range(count))
    assert tuple(gpus[0][k] for k in GPU_KEYS) == first
    assert tuple(gpus[-1][k] for k in GPU_KEYS) == last
    assert len({g["pci_bus_id"] for g in gpus}) == count
    for gpu in gpus:
        assert gpu["compute_capability_source"] == ("name-table" if gpu["compute_capability"] else None)
        assert gpu["memory_total_mib"] is None or isinstance(gpu["memory_total_mib"], int)


def test_mig_devices_are_not_gpus_and_their_memory_is_not_the_gpu_memory() -> None:
    parsed = gpu_facts.parse_query_q(
        fixtures("query-q")["h200-mig__590.48.01__idle.txt"].read_text(encoding="utf-8")
    )
    (gpu,) = parsed["gpus"]
    assert gpu["mig_devices"] == 5
    assert gpu["memory_total_mib"] == 143771  # not a MIG slice's "Shared FB Memory Usage" (71424 MiB)


# The four complete captures: compute_cap from their every-field CSV, as the fake nvidia-smi answers
# `--query-gpu=index,pci.bus_id,compute_cap --format=csv,noheader,nounits`.
ALLFIELDS = {
    "h100-80gb-hbm3__590.48.01__idle__allfields.csv": ("h100-80gb-hbm3__590.48.01__idle.txt", "9.0"),
    "h200-mig__590.48.01__idle__allfields.csv": ("h200-mig__590.48.01__idle.txt", "9.0"),
    "l40s__595.80__idle__allfields.csv": ("l40s__595.80__idle.txt", "8.9"),
    "rtx-2080-super__610.57.04__idle__allfields.csv": ("rtx-2080-super__610.57.04__idle.txt", "7.5"),
}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, (v.strip() for v in row), strict=True)) for row in rows[1:] if row]


@pytest.mark.parametrize("csv_name", sorted(ALLFIELDS))
def test_compute_cap_from_the_allfields_capture(csv_name: str) -> None:
    query_name, cc = ALLFIELDS[csv_name]
    rows = _csv_rows(fixtures("query-gpu-csv")[csv_name])
    answer = "".join("{}, {}, {}\n".format(r["index"], r["pci.bus_id"], r["compute_cap"]) for r in rows)
    by_bus = gpu_facts.parse_compute_cap_csv(answer)
    parsed = gpu_facts.parse_query_q(fixtures("query-q")[query_name].read_text(encoding="utf-8"))
    gpu_facts.apply_compute_capability(parsed["gpus"], by_bus)
    (gpu,) = parsed["gpus"]
    assert gpu["compute_capability"] == cc
    assert gpu["compute_capability_source"] == "nvidia-smi"
    assert gpu["name"] == rows[0]["name"]


def test_name_table_agrees_with_every_compute_cap_the_drivers_printed() -> None:
    checked = 0
    for path in fixtures("query-gpu-csv").values():
        for row in _csv_rows(path):
            if "compute_cap" in row and "name" in row:
                assert gpu_facts.compute_capability_from_name(row["name"]) == row["compute_cap"], row["name"]
                checked += 1
    assert checked >= 6  # 4 complete captures + TITAN V (7.0) and RTX 5880 Ada (8.9)


@pytest.mark.parametrize(
    ("name", "cc"),
    [
        ("NVIDIA A100-SXM4-40GB", "8.0"),
        ("Tesla V100-SXM2-16GB", "7.0"),
        ("Tesla P100-PCIE-16GB", "6.0"),
        ("Tesla T4", "7.5"),
        ("NVIDIA B200", "10.0"),
        ("NVIDIA GeForce RTX 5090", "12.0"),
        ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "12.0"),
        ("NVIDIA A10G", "8.6"),
        ("NVIDIA L4", "8.9"),
        ("NVIDIA GH200 480GB", "9.0"),
        ("Quadro P400", None),
    ],
)
def test_name_table(name: str, cc: str | None) -> None:
    assert gpu_facts.compute_capability_from_name(name) == cc


def test_compute_cap_csv_na_falls_back_to_the_name_table() -> None:
    parsed = gpu_facts.parse_query_q(
        fixtures("query-q")["l40s__595.80__idle.txt"].read_text(encoding="utf-8")
    )
    gpu_facts.apply_compute_capability(
        parsed["gpus"], gpu_facts.parse_compute_cap_csv("0, 00000000:01:00.0, [N/A]\n")
    )
    assert parsed["gpus"][0]["compute_capability"] == "8.9"
    assert parsed["gpus"][0]["compute_capability_source"] == "name-table"


def test_compute_cap_csv_garbage_is_a_failure_quoting_the_line() -> None:
    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.parse_compute_cap_csv("0, 00000000:01:00.0, nine\n")
    assert err.value.state == "unparseable"
    assert "0, 00000000:01:00.0, nine" in err.value.msg


# errors/: file -> (state, text the message must contain) for failures, or the reboot_required dict.
ERRORS: dict[str, tuple[str, str | None]] = {
    "failed-to-communicate-with-driver.txt": ("driver_broken", "Usual causes"),
    "failed-to-communicate-with-driver__curly-apostrophe.txt": ("driver_broken", "Usual causes"),
    "no-devices-were-found.txt": ("no_devices", "Resizable BAR"),
    "nvml-driver-library-mismatch__no-version-line.txt": ("reboot_required", None),
    "nvml-driver-library-mismatch__nvml-550.144.txt": ("reboot_required", "550.144"),
    "nvml-driver-library-mismatch__nvml-570.124.txt": ("reboot_required", "570.124"),
    "nvml-mismatch-with-proc-version__nvml-580.178_kmod-580.173.02.txt": ("reboot_required", "580.178"),
    "unable-to-determine-device-handle__gpu-is-lost.txt": ("gpu_lost", "GPU 0000:02:00.0: GPU is lost"),
    "unable-to-determine-device-handle__unknown-error.txt": ("gpu_lost", "GPU 0000:0B:00.0: Unknown Error"),
    "unable-to-determine-device-handle__unknown-error__no-space.txt": (
        "gpu_lost",
        "GPU0000:07:00.0: Unknown Error",
    ),
    # Not states of `nvidia-smi -q`: an invalid --query-gpu field and an nvlink sub-command answer.
    "invalid-query-field__id.txt": ("unknown", None),
    "nvlink-not-supported-in-mig-mode__590.48.01.txt": ("unknown", None),
}


def test_every_error_fixture_has_an_expectation() -> None:
    assert sorted(fixtures("errors")) == sorted(ERRORS)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_fixture(name: str) -> None:
    state, text = ERRORS[name]
    output = fixtures("errors")[name].read_text(encoding="utf-8")
    if state == "reboot_required":
        result = gpu_facts.classify_error(output, 18)
        assert result == {"state": "reboot_required", "library_version": text}
    elif state == "unknown":
        assert gpu_facts.classify_error(output, 2) is None
    else:
        with pytest.raises(NvidiaSmiError) as err:
            gpu_facts.classify_error(output, 9)
        assert err.value.state == state
        assert text is not None and text in err.value.msg


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("proprietary__580.173.02.txt", "580.173.02"),
        ("proprietary__384.98.txt", "384.98"),
        ("open__jetson-aarch64__35.3.1.txt", "35.3.1"),
    ],
)
def test_proc_driver_version(name: str, version: str) -> None:
    assert gpu_facts.parse_proc_version(proc_fixtures()[name].read_text(encoding="utf-8")) == version


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("Segmentation fault\n", "Segmentation fault"),
        ("==============NVSMI LOG==============\n\nTimestamp : x\nDriver Version : banana\n", "banana"),
        (
            "==============NVSMI LOG==============\nDriver Version : 550.54.14\nCUDA Version : twelve\n",
            "twelve",
        ),
        (
            "Driver Version : 550.54.14\nGPU 00000000:01:00.0\n"
            "    FB Memory Usage\n        Total : lots MiB\n",
            "lots MiB",
        ),
        ("", ""),
    ],
)
def test_unparseable_output_fails_quoting_the_line(text: str, quoted: str) -> None:
    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.parse_query_q(text)
    assert err.value.state == "unparseable"
    assert quoted in err.value.msg


# ---- gather() against the lab's fake nvidia-smi (real subprocesses, no Ansible) ----


def _run(argv: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def _staged(tmp_path: Path, profile: str) -> tuple[str, str]:
    lab_nvidia_smi.stage(tmp_path, profile)
    os.environ["GPULAB_LAB_NVIDIA_SMI_SYSROOT"] = str(tmp_path)
    smi = tmp_path / "usr" / "bin" / "nvidia-smi"
    proc = tmp_path / "etc" / "gpulab-lab" / "proc-driver-nvidia-version"
    return (str(smi) if smi.exists() else ""), str(proc)


@pytest.fixture(autouse=True)
def _no_sysroot_leak() -> Iterator[None]:
    """_staged() points the fake at a staged tree through the environment; undo that after each test."""
    yield
    os.environ.pop("GPULAB_LAB_NVIDIA_SMI_SYSROOT", None)


# profile -> (state, driver, cuda, [(name, compute capability, source)])
PROFILES: dict[str, tuple[str, str | None, str | None, list[tuple[str, str, str]]]] = {
    "h100-590.48.01": ("ok", "590.48.01", "13.1", [("NVIDIA H100 80GB HBM3", "9.0", "nvidia-smi")]),
    "h200-mig-590.48.01": ("ok", "590.48.01", "13.1", [("NVIDIA H200", "9.0", "nvidia-smi")]),
    "l40s-595.80": ("ok", "595.80", "13.2", [("NVIDIA L40S", "8.9", "nvidia-smi")]),
    "rtx2080super-610.57.04": (
        "ok",
        "610.57.04",
        "13.3",
        [("NVIDIA GeForce RTX 2080 SUPER", "7.5", "nvidia-smi")],
    ),
    # -a only: the fake has no CSV for them and answers 255, so the name table fills in.
    "l40s-550.127.05": ("ok", "550.127.05", "12.4", [("NVIDIA L40S", "8.9", "name-table")]),
    "a40x10-550.127.05": ("ok", "550.127.05", "12.4", [("NVIDIA A40", "8.6", "name-table")] * 10),
    "driver-mismatch": ("reboot_required", None, None, []),
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_gather_against_the_fake(tmp_path: Path, profile: str) -> None:
    state, driver, cuda, gpus = PROFILES[profile]
    smi, proc = _staged(tmp_path, profile)
    facts = gpu_facts.gather(_run, smi, proc, "")
    assert facts["nvidia_smi_state"] == state
    assert facts["nvidia_driver_version"] == driver
    assert facts["nvidia_cuda_driver_version"] == cuda
    assert facts["nvidia_gpu_present"] is True
    assert [
        (g["name"], g["compute_capability"], g["compute_capability_source"]) for g in facts["nvidia_gpus"]
    ] == gpus
    if state == "reboot_required":
        assert facts["nvidia_library_version"] == "580.178"
        assert facts["nvidia_kernel_module_version"] == "580.173.02"


@pytest.mark.parametrize(
    ("profile", "state"),
    [("driver-broken", "driver_broken"), ("no-devices", "no_devices"), ("gpu-lost", "gpu_lost")],
)
def test_gather_failures_against_the_fake(tmp_path: Path, profile: str, state: str) -> None:
    smi, proc = _staged(tmp_path, profile)
    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.gather(_run, smi, proc, "")
    assert err.value.state == state


def test_gather_without_nvidia_smi_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hermetic: neither PATH nor the usual driver directories hold an nvidia-smi (even on a GPU machine).
    monkeypatch.setattr(gpu_facts, "DEFAULT_SEARCH_DIRS", [str(tmp_path / "usr" / "bin")])
    facts = gpu_facts.gather(_run, "", str(tmp_path / "no-proc"), str(tmp_path))
    assert facts["nvidia_smi_path"] is None
    assert facts["nvidia_smi_state"] == "absent"
    assert facts["nvidia_gpu_present"] is False
    assert facts["nvidia_gpus"] == []
    assert facts["nvidia_driver_version"] is None


def test_gather_with_a_missing_explicit_path_fails(tmp_path: Path) -> None:
    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.gather(_run, str(tmp_path / "nvidia-smi"), "", "")
    assert "does not exist" in err.value.msg


def test_find_nvidia_smi_uses_path_first(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n", encoding="utf-8")
    smi.chmod(0o755)
    assert gpu_facts.find_nvidia_smi("", str(tmp_path)) == str(smi)


# ---- the module as Ansible runs it (ad hoc, as the issue asks) ----

ANSIBLE = Path(sys.executable).parent / "ansible"


def _adhoc(args: str, env: dict[str, str]) -> dict[str, Any]:
    if not ANSIBLE.exists() and shutil.which("ansible") is None:
        pytest.fail("ansible is not installed next to the test interpreter")
    cmd = [
        str(ANSIBLE if ANSIBLE.exists() else "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-M",
        str(MODULE_PATH.parent),
        "-m",
        "nvidia_gpu_facts",
        "-a",
        args,
    ]
    callback = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, **callback, **env), check=False
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    result: dict[str, Any] = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def test_adhoc_module_run(tmp_path: Path) -> None:
    smi, _ = _staged(tmp_path, "rtx2080super-610.57.04")
    result = _adhoc(f"nvidia_smi_path={smi}", {"GPULAB_LAB_NVIDIA_SMI_SYSROOT": str(tmp_path)})
    assert result.get("failed") is not True, result
    facts = result["ansible_facts"]
    assert facts["nvidia_driver_version"] == "610.57.04"
    assert facts["nvidia_cuda_driver_version"] == "13.3"
    assert facts["nvidia_gpus"][0]["memory_total_mib"] == 8192
    assert facts["nvidia_gpus"][0]["compute_capability"] == "7.5"
    assert result["changed"] is False


def test_adhoc_broken_driver_is_a_clear_failure(tmp_path: Path) -> None:
    smi, _ = _staged(tmp_path, "driver-broken")
    result = _adhoc(f"nvidia_smi_path={smi}", {"GPULAB_LAB_NVIDIA_SMI_SYSROOT": str(tmp_path)})
    assert result["failed"] is True
    assert result["nvidia_smi_state"] == "driver_broken"
    assert "couldn't communicate with the NVIDIA driver" in result["msg"]
    assert "Traceback" not in json.dumps(result)


def test_find_nvidia_smi_falls_back_to_the_driver_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver_bin = tmp_path / "usr" / "local" / "nvidia" / "bin"
    driver_bin.mkdir(parents=True)
    smi = driver_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\n", encoding="utf-8")
    smi.chmod(0o755)
    monkeypatch.setattr(gpu_facts, "DEFAULT_SEARCH_DIRS", [str(tmp_path / "usr" / "bin"), str(driver_bin)])
    assert gpu_facts.find_nvidia_smi("", str(tmp_path / "empty")) == str(smi)
