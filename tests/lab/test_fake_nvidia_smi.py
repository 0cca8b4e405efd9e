"""The fake nvidia-smi (gpulab lab stand-in) replays real captures byte for byte and invents nothing.

The script is run as a subprocess, as the roles run it, against a tree staged by `stage()`
(GPULAB_LAB_NVIDIA_SMI_SYSROOT points it there instead of /). Expected bytes come straight from the
fixture files in src/gpulab/lab/fixtures/, never from the code under test.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gpulab.lab.nvidia_smi import FIXTURES_DIR, PROFILES, SCRIPT, UnknownProfileError, stage

NVSMI = FIXTURES_DIR / "nvidia-smi"
COMPLETE = {
    "h100-590.48.01": "h100-80gb-hbm3__590.48.01",
    "h200-mig-590.48.01": "h200-mig__590.48.01",
    "l40s-595.80": "l40s__595.80",
    "rtx2080super-610.57.04": "rtx-2080-super__610.57.04",
}
QUERY_ONLY = {
    "l40s-550.127.05": "l40s__550.127.05",
    "h100x8-565.57.01": "h100-80gb-hbm3-sxm-x8__565.57.01",
    "a40x10-550.127.05": "a40-x10__550.127.05",
    "rtx4090x8-550.127.05": "rtx-4090-x8__550.127.05",
    "rtx4060tix2-550.54.14": "rtx-4060-ti-x2__550.54.14",
    "h100nvlx2-550.54.14": "h100-nvl-x2__550.54.14",
    "rtx2000ada-550.54.15": "rtx-2000-ada__550.54.15",
    "rtx6000adax8-550.127.05": "rtx-6000-ada-x8__550.127.05",
    "gtx680-470.256.02": "gtx-680__470.256.02",
}
XML_ONLY = {
    "a100-mig-510.47.03": "a100-sxm4-40gb-mig__510.47.03",
    "rtx2070x2-590.44.01": "rtx-2070-x2__590.44.01",
}
NO_CAPTURE = "gpulab lab stand-in: profile {} has no capture for this query\n"


def run_smi(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GPULAB_LAB_NVIDIA_SMI_SYSROOT=str(root))
    return subprocess.run(
        [sys.executable, str(root / "usr/bin/nvidia-smi"), *args], env=env, capture_output=True, check=False
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One staged root per profile."""
    roots = {}
    for name in PROFILES:
        root = tmp_path_factory.mktemp(name)
        stage(root, name)
        roots[name] = root
    return roots


def allfields(stem: str) -> tuple[list[str], list[list[str]]]:
    text = (NVSMI / "query-gpu-csv" / f"{stem}__idle__allfields.csv").read_text(encoding="utf-8")
    lines = text.rstrip("\n").split("\n")
    return lines[0].split(", "), [line.split(", ") for line in lines[1:]]


# Profiles and staging.


def test_profiles_cover_the_states_the_issue_asks_for() -> None:
    kinds = {p.kind for p in PROFILES.values()}
    assert kinds == {"gpu", "error", "absent"}
    assert {
        "none",
        "driver-broken",
        "driver-mismatch",
        "no-devices",
        "gpu-lost",
        "h200-mig-590.48.01",
    } <= set(PROFILES)
    assert sum(1 for p in PROFILES.values() if p.kind == "gpu") >= 8
    for profile in PROFILES.values():
        for fixture in profile.captures.values():
            assert (FIXTURES_DIR / fixture).is_file(), fixture
        if profile.error:
            assert (FIXTURES_DIR / profile.error).is_file()


def test_every_fixture_used_has_a_source_line() -> None:
    sources = (FIXTURES_DIR / "SOURCES.md").read_text(encoding="utf-8")
    used = {f for p in PROFILES.values() for f in [*p.captures.values(), p.error, p.proc_version] if f}
    for fixture in used:
        assert f"| `{Path(fixture).name}` |" in sources, fixture
    for path in FIXTURES_DIR.rglob("*"):
        if path.is_file() and path.name != "SOURCES.md":
            assert f"| `{path.name}` |" in sources, path


