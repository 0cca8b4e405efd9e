"""CUDA selection and local-fact bookkeeping of the cuda_check role, with the role's own data tables."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ._load import cuda_filter, role_defaults, role_vars

VARS = role_vars()
TABLES = {
    "toolkit_drivers": VARS["__cuda_check_toolkit_drivers"],
    "minor_compat": VARS["__cuda_check_minor_version_compat_floors"],
    "cuda_archs": VARS["__cuda_check_cuda_archs"],
}
DEFAULT_CANDIDATES = role_defaults()["cuda_check_cuda_candidates"]


def facts(driver: str | None, cuda: str | None, *ccs: str | None, state: str = "ok") -> dict[str, Any]:
    return {
        "nvidia_gpu_present": driver is not None or state == "reboot_required",
        "nvidia_smi_state": state if driver is not None or state != "ok" else "absent",
        "nvidia_driver_version": driver,
        "nvidia_cuda_driver_version": cuda,
        "nvidia_gpus": [
            {"index": i, "name": f"GPU{i}", "compute_capability": cc} for i, cc in enumerate(ccs)
        ],
    }


def select(
    f: dict[str, Any], candidates: list[str] | None = None, pin: str = "", **kw: Any
) -> dict[str, Any]:
    result: dict[str, Any] = cuda_filter.select_cuda(
        f, candidates=DEFAULT_CANDIDATES if candidates is None else candidates, pin=pin, **TABLES, **kw
    )
    return result


def refusal(f: dict[str, Any], candidates: list[str] | None = None, pin: str = "", **kw: Any) -> str:
    """The message of the AnsibleFilterError the `cuda_check_select` filter raises (the one error style)."""
    select_filter = cuda_filter.FilterModule().filters()["cuda_check_select"]
    options = {"candidates": DEFAULT_CANDIDATES if candidates is None else candidates, "pin": pin}
    with pytest.raises(AnsibleFilterError) as err:
        select_filter(f, **options, **(TABLES | kw))
    return str(err.value)


def test_default_candidates_are_the_conda_forge_pytorch_cuda_lines() -> None:
    assert DEFAULT_CANDIDATES == ["13.0", "12.9"]


# (label, facts, candidates, expected CUDA or None for a failure, text the error must contain)
CASES: list[tuple[str, dict[str, Any], list[str] | None, str | None, str]] = [
    (
        "A100 on 535 (CUDA 12.2): 12.9 by minor version compat",
        facts("535.104.05", "12.2", "8.0"),
        None,
        "12.9",
        "",
    ),
    (
        "A100 on 535 without 12.x candidates fails",
        facts("535.104.05", "12.2", "8.0"),
        ["13.0"],
        None,
        "580.65.06",
    ),
    ("A100 on 510 (CUDA 11.6): nothing fits", facts("510.47.03", "11.6", "8.0"), None, None, "525.60.13"),
    (
        "A100 on 510 with an 11.8 candidate",
        facts("510.47.03", "11.6", "8.0"),
        ["13.0", "12.9", "11.8"],
        "11.8",
        "",
    ),
    ("H100 on 590: 13.0", facts("590.48.01", "13.1", "9.0"), None, "13.0", ""),
    ("H200 MIG on 590: 13.0", facts("590.48.01", "13.1", "9.0"), None, "13.0", ""),
    ("L40S on 550: 12.9", facts("550.127.05", "12.4", "8.9"), None, "12.9", ""),
    ("L40S on 595.80: 13.0", facts("595.80", "13.2", "8.9"), None, "13.0", ""),
    ("RTX 2080 Super (7.5) on 610: 13.0", facts("610.57.04", "13.3", "7.5"), None, "13.0", ""),
    ("V100 (7.0) on 580: 12.9, 13.0 dropped < 7.5", facts("580.95.05", "13.0", "7.0"), None, "12.9", ""),
    ("P100 (6.0) on 580: 12.9", facts("580.95.05", "13.0", "6.0"), None, "12.9", ""),
    ("V100 + H100 on 590: the V100 decides", facts("590.48.01", "13.1", "9.0", "7.0"), None, "12.9", ""),
    (
        "V100 with only 13.0 candidates fails naming the GPU",
        facts("580.95.05", "13.0", "7.0"),
        ["13.0"],
        None,
        "compute capability 7.0",
    ),
    (
        "Blackwell RTX 5090 on 570 with 12.6: no sm_120 before 12.8",
        facts("570.26", "12.8", "12.0"),
        ["12.6"],
        None,
        "compute capability 12.0",
    ),
    (
        "Blackwell on 570 with 12.8 and 12.6: 12.8",
        facts("570.26", "12.8", "12.0"),
        ["12.8", "12.6"],
        "12.8",
        "",
    ),
    ("B200 (10.0) on 580: 13.0", facts("580.65.06", "13.0", "10.0"), None, "13.0", ""),
    (
        "H100 on 11.7: no Hopper before 11.8",
        facts("515.43.04", "11.7", "9.0"),
        ["11.7"],
        None,
        "compute capability 9.0",
    ),
    ("Ada 8.9 runs 8.6 code in 11.4", facts("470.42.01", "11.4", "8.9"), ["11.4"], "11.4", ""),
    ("Thor (11.0) needs 13.0 (sm_110)", facts("580.65.06", "13.0", "11.0"), ["13.0", "12.9"], "13.0", ""),
    (
        "Thor on 12.9 only fails",
        facts("580.65.06", "13.0", "11.0"),
        ["12.9"],
        None,
        "compute capability 11.0",
    ),
    (
        "vGPU host, CUDA Not Found: max CUDA from the driver table",
        facts("580.105.06", None, None),
        None,
        "13.0",
        "",
    ),
    (
        "565 prints 12.7 (no such toolkit): 12.9 by compat",
        facts("565.57.01", "12.7", "9.0"),
        None,
        "12.9",
        "",
    ),
    ("Unknown compute capability does not block", facts("590.48.01", "13.1", None), None, "13.0", ""),
]


@pytest.mark.parametrize(("label", "f", "candidates", "expected", "error"), CASES, ids=[c[0] for c in CASES])
def test_selection(
    label: str, f: dict[str, Any], candidates: list[str] | None, expected: str | None, error: str
) -> None:
    if expected is None:
        message = refusal(f, candidates)
        assert error in message
        assert f["nvidia_driver_version"] in message
        assert "cuda_check_cuda_candidates" in message  # the variable to change
    else:
        assert select(f, candidates)["cuda_version"] == expected


def test_strict_mode_needs_the_toolkit_driver() -> None:
    # 550.127.05 < 575.51.03 (CUDA 12.9 toolkit driver): without minor version compatibility 12.9 is out.
    result = select(facts("550.127.05", "12.4", "8.9"), ["13.0", "12.9", "12.4"], use_minor_compat=False)
    assert result["cuda_version"] == "12.4"
    assert "575.51.03" in refusal(facts("550.127.05", "12.4", "8.9"), use_minor_compat=False)


def test_no_gpu_is_a_cpu_build() -> None:
    result = select(facts(None, None))
    assert result["cuda_version"] == ""
    assert "error" not in result


def test_a_gpu_without_a_driver_version_is_refused() -> None:
    f = facts("550.127.05", "12.4", "8.9") | {"nvidia_driver_version": None}
    assert "the NVIDIA driver version is unknown" in refusal(f)


def test_fallback_to_cpu() -> None:
    result = select(facts("510.47.03", "11.6", "8.0"), fallback_to_cpu=True)
    assert result["cuda_version"] == ""
    assert any("CPU build" in n for n in result["notes"])


def test_pin_the_driver_can_run() -> None:
    assert select(facts("550.127.05", "12.4", "8.9"), pin="12.4")["cuda_version"] == "12.4"
    assert select(facts("595.80", "13.2", "8.9"), pin="12.9")["cuda_version"] == "12.9"


def test_pin_the_driver_cannot_run_names_driver_max_and_pin() -> None:
    message = refusal(facts("550.127.05", "12.4", "8.9"), pin="13.0")
    for text in (
        "550.127.05",
        "maximum CUDA 12.4",
        "pin is 13.0",
        "580.65.06",
        "set cuda_check_cuda_version_pin",
    ):
        assert text in message


def test_pin_the_gpu_cannot_run() -> None:
    assert "compute capability 7.0" in refusal(facts("590.48.01", "13.1", "7.0"), pin="13.0")


def test_reboot_pending_selects_for_the_new_library() -> None:
    f = facts(None, None, state="reboot_required")
    f.update(nvidia_library_version="580.178", nvidia_kernel_module_version="570.124.06")
    result = select(f)
    assert result["driver_version"] == "580.178"
    assert result["cuda_version"] == "13.0"
    assert result["driver_max_cuda_source"] == "driver-table"


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("580.65.06", "13.0"),
        ("580.65.05", "12.9"),
        ("570.26", "12.8"),
        ("565.57.01", "12.6"),
        ("550.54.14", "12.4"),
        ("550.40.07", "12.3"),
        ("455.23", "11.1"),
        ("400.1", None),
    ],
)
def test_driver_max_cuda_from_the_table(driver: str, cuda: str | None) -> None:
    assert cuda_filter.driver_max_cuda(driver, TABLES["toolkit_drivers"]) == cuda


def test_versions_compare_per_component() -> None:
    assert cuda_filter.version_tuple("550.127.05") > cuda_filter.version_tuple("550.54.14")
    with pytest.raises(ValueError, match="not a version number"):
        cuda_filter.version_tuple("550.x")


def test_bad_input_is_an_error_not_a_traceback() -> None:
    assert "bad input" in refusal(facts("590.48.01", "13.1", "9.0"), candidates=["13"])


def test_a_non_number_in_a_table_is_an_error_not_a_traceback() -> None:
    """A user's overridden table (cuda_check_minor_compat) with a typo reaches `int()`, not the regexes."""
    message = refusal(
        facts("520.61.05", "11.8", "9.0"),
        ["12.4"],
        minor_compat=[{"major": "twelve", "driver": "525.60.13"}],
    )
    assert "bad input" in message and "twelve" in message


