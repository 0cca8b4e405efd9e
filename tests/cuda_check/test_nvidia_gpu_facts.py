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

from ._load import REPO, fixtures, gpu_facts, proc_fixtures

NvidiaSmiError = gpu_facts.NvidiaSmiError

# The corpus files themselves (count, names, memory, driver, CUDA, error states) are checked in
# test_nvidia_smi_corpus.py; here: how the parsers treat shapes no capture shows and the fallbacks.


def test_mig_devices_are_not_gpus_and_their_memory_is_not_the_gpu_memory() -> None:
    parsed = gpu_facts.parse_query_q(
        fixtures("query-q")["h200-mig__590.48.01__idle.txt"].read_text(encoding="utf-8")
    )
    (gpu,) = parsed["gpus"]
    assert gpu["mig_devices"] == 5
    assert gpu["memory_total_mib"] == 143771  # not a MIG slice's "Shared FB Memory Usage" (71424 MiB)


def test_xml_mig_devices_are_not_gpus_and_their_memory_is_not_the_gpu_memory() -> None:
    parsed = gpu_facts.parse_query_xml(
        fixtures("query-xml")["a100-sxm4-40gb-mig__510.47.03.xml"].read_text(encoding="utf-8")
    )
    (gpu,) = parsed["gpus"]
    assert (gpu["mig_mode"], gpu["mig_devices"], gpu["memory_total_mib"]) == ("enabled", 2, 40960)


R610_Q = fixtures("query-q")["rtx-2080-super__610.57.04__idle.txt"].read_text(encoding="utf-8")


def _mangle(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


# Shapes a future driver (or a pasted copy) may have, built from a real R610 capture: each must still
# give the same driver, CUDA version and GPU, with at most warnings.
TOLERATED = {
    "warning line": lambda t: "WARNING: infoROM is corrupted at gpu 0000:0C:00.0\n" + t,
    "new top-level section": lambda t: _mangle(
        t, "Attached GPUs", "Fancy New Section\n    Something : 1\n        Deeper : x\nAttached GPUs"
    ),
    "new unit": lambda t: _mangle(t, "Total" + " " * 42 + ": 8192 MiB", "Total : 8 GiB"),
    "tab indentation": lambda t: t.replace("    ", "\t"),
    "odd spacing": lambda t: _mangle(t, "Product Name" + " " * 39 + ": ", "Product Name:"),
    "unknown key line": lambda t: _mangle(t, "    Product Name", "    ???? weird ::: line\n    Product Name"),
    "windows line ends": lambda t: t.replace("\n", "\r\n"),
}


@pytest.mark.parametrize("shape", sorted(TOLERATED))
def test_text_parser_tolerates(shape: str) -> None:
    parsed = gpu_facts.parse_query_q(TOLERATED[shape](R610_Q))
    assert parsed["driver_version"] == "610.57.04"
    assert parsed["cuda_driver_version"] == "13.3"
    (gpu,) = parsed["gpus"]
    assert (gpu["name"], gpu["memory_total_mib"]) == ("NVIDIA GeForce RTX 2080 SUPER", 8192)
    if shape == "warning line":
        assert parsed["warnings"] == ["WARNING: infoROM is corrupted at gpu 0000:0C:00.0"]


def test_text_parser_reads_the_kmd_lines_not_the_deprecated_ones() -> None:
    text = _mangle(R610_Q, "KMD Version" + " " * 44 + ": 610.57.04", "KMD Version : 611.1")
    assert gpu_facts.parse_query_q(text)["driver_version"] == "611.1"


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        ("Segmentation fault\n", None),
        ("==============NVSMI LOG==============\n\nTimestamp : x\nDriver Version : banana\n", "banana"),
        (
            "Driver Version : 550.54.14\nGPU 00000000:01:00.0\n"
            "    FB Memory Usage\n        Total : lots MiB\n",
            "lots",
        ),
        ("", None),
    ],
)
def test_text_parser_never_fails_and_warns_about_values_it_cannot_read(text: str, warned: str | None) -> None:
    parsed = gpu_facts.parse_query_q(text)
    if warned is not None:
        assert any(warned in w for w in parsed["warnings"]), parsed["warnings"]