def test_stage_layout_for_a_complete_machine(tmp_path: Path) -> None:
    stage(tmp_path, "h100-590.48.01")
    assert (tmp_path / "etc/gpulab-lab/nvidia-smi.profile").read_text() == "h100-590.48.01\n"
    binary = tmp_path / "usr/bin/nvidia-smi"
    assert binary.read_bytes() == SCRIPT.read_bytes()
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert binary.read_text().startswith("#!/usr/bin/python3\n")
    data = tmp_path / "usr/local/share/gpulab-lab/nvidia-smi/h100-590.48.01"
    assert sorted(p.name for p in data.iterdir()) == [
        "list.txt",
        "manifest.json",
        "query-gpu-allfields.csv",
        "query.txt",
        "table.txt",
        "version.txt",
    ]
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["error"] is None
    assert manifest["sources"]["table.txt"] == "nvidia-smi/table/h100-80gb-hbm3__590.48.01__idle.txt"
    assert not (tmp_path / "etc/gpulab-lab/proc-driver-nvidia-version").exists()


def test_stage_none_stages_no_command_and_removes_an_old_one(tmp_path: Path) -> None:
    stage(tmp_path, "driver-mismatch")
    assert (tmp_path / "usr/bin/nvidia-smi").exists()
    stage(tmp_path, "none")
    assert (tmp_path / "etc/gpulab-lab/nvidia-smi.profile").read_text() == "none\n"
    assert not (tmp_path / "usr/bin/nvidia-smi").exists()
    assert not (tmp_path / "etc/gpulab-lab/proc-driver-nvidia-version").exists()


def test_stage_rejects_an_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(UnknownProfileError, match="unknown nvidia-smi profile 'b300'"):
        stage(tmp_path, "b300")


