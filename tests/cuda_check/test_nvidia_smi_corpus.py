"""Every real nvidia-smi output in tests/corpus/nvidia-smi through the module's real parsing code.

`expectations.yml` (written by reading each capture) says what the capture shows; each file is checked
twice: through its parser (`-q` text, `-q -x` XML or `--query-gpu` CSV) and end to end through `gather()`
with an nvidia-smi that answers only that interface, as a host whose other interfaces fail would.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._load import CORPUS, fixtures, gpu_facts

NvidiaSmiError = gpu_facts.NvidiaSmiError

EXPECT: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expectations.yml").read_text(encoding="utf-8"))
KINDS = ("query-q", "query-xml", "query-gpu-csv", "errors")
GPU_FILES = sorted(k for k in EXPECT if not k.startswith("errors/"))
ERROR_FILES = sorted(k for k in EXPECT if k.startswith("errors/"))
INVALID_FIELD = fixtures("errors")["invalid-query-field__id.txt"].read_text(encoding="utf-8")


def test_every_corpus_file_has_an_expectation_and_a_source() -> None:
    files = sorted(f"{kind}/{name}" for kind in KINDS for name in fixtures(kind))
    assert files == sorted(EXPECT)
    assert len(files) >= 30
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for name in files + [f"proc-driver-nvidia-version/{n}" for n in fixtures("proc-driver-nvidia-version")]:
        assert f"| `{name.split('/', 1)[1]}` |" in sources, name


def test_the_corpus_covers_the_driver_branches_and_shapes_the_issue_names() -> None:
    majors = {int(e["driver"].split(".")[0]) for e in EXPECT.values() if "driver" in e}
    assert {470, 510, 535, 550, 570, 580, 590, 610} <= majors
    assert any(e.get("mig_devices") for e in EXPECT.values())
    assert any(e.get("gpu_count", 0) >= 8 for e in EXPECT.values())
    assert {e["state"] for e in EXPECT.values() if "state" in e} >= {
        "driver_broken",
        "no_devices",
        "gpu_lost",
        "reboot_required",
    }
    assert any("wsl" in name for name in EXPECT)


def _capture(key: str) -> str:
    kind, name = key.split("/", 1)
    return fixtures(kind)[name].read_text(encoding="utf-8")


def _csv_parts(text: str) -> tuple[list[str], str]:
    """A `--format=csv` capture -> (field names without units, the data rows)."""
    header, _, rows = text.partition("\n")
    fields = [h.strip().split(" [", 1)[0] for h in next(csv.reader([header], skipinitialspace=True))]
    return fields, rows


def _parse(key: str) -> dict[str, Any]:
    text = _capture(key)
    if key.startswith("query-q/"):
        parsed: dict[str, Any] = gpu_facts.parse_query_q(text)
    elif key.startswith("query-xml/"):
        parsed = gpu_facts.parse_query_xml(text)
    else:
        parsed = gpu_facts.parse_query_gpu_csv(*reversed(_csv_parts(text)))
    gpu_facts.apply_compute_capability(parsed["gpus"])
    return parsed


def _check(expect: dict[str, Any], driver: str | None, cuda: str | None, gpus: list[dict[str, Any]]) -> None:
    assert driver == expect["driver"]
    assert cuda == expect["cuda"]
    assert len(gpus) == expect["gpu_count"]
    assert [g["name"] for g in gpus] == expect["names"]
    assert [g["memory_total_mib"] for g in gpus] == expect["memory_mib"]
    assert [g["index"] for g in gpus] == list(range(len(gpus)))
    if "mig_devices" in expect:
        assert [g["mig_devices"] for g in gpus] == expect["mig_devices"]


@pytest.mark.parametrize("key", GPU_FILES)
def test_parser(key: str) -> None:
    parsed = _parse(key)
    _check(EXPECT[key], parsed["driver_version"], parsed["cuda_driver_version"], parsed["gpus"])
    for gpu in parsed["gpus"]:
        assert gpu["compute_capability_source"] in ("nvidia-smi", "name-table", None)


def _only(key: str) -> Any:
    """An nvidia-smi that answers the interface of this capture and fails every other call (rc 255)."""
    text = _capture(key)

    def run(argv: list[str]) -> tuple[int, str, str]:
        args = argv[1:]
        if key.startswith("query-q/") and args == ["-q"]:
            return 0, text, ""
        if key.startswith("query-xml/") and args == ["-q", "-x"]:
            return 0, text, ""
        if key.startswith("query-gpu-csv/") and args[0].startswith("--query-gpu="):
            fields, rows = _csv_parts(text)
            wanted = args[0].split("=", 1)[1].split(",")
            for field in wanted:
                if field not in fields:
                    return 2, INVALID_FIELD.replace('"id"', f'"{field}"') + "\n", ""
            table = [next(csv.reader([r], skipinitialspace=True)) for r in rows.splitlines() if r.strip()]
            return 0, "".join(", ".join(row[fields.index(f)] for f in wanted) + "\n" for row in table), ""
        return 255, "", "this host answers only one interface"

    return run


@pytest.mark.parametrize("key", GPU_FILES)
def test_gather(key: str, tmp_path: Path) -> None:
    expect = EXPECT[key]
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n", encoding="utf-8")
    if None in expect["names"]:
        with pytest.raises(NvidiaSmiError) as err:
            gpu_facts.gather(_only(key), str(smi), "", "")
        assert err.value.state == "missing_field"
        assert "Product Name" in err.value.msg
        return
    facts = gpu_facts.gather(_only(key), str(smi), "", "")
    assert facts["nvidia_smi_state"] == "ok"
    assert facts["nvidia_gpu_present"] is True
    _check(expect, facts["nvidia_driver_version"], facts["nvidia_cuda_driver_version"], facts["nvidia_gpus"])
    source = {"query-q": "text", "query-xml": "xml", "query-gpu-csv": "query-gpu"}[key.split("/")[0]]
    assert facts["nvidia_smi_sources"]["gpus"] == source


@pytest.mark.parametrize("key", ERROR_FILES)
def test_error_state(key: str, tmp_path: Path) -> None:
    state, text = EXPECT[key]["state"], EXPECT[key]["text"]
    output = _capture(key)
    if state == "unknown":
        assert gpu_facts.classify_error(output, 2) is None
        if text is not None:
            assert gpu_facts.invalid_field(output) == text
        return
    if state == "reboot_required":
        assert gpu_facts.classify_error(output, 18) == {"state": state, "library_version": text}
    else:
        with pytest.raises(NvidiaSmiError) as err:
            gpu_facts.classify_error(output, 9)
        assert err.value.state == state
        assert text in err.value.msg
    # End to end: every call of gather() gets the captured error, whatever interface it asks for.
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n", encoding="utf-8")
    if state == "reboot_required":
        facts = gpu_facts.gather(lambda argv: (18, output, ""), str(smi), "", "")
        assert (facts["nvidia_smi_state"], facts["nvidia_library_version"]) == (state, text)
    else:
        with pytest.raises(NvidiaSmiError) as err:
            gpu_facts.gather(lambda argv: (9, output, ""), str(smi), "", "")
        assert err.value.state == state