def test_csv_parser_skips_lines_that_are_not_rows() -> None:
    fields = ["index", "name", "driver_version", "memory.total", "compute_cap"]
    text = (
        "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n"
        "0, NVIDIA A100-SXM4-40GB, 470.82.01, 40536, [N/A]\n"
    )
    parsed = gpu_facts.parse_query_gpu_csv(text, fields)
    gpu_facts.apply_compute_capability(parsed["gpus"])
    (gpu,) = parsed["gpus"]
    assert (gpu["name"], gpu["memory_total_mib"]) == ("NVIDIA A100-SXM4-40GB", 40536)
    assert gpu["compute_capability"] == "8.0"  # [N/A] from nvidia-smi: the name table answers
    assert parsed["driver_version"] == "470.82.01"
    assert len(parsed["warnings"]) == 1


def test_xml_parser_refuses_what_is_not_nvidia_smi_xml() -> None:
    for text in ("Segmentation fault", "<html/>", "<nvidia_smi_log><gpu"):
        with pytest.raises(ValueError):
            gpu_facts.parse_query_xml(text)


def test_name_table_agrees_with_every_compute_cap_the_drivers_printed() -> None:
    checked = 0
    for path in fixtures("query-gpu-csv").values():
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, skipinitialspace=True))
        header = [h.strip() for h in rows[0]]
        for row in rows[1:]:
            values = dict(zip(header, row, strict=True))
            if "compute_cap" in values:
                assert gpu_facts.compute_capability_from_name(values["name"]) == values["compute_cap"]
                checked += 1
    assert checked >= 10  # 8 captures of 4 machines + TITAN V (7.0) and RTX 5880 Ada (8.9)


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


# ---- gather() with a scripted nvidia-smi: the order of the interfaces and the retries ----


def _smi(tmp_path: Path) -> str:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n", encoding="utf-8")
    smi.chmod(0o755)
    return str(smi)


def test_gather_retries_without_a_field_the_driver_does_not_know(tmp_path: Path) -> None:
    invalid = fixtures("errors")["invalid-query-field__id.txt"].read_text(encoding="utf-8")
    rows = "0, 00000000:08:00.0, GPU-550139a6, NVIDIA GeForce GTX 680, 2000, 470.256.02, [N/A]\n"
    calls: list[str] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(" ".join(argv[1:]))
        if argv[1].startswith("--query-gpu="):
            if "compute_cap" in argv[1]:
                return 2, invalid.replace('"id"', '"compute_cap"') + "\n", ""
            return 0, rows, ""
        if argv[1:] == ["-q", "-x"]:
            return 255, "", "no XML"
        return 0, fixtures("query-q")["gtx-680__470.256.02.txt"].read_text(encoding="utf-8"), ""

    facts = gpu_facts.gather(run, _smi(tmp_path), "", "")
    (gpu,) = facts["nvidia_gpus"]
    # The GTX 680 (Kepler) is not in the name table: unknown, and the role says so.
    assert (gpu["compute_capability"], gpu["compute_capability_source"]) == (None, None)
    assert facts["nvidia_driver_version"] == "470.256.02"
    assert facts["nvidia_cuda_driver_version"] == "11.4"
    assert facts["nvidia_smi_sources"] == {"gpus": "query-gpu", "driver": "query-gpu", "cuda": "text"}
    assert calls[0].startswith("--query-gpu=" + ",".join(gpu_facts.QUERY_FIELDS) + " ")
    assert gpu_facts.QUERY_FIELDS[-1] == "compute_cap"
    assert "compute_cap" not in calls[1]