def test_tables_are_sane() -> None:
    drivers = [cuda_filter.version_tuple(r["driver"]) for r in TABLES["toolkit_drivers"]]
    cudas = [tuple(int(x) for x in r["cuda"].split(".")) for r in TABLES["toolkit_drivers"]]
    assert cudas == sorted(cudas, reverse=True)
    assert drivers == sorted(drivers, reverse=True)  # newer CUDA never needs an older driver
    for candidate in DEFAULT_CANDIDATES:
        assert cuda_filter.gpu_targets(candidate, TABLES["cuda_archs"]) is not None


# ---- local fact bookkeeping ----

SEEN = {
    "driver": "550.127.05",
    "cuda_driver_version": "12.4",
    "cuda_version": "12.9",
    "gpu_present": True,
    "gpus": [],
}


def test_first_record() -> None:
    record = cuda_filter.build_record({}, SEEN, "T1")
    assert record == {**SEEN, "checked_at": "T1", "driver_seen_since": "T1", "previous_driver": ""}
    assert cuda_filter.driver_change({}, "550.127.05") == {"changed": False, "previous": ""}


def test_same_content_keeps_the_timestamps() -> None:
    first = cuda_filter.build_record({}, SEEN, "T1")
    assert cuda_filter.build_record(first, SEEN, "T2") == first
    assert cuda_filter.driver_change(first, "550.127.05") == {"changed": False, "previous": "550.127.05"}


