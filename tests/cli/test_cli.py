"""The gpulab command: option handling in-process, and real runs through ansible-runner against the
test project (GPULAB_PROJECT_DIR=tests/cli/fixtures/project) on local hosts, a failing host and an
unreachable one (ssh to 127.0.0.1:1)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from gpulab import cli
from gpulab.errors import ExitCode, ParseError, UsageError
from gpulab.runner import IDENT_RE
from tests.cli.helpers import PROJECT, project_env, run_gpulab

MIXED = PROJECT / "inventory" / "mixed.yml"
HEALTHY = PROJECT / "inventory" / "healthy.yml"


# -e parsing ------------------------------------------------------------------------------------------


def test_extravars_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "v.yml").write_text("a: 1\nb: [x]\n")
    merged = cli.parse_extravars(["a=0", "@v.yml", "c=x=y", '{"d": true}', "a=last"], tmp_path)
    assert merged == {"a": "last", "b": ["x"], "c": "x=y", "d": True}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("novalue", UsageError),
        ("1abc=x", UsageError),
        ("@missing.yml", UsageError),
        ("{a: [", ParseError),
        ("{1: 2}", UsageError),
    ],
)
def test_extravars_errors(tmp_path: Path, value: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        cli.parse_extravars([value], tmp_path)


def test_extravars_file_must_be_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "list.yml").write_text("- a\n")
    (tmp_path / "bad.yml").write_text("a: [\n")
    with pytest.raises(ParseError, match="mapping"):
        cli.parse_extravars(["@list.yml"], tmp_path)
    with pytest.raises(ParseError, match="not valid YAML"):
        cli.parse_extravars(["@bad.yml"], tmp_path)


# Parser and plugins ----------------------------------------------------------------------------------


def test_usage_errors_are_one_line_and_exit_5(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["provision", "--bogus"]) == ExitCode.USAGE_ERROR
    assert cli.main([]) == ExitCode.USAGE_ERROR
    assert cli.main(["provision", "--forks", "x"]) == ExitCode.USAGE_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("gpulab: error: ") for line in err)
    assert "Traceback" not in "".join(err)


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("provision", "check", "render", "report", "exit codes", "99", "unreachable"):
        assert word in out


def test_render_has_output_and_no_check_option() -> None:
    args = cli.build_parser().parse_args(["render", "-o", "out"])
    assert args.output == Path("out") and not hasattr(args, "check")


def test_register_plugin_adds_a_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("gpulab_test_plugin")

    def register(subparsers: Any) -> None:
        lab = subparsers.add_parser("lab", help="test lab")
        lab.set_defaults(func=lambda args: 7)

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpulab_test_plugin", module)
    monkeypatch.setattr(cli, "PLUGIN_MODULES", ("gpulab_test_plugin", "gpulab_no_such_plugin"))
    assert cli.main(["lab"]) == 7


def test_register_plugin_skips_a_missing_module() -> None:
    assert cli.register_plugin("gpulab_no_such_plugin", argparse.ArgumentParser().add_subparsers()) is False


# Real runs -------------------------------------------------------------------------------------------


def gpulab(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_gpulab(*args, cwd=tmp_path, env=project_env(tmp_path), timeout=timeout)


def last_report(tmp_path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((tmp_path / "runs" / "last" / "report.json").read_text())
    return report


@pytest.mark.slow
def test_provision_mixed_hosts(tmp_path: Path) -> None:
    proc = gpulab(tmp_path, "provision", "-i", str(MIXED), "--report", "copy.json")
    assert proc.returncode == ExitCode.HOST_UNREACHABLE, proc.stderr
    report = last_report(tmp_path)
    assert report == json.loads((tmp_path / "copy.json").read_text())
    assert IDENT_RE.match(report["ident"]) and report["command"] == "provision"
    assert report["status"] == "unreachable" and report["exit_code"] == 3
    statuses = {name: host["status"] for name, host in report["hosts"].items()}
    assert statuses == {"good1": "ok", "good2": "ok", "bad": "failed", "down": "unreachable"}
    assert report["hosts"]["good2"]["env_action"] == "updated"
    assert report["hosts"]["good1"]["mlp_check"]["backend"] == "cuda"
    assert report["hosts"]["good1"]["counts"]["changed"] == 1
    assert report["set_stats"]["gpulab"].keys() == {"good1", "good2"}
    # no --forks: one fork per targeted host (4 here, below any controller bound), given to ansible-playbook
    assert report["options"]["forks"] == 4
    argv = json.loads((Path(report["artifacts"]) / "command").read_text())["command"]
    assert argv[argv.index("--forks") + 1] == "4"
    # the summary table on stdout, plain progress lines on stderr (not a TTY)
    assert "upgraded from 550.54.15" in proc.stdout
    assert "FAILED: [bad] Fail where the inventory asks for it" in proc.stderr
    # artifacts kept: the runner's events and stats
    run_dir = Path(report["artifacts"])
    assert run_dir.parent == tmp_path / "runs" and (run_dir / "job_events").is_dir()
    assert any((run_dir / "job_events").glob("*.json"))
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_provision_failing_host_among_healthy_ones(tmp_path: Path) -> None:
    proc = gpulab(tmp_path, "provision", "-i", str(MIXED), "--limit", "good*,bad", "-f", "2")
    assert proc.returncode == ExitCode.HOST_FAILED, proc.stderr
    report = last_report(tmp_path)
    assert report["status"] == "failed" and set(report["hosts"]) == {"good1", "good2", "bad"}
    assert report["options"]["limit"] == "good*,bad" and report["options"]["forks"] == 2


def test_reverify_asks_dl_env_to_run_the_mlp_check_again(tmp_path: Path) -> None:
    kept: dict[tuple[str, ...], set[Any]] = {}
    for args in ((), ("--reverify",)):
        proc = gpulab(tmp_path, "provision", "-i", str(HEALTHY), *args)
        assert proc.returncode == 0, proc.stderr
        report = last_report(tmp_path)
        kept[args] = {h["mlp_check"]["check_reused"] for h in report["hosts"].values()}
        assert report["options"]["reverify"] is bool(args)
    assert kept == {(): {True}, ("--reverify",): {False}}


@pytest.mark.slow
def test_provision_healthy_then_report_and_retention(tmp_path: Path) -> None:
    first = gpulab(tmp_path, "provision", "-i", str(HEALTHY), "-e", "secret=hunter2")
    assert first.returncode == 0, first.stderr
    kept = last_report(tmp_path)["ident"]
    proc = gpulab(tmp_path, "provision", "-i", str(HEALTHY), "--keep-runs", "1", "-e", "secret=hunter2")
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if IDENT_RE.match(p.name))
    assert len(runs) == 1 and runs[0] != kept and os.readlink(tmp_path / "runs" / "last") == runs[0]
    report_text = (tmp_path / "runs" / "last" / "report.json").read_text()
    assert "hunter2" not in report_text and '"secret"' in report_text  # keys only, values may be secrets
    again = gpulab(tmp_path, "report")
    assert again.returncode == 0 and again.stdout.splitlines()[0].startswith(
        f"gpulab provision {runs[-1]}: ok"
    )
    by_name = gpulab(tmp_path, "report", runs[0][:20], "--json")
    assert json.loads(by_name.stdout)["ident"] == runs[0]
    gone = gpulab(tmp_path, "report", kept)
    assert gone.returncode == ExitCode.USAGE_ERROR and "no run" in gone.stderr


@pytest.mark.slow
def test_check_and_render(tmp_path: Path) -> None:
    proc = gpulab(tmp_path, "check", "-i", str(HEALTHY), "--check")
    assert proc.returncode == 0, proc.stderr
    assert last_report(tmp_path)["options"]["check"] is True
    proc = gpulab(tmp_path, "render", "-i", str(HEALTHY), "--limit", "good1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rendered" / "good1" / "environment.yml").is_file()
    assert last_report(tmp_path)["options"]["extravars_keys"] == [
        "dl_env_render_dest_controller",
        "dl_env_render_only",
    ]
    assert not (tmp_path / "rendered" / "good2").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "nope.yml"], "inventory"),
        (["-i", str(MIXED), "-e", "oops"], "-e 'oops'"),
        (["-i", str(MIXED), "--limit", "nosuch"], "--limit 'nosuch' matches no host"),
        (["-i", str(MIXED), "-e", "@missing.yml"], "no such file"),
        (["-i", "broken.yml"], "does not parse"),
        (["-i", "vars.yml", "-e", "@broken.yml"], "not valid YAML"),
    ],
)
def test_user_mistakes_exit_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "broken.yml").write_text("all:\n  hosts: [\n")
    (tmp_path / "vars.yml").write_text("all:\n  hosts:\n    h1:\n")
    proc = gpulab(tmp_path, "provision", *args)
    expected = ExitCode.PARSE_ERROR if "broken.yml" in " ".join(args) else ExitCode.USAGE_ERROR
    assert proc.returncode == expected, proc.stderr
    assert (
        proc.stderr.count("\n") == 1 and message in proc.stderr and proc.stderr.startswith("gpulab: error:")
    )
    assert not (tmp_path / "runs").exists()  # nothing started


def test_report_without_runs_is_a_usage_error(tmp_path: Path) -> None:
    proc = gpulab(tmp_path, "report")
    assert proc.returncode == ExitCode.USAGE_ERROR and "no finished run" in proc.stderr


def _read(path: Path) -> str:
    """An event file's text; "" when ansible-runner renamed it (`-partial.json`) while we looked."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_writes_the_report(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpulab",
            "provision",
            "-i",
            str(HEALTHY),
            "-e",
            "test_sleep=60",
            "--stop-timeout",
            "1",
        ],
        cwd=tmp_path,
        env=project_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = tmp_path / "runs"
    deadline = time.monotonic() + 60
    # wait until both hosts are in the sleep task (its runner_on_start events are on disk)
    while time.monotonic() < deadline:
        started = [p for p in events.glob("*/job_events/*.json") if "Wait when asked" in _read(p)]
        if len(started) >= 3:  # the task start + one runner_on_start per host
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    begun = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - begun < 15, "cancel took too long"
    assert proc.returncode == ExitCode.INTERRUPTED, err
    report = last_report(tmp_path)
    assert report["status"] == "interrupted" and report["runner_status"] == "canceled"
    assert {h["last_task"] for h in report["hosts"].values()} == {"Wait when asked (Ctrl-C tests)"}
    assert "interrupted" in out.splitlines()[0] and "Traceback" not in err
    # this project has no checkpoints: killed after --stop-timeout; it has no cleanup.yml either, and says so
    assert report["interruption"]["escalated_by"] == "timeout"
    assert report["interruption"]["cleanup"]["status"] == "missing"


def test_docs_exit_code_table_is_the_one_in_errors() -> None:
    """docs/cli.md's table says exactly what gpulab.errors.MEANINGS (and so `gpulab --help`) says."""
    from gpulab.errors import MEANINGS

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.MULTILINE))
    assert rows == {str(int(code)): meaning for code, meaning in MEANINGS.items()}
    assert all(f"  {int(code):<4} {meaning}" in cli.EXIT_CODES_HELP for code, meaning in MEANINGS.items())