def test_cli_stage_and_list(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "gpulab.lab.nvidia_smi"]
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, check=True)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == list(PROFILES)
    subprocess.run([*cli, "stage", "--root", str(tmp_path), "--profile", "l40s-595.80"], check=True)
    assert (tmp_path / "etc/gpulab-lab/nvidia-smi.profile").read_text() == "l40s-595.80\n"
    bad = subprocess.run(
        [*cli, "stage", "--root", str(tmp_path), "--profile", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown nvidia-smi profile 'nope'")
    assert "Traceback" not in bad.stderr


# Byte-for-byte replay.


@pytest.mark.parametrize("profile", sorted(COMPLETE))
def test_complete_machine_replays_every_capture(staged: dict[str, Path], profile: str) -> None:
    root, stem = staged[profile], COMPLETE[profile]
    expected = {
        (): NVSMI / "table" / f"{stem}__idle.txt",
        ("-q",): NVSMI / "query-q" / f"{stem}__idle.txt",
        ("-a",): NVSMI / "query-q" / f"{stem}__idle.txt",
        ("-L",): NVSMI / "list-L" / f"{stem}.txt",
        ("--list-gpus",): NVSMI / "list-L" / f"{stem}.txt",
        ("--version",): NVSMI / "version" / f"{stem}.txt",
    }
    for args, fixture in expected.items():
        result = run_smi(root, *args)
        assert (result.returncode, result.stderr) == (0, b""), args
        assert result.stdout == fixture.read_bytes(), args


@pytest.mark.parametrize("profile", sorted(QUERY_ONLY))
def test_query_only_machine_replays_its_captures(staged: dict[str, Path], profile: str) -> None:
    root, stem = staged[profile], QUERY_ONLY[profile]
    result = run_smi(root, "-q")
    assert result.returncode == 0
    assert result.stdout == (NVSMI / "query-q" / f"{stem}.txt").read_bytes()
    table = NVSMI / "table" / f"{stem}.txt"
    result = run_smi(root)
    if table.exists():
        assert (result.returncode, result.stdout) == (0, table.read_bytes())
    else:
        assert (result.returncode, result.stdout) == (255, b"")
        assert result.stderr.decode() == NO_CAPTURE.format(profile)


@pytest.mark.parametrize("profile", sorted(COMPLETE))
def test_query_of_every_field_reproduces_the_capture(staged: dict[str, Path], profile: str) -> None:
    headers, _ = allfields(COMPLETE[profile])
    fields = ",".join(h.split(" [")[0] for h in headers)
    result = run_smi(staged[profile], f"--query-gpu={fields}", "--format=csv")
    assert result.returncode == 0
    assert (
        result.stdout == (NVSMI / "query-gpu-csv" / f"{COMPLETE[profile]}__idle__allfields.csv").read_bytes()
    )


@pytest.mark.parametrize("profile", sorted(XML_ONLY))
def test_xml_only_machine_replays_its_xml_in_every_spelling(staged: dict[str, Path], profile: str) -> None:
    root, stem = staged[profile], XML_ONLY[profile]
    xml = (NVSMI / "query-xml" / f"{stem}.xml").read_bytes()
    for args in (["-q", "-x"], ["-x", "-q"], ["--query", "--xml-format"], ["-a", "-x"]):
        result = run_smi(root, *args)
        assert (result.returncode, result.stdout, result.stderr) == (0, xml, b""), args
    # It has no text, table or CSV capture, so it answers none of them.
    for args in (["-q"], [], ["--query-gpu=index", "--format=csv"], ["-q", "-x", "-i", "0"]):
        result = run_smi(root, *args)
        assert (result.returncode, result.stdout) == (255, b""), args
        assert result.stderr.decode() == NO_CAPTURE.format(profile)


# Column picking.


@pytest.mark.parametrize("profile", sorted(COMPLETE))
def test_query_gpu_picks_columns_as_cuda_check_asks(staged: dict[str, Path], profile: str) -> None:
    headers, rows = allfields(COMPLETE[profile])
    value = {h.split(" [")[0]: v for h, v in zip(headers, rows[0], strict=True)}
    # The fields nvidia_gpu_facts asks for (in its order), plus one with a unit it does not ask for.
    fields = "index,compute_cap,name,memory.total,driver_version,power.draw,pci.bus_id,uuid,mig.mode.current"
    result = run_smi(staged[profile], f"--query-gpu={fields}", "--format=csv,noheader,nounits")
    assert result.returncode == 0
    line = result.stdout.decode()
    assert line.endswith("\n") and line.count("\n") == 1
    got = line.rstrip("\n").split(", ")
    assert got[0] == value["index"] == "0"
    assert got[1] == value["compute_cap"]
    assert got[2] == value["name"]
    assert got[3] + " MiB" == value["memory.total"]
    assert got[4] == value["driver_version"]
    assert got[5] == value["power.draw"] or got[5] + " W" == value["power.draw"]
    assert got[6:] == [value["pci.bus_id"], value["uuid"], value["mig.mode.current"]]


def test_known_compute_capabilities(staged: dict[str, Path]) -> None:
    expected = {
        "h100-590.48.01": "9.0",
        "h200-mig-590.48.01": "9.0",
        "l40s-595.80": "8.9",
        "rtx2080super-610.57.04": "7.5",
    }
    for profile, cap in expected.items():
        result = run_smi(staged[profile], "--query-gpu=compute_cap", "--format=csv,noheader")
        assert result.stdout == f"{cap}\n".encode(), profile


def test_header_keeps_units_with_nounits_and_values_lose_them(staged: dict[str, Path]) -> None:
    root = staged["l40s-595.80"]
    with_units = run_smi(
        root, "--query-gpu=name,memory.total,utilization.gpu,temperature.memory", "--format=csv"
    )
    assert with_units.stdout == (
        b"name, memory.total [MiB], utilization.gpu [%], temperature.memory\n"
        b"NVIDIA L40S, 46068 MiB, 100 %, N/A\n"
    )
    nounits = run_smi(
        root, "--query-gpu=name,memory.total,utilization.gpu,temperature.memory", "--format=csv,nounits"
    )
    assert nounits.stdout == (
        b"name, memory.total [MiB], utilization.gpu [%], temperature.memory\nNVIDIA L40S, 46068, 100, N/A\n"
    )


def test_nounits_keeps_bracketed_values(staged: dict[str, Path]) -> None:
    result = run_smi(
        staged["h100-590.48.01"], "--query-gpu=fan.speed,display_mode", "--format=csv,noheader,nounits"
    )
    assert result.stdout == b"[N/A], [Requested functionality has been deprecated]\n"


@pytest.mark.parametrize("profile", sorted(COMPLETE))
def test_every_field_nounits_matches_the_capture_values(staged: dict[str, Path], profile: str) -> None:
    headers, rows = allfields(COMPLETE[profile])
    fields = [h.split(" [")[0] for h in headers]
    # Reversed order: columns are picked by name, not by position.
    query = ",".join(reversed(fields))
    result = run_smi(staged[profile], f"--query-gpu={query}", "--format=csv,noheader,nounits")
    assert result.returncode == 0
    got = dict(zip(reversed(fields), result.stdout.decode().rstrip("\n").split(", "), strict=True))
    stripped = 0
    for header, field, value in zip(headers, fields, rows[0], strict=True):
        unit = header[len(field) + 2 : -1] if header != field else ""
        if unit and value.endswith(" " + unit):
            assert got[field] + " " + unit == value, field
            stripped += 1
        else:
            assert got[field] == value, field
    assert stripped >= 10


def test_space_separated_options_and_aliases(staged: dict[str, Path]) -> None:
    headers, rows = allfields(COMPLETE["rtx2080super-610.57.04"])
    value = dict(zip(headers, rows[0], strict=True))
    result = run_smi(
        staged["rtx2080super-610.57.04"], "--query-gpu", "gpu_name,gpu_bus_id,kmd_version", "--format", "csv"
    )
    expected = (
        f"name, pci.bus_id, kmd_version\n{value['name']}, {value['pci.bus_id']}, {value['kmd_version']}\n"
    )
    assert result.stdout == expected.encode()
    assert value["kmd_version"] == "610.57.04"


def test_unknown_field_answers_as_nvidia_smi(staged: dict[str, Path]) -> None:
    captured = (NVSMI / "errors" / "invalid-query-field__id.txt").read_bytes()
    result = run_smi(staged["h100-590.48.01"], "--query-gpu=id,name,compute_cap", "--format=csv")
    assert result.returncode == 2
    # nvidia-smi writes it on stdout, then an empty line (CoHDI/composable-resource-operator#37).
    assert result.stdout == captured + b"\n"
    assert result.stderr == b""


def test_field_of_a_newer_driver_is_invalid_on_an_older_one(staged: dict[str, Path]) -> None:
    # kmd_version exists in the 595/610 captures only.
    result = run_smi(staged["h100-590.48.01"], "--query-gpu=kmd_version", "--format=csv")
    assert (result.returncode, result.stdout) == (
        2,
        b'Field "kmd_version" is not a valid field to query.\n\n',
    )


# Honesty: no capture, no answer.


@pytest.mark.parametrize(
    ("profile", "args"),
    [
        ("h100-590.48.01", ["-q", "-x"]),
        ("h100-590.48.01", ["-q", "-d", "MEMORY"]),
        ("h100-590.48.01", ["--query-compute-apps=pid", "--format=csv"]),
        ("h100-590.48.01", ["--query-gpu=name", "--format=json"]),
        ("h100-590.48.01", ["--query-gpu=name"]),
        ("a40x10-550.127.05", ["--query-gpu=compute_cap", "--format=csv,noheader"]),
        ("rtx4090x8-550.127.05", ["-L"]),
        ("h100x8-565.57.01", ["--version"]),
    ],
)
def test_no_capture_is_said_honestly(staged: dict[str, Path], profile: str, args: list[str]) -> None:
    result = run_smi(staged[profile], *args)
    assert result.returncode == 255
    assert result.stdout == b""
    assert result.stderr.decode() == NO_CAPTURE.format(profile)


def test_missing_profile_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / "usr/bin/nvidia-smi")
    result = run_smi(tmp_path)
    assert result.returncode == 255
    assert result.stderr.decode().startswith("gpulab lab stand-in: no profile file ")


def test_switching_the_profile_upgrades_the_driver(tmp_path: Path) -> None:
    stage(tmp_path, "l40s-550.127.05")
    before = run_smi(tmp_path, "-q").stdout
    stage(tmp_path, "l40s-595.80")
    after = run_smi(tmp_path, "-q").stdout
    assert b"Driver Version                            : 550.127.05" in before
    assert b"Driver Version                                         : 595.80" in after


# Error profiles.


@pytest.mark.parametrize(
    ("profile", "fixture", "rc"),
    [
        ("driver-broken", "failed-to-communicate-with-driver.txt", 9),
        ("no-devices", "no-devices-were-found.txt", 6),
        ("gpu-lost", "unable-to-determine-device-handle__gpu-is-lost.txt", 15),
    ],
)
def test_error_profiles_print_the_captured_text_and_code(
    staged: dict[str, Path], profile: str, fixture: str, rc: int
) -> None:
    for args in ([], ["-q"], ["--query-gpu=index,compute_cap", "--format=csv,noheader,nounits"], ["-L"]):
        result = run_smi(staged[profile], *args)
        assert result.returncode == rc
        assert result.stdout == (NVSMI / "errors" / fixture).read_bytes()
        assert result.stderr == b""


def test_driver_mismatch_profile(staged: dict[str, Path]) -> None:
    root = staged["driver-mismatch"]
    transcript = (
        NVSMI / "errors" / "nvml-mismatch-with-proc-version__nvml-580.178_kmod-580.173.02.txt"
    ).read_bytes()
    lines = transcript.splitlines(keepends=True)
    assert lines[0] == b"$ nvidia-smi\n" and lines[3].startswith(b"$ cat /proc/driver/nvidia/version")
    expected = lines[1] + lines[2]
    assert (
        expected
        == b"Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.178\n"
    )
    for args in ([], ["-q"], ["--version"], ["-L"], ["--query-gpu=index,compute_cap", "--format=csv"]):
        result = run_smi(root, *args)
        assert (result.returncode, result.stdout, result.stderr) == (18, expected, b""), args
    proc = (root / "etc/gpulab-lab/proc-driver-nvidia-version").read_bytes()
    assert proc == (FIXTURES_DIR / "proc-driver-nvidia-version/proprietary__580.173.02.txt").read_bytes()
    assert proc == b"".join(lines[4:])  # the same machine's /proc file, as in the transcript
    assert b"Kernel Module  580.173.02 " in proc and b"580.178" not in proc


def test_none_profile_has_no_command(staged: dict[str, Path]) -> None:
    assert not (staged["none"] / "usr/bin/nvidia-smi").exists()
    assert not (staged["none"] / "usr/local/share/gpulab-lab/nvidia-smi/none").exists()


def _system_pythons() -> list[str]:
    """Interpreters of the versions the test hosts have (3.11 on Debian 12, 3.13 on Debian 13) that run."""
    candidates = [shutil.which("python3.11"), shutil.which("python3.13"), "/usr/bin/python3"]
    candidates += [str(p) for p in Path.home().glob(".pyenv/versions/3.1[13]*/bin/python3.1[13]")]
    found: dict[str, str] = {}
    for python in filter(None, candidates):
        probe = subprocess.run(
            [python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() in ("3.11", "3.13"):
            found.setdefault(probe.stdout.strip(), python)
    return sorted(found.values())


def test_script_is_stdlib_only_and_runs_on_the_system_pythons(staged: dict[str, Path]) -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    }
    assert imports <= {"json", "os", "sys", "pathlib"}
    pythons = _system_pythons()
    assert pythons, "no python3.11 or python3.13 found"
    root = staged["h200-mig-590.48.01"]
    env = dict(os.environ, GPULAB_LAB_NVIDIA_SMI_SYSROOT=str(root))
    for python in pythons:
        # -I: isolated mode, no site-packages, so only the standard library is importable.
        for args, fixture in (
            (["--version"], NVSMI / "version" / "h200-mig__590.48.01.txt"),
            (["-L"], NVSMI / "list-L" / "h200-mig__590.48.01.txt"),
        ):
            result = subprocess.run(
                [python, "-I", str(root / "usr/bin/nvidia-smi"), *args],
                env=env,
                capture_output=True,
                check=False,
            )
            assert (result.returncode, result.stderr) == (0, b""), python
            assert result.stdout == fixture.read_bytes(), python
        result = subprocess.run(
            [python, "-I", str(root / "usr/bin/nvidia-smi"), "--query-gpu=mig.mode.current", "--format=csv"],
            env=env,
            capture_output=True,
            check=False,
        )
        assert result.stdout == b"mig.mode.current\nEnabled\n", python