def test_gather_prefers_xml_over_text_and_never_reads_text_when_xml_had_everything(tmp_path: Path) -> None:
    xml = fixtures("query-xml")["rtx-2070-x2__590.44.01.xml"].read_text(encoding="utf-8")
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv[1:])
        if argv[1:] == ["-q", "-x"]:
            return 0, xml, ""
        return 255, "", "only XML here"

    facts = gpu_facts.gather(run, _smi(tmp_path), "", "")
    assert ["-q"] not in calls
    assert facts["nvidia_smi_sources"] == {"gpus": "xml", "driver": "xml", "cuda": "xml"}
    assert [g["name"] for g in facts["nvidia_gpus"]] == ["NVIDIA GeForce RTX 2070"] * 2
    assert [g["compute_capability"] for g in facts["nvidia_gpus"]] == ["7.5", "7.5"]


def test_gather_names_the_missing_driver_version_and_the_commands(tmp_path: Path) -> None:
    def run(argv: list[str]) -> tuple[int, str, str]:
        if argv[1:] == ["-q"]:
            return 0, "GPU 00000000:01:00.0\n    Product Name : NVIDIA L4\n", ""
        return 255, "", "nothing"

    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.gather(run, "/bin/true", "", "")
    assert err.value.state == "missing_field"
    assert "driver version" in err.value.msg and "/bin/true -q" in err.value.msg


def test_gather_names_a_missing_gpu_name(tmp_path: Path) -> None:
    text = fixtures("query-q")["rtx-pro-6000-blackwell-x4__580.105.06__cuda-not-found__excerpt.txt"]

    def run(argv: list[str]) -> tuple[int, str, str]:
        return (0, text.read_text(encoding="utf-8"), "") if argv[1:] == ["-q"] else (255, "", "")

    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.gather(run, "/bin/true", "", "")
    assert err.value.state == "missing_field"
    assert "name of GPU 0" in err.value.msg and "Product Name" in err.value.msg


def test_gather_with_only_unknown_failures_is_unknown_error() -> None:
    with pytest.raises(NvidiaSmiError) as err:
        gpu_facts.gather(lambda argv: (1, "Segmentation fault", ""), "/bin/true", "", "")
    assert err.value.state == "unknown_error"
    assert "Segmentation fault" in err.value.msg


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
PROFILES: dict[str, tuple[str, str | None, str | None, list[tuple[str, str | None, str | None]]]] = {
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
    # R470 (-a only) and two machines the fake knows only from their -q -x XML.
    "gtx680-470.256.02": ("ok", "470.256.02", "11.4", [("NVIDIA GeForce GTX 680", None, None)]),
    "a100-mig-510.47.03": ("ok", "510.47.03", "11.6", [("NVIDIA A100-SXM4-40GB", "8.0", "name-table")]),
    "rtx2070x2-590.44.01": (
        "ok",
        "590.44.01",
        "13.1",
        [("NVIDIA GeForce RTX 2070", "7.5", "name-table")] * 2,
    ),
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
    if state == "ok":
        # Complete captures answer --query-gpu; the others only -q -x or -q, and the module says which.
        assert facts["nvidia_smi_sources"]["gpus"] == (
            "query-gpu"
            if lab_nvidia_smi.PROFILES[profile].captures.get("query_gpu_csv")
            else "xml"
            if lab_nvidia_smi.PROFILES[profile].captures.get("query_xml")
            else "text"
        )
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
        "-m",
        "gpulab.gpulab.nvidia_gpu_facts",  # by FQCN: the checkout's ansible.cfg finds the collection
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


def test_adhoc_module_run_on_an_xml_only_r510_machine(tmp_path: Path) -> None:
    smi, _ = _staged(tmp_path, "a100-mig-510.47.03")
    result = _adhoc(f"nvidia_smi_path={smi}", {"GPULAB_LAB_NVIDIA_SMI_SYSROOT": str(tmp_path)})
    assert result.get("failed") is not True, result
    facts = result["ansible_facts"]
    assert facts["nvidia_smi_sources"] == {"gpus": "xml", "driver": "xml", "cuda": "xml"}
    assert (facts["nvidia_driver_version"], facts["nvidia_cuda_driver_version"]) == ("510.47.03", "11.6")
    (gpu,) = facts["nvidia_gpus"]
    assert (gpu["name"], gpu["mig_mode"], gpu["mig_devices"]) == ("NVIDIA A100-SXM4-40GB", "enabled", 2)


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