def test_driver_upgrade_is_recorded() -> None:
    first = cuda_filter.build_record({}, SEEN, "T1")
    upgraded = {**SEEN, "driver": "595.80", "cuda_driver_version": "13.2", "cuda_version": "13.0"}
    second = cuda_filter.build_record(first, upgraded, "T2")
    assert second["checked_at"] == "T2"
    assert second["driver_seen_since"] == "T2"
    assert second["previous_driver"] == "550.127.05"
    assert cuda_filter.driver_change(first, "595.80") == {"changed": True, "previous": "550.127.05"}
    third = cuda_filter.build_record(second, upgraded, "T3")
    assert third == second  # the upgrade stays documented, nothing moves


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"driver": "550.12', "it is not JSON"),
        ("\udcff\udcfe{garbage", "it is not UTF-8 text"),  # b64decode's escapes for bytes not UTF-8
        ("[1]", "it holds a JSON list, not an object"),
        ('"550.127.05"', "it holds a JSON str, not an object"),
        ('{"driver": 550.127, "gpus": []}', "its driver is a float (550.127)"),
        ('{"driver": "1.2", "gpus": "none"}', 'its gpus is a str ("none")'),
        ('{"driver": "1.2", "gpu_present": "yes"}', 'its gpu_present is a str ("yes")'),
    ],
)
def test_parse_fact_says_why_a_record_is_unreadable_and_reads_it_as_none(text: str, problem: str) -> None:
    parsed = cuda_filter.parse_fact(text)
    assert parsed["record"] == {}
    assert parsed["problem"].startswith(problem)


def test_parse_fact_reads_a_good_record_and_no_file() -> None:
    assert cuda_filter.parse_fact("") == {"record": {}, "problem": ""}
    good = cuda_filter.build_record({}, SEEN, "T1")
    assert cuda_filter.parse_fact(json.dumps(good)) == {"record": good, "problem": ""}
    assert cuda_filter.parse_fact('{"driver": "1.2"}') == {"record": {"driver": "1.2"}, "problem": ""}
