"""The re-run fast path's parts, by themselves: the host_state module's fingerprint and comparison, its
record file, the action plugin's controller files, and dl_env's "as a re-run reports it" filter. The whole
path through the real site.yml is tests/cli/test_fast_path.py."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

from tests.conftest import plugin

action = plugin("action.host_state")
as_unchanged = plugin("filter.dl_env").as_unchanged
host_state = plugin("modules.host_state")


def _record(tmp: Path, patterns: list[str], **extra: Any) -> dict[str, Any]:
    record = {
        "version": host_state.RECORD_VERSION,
        "inputs": "in",
        "driver": "drv",
        "lock_dir": str(tmp / "run"),
        "check_max_age": 3600,
        "patterns": patterns,
        "paths": host_state.fingerprint(patterns),
        "outputs": {},
    }
    return record | extra


def test_a_rewrite_with_the_same_content_a_chmod_and_a_new_link_target_are_all_seen(tmp_path: Path) -> None:
    path = tmp_path / "condarc"
    path.write_text("channels: [conda-forge]\n")
    before = host_state.describe(str(path))
    time.sleep(0.01)
    path.write_text("channels: [conda-forge]\n")
    rewritten = host_state.describe(str(path))
    assert rewritten != before  # same bytes, but written: its times moved
    path.chmod(0o666)
    assert host_state.describe(str(path)) != rewritten
    link = tmp_path / "env"
    link.symlink_to("build-1")
    assert host_state.describe(str(link)).endswith(" -> build-1")
    link.unlink()
    link.symlink_to("build-2")
    assert host_state.describe(str(link)).endswith(" -> build-2")
    assert host_state.describe(str(tmp_path / "none")) == "missing"


def test_drift_is_grouped_and_a_gone_directory_hides_its_contents(tmp_path: Path) -> None:
    builds = tmp_path / "builds"
    for name in ("b1", "b2"):
        (builds / name / "conda-meta").mkdir(parents=True)
        (builds / name / "conda-meta" / "history").write_text("==> 2026 <==\n")
    condarc = tmp_path / ".condarc"
    condarc.write_text("x: 1\n")
    patterns = [str(condarc), f"{builds}/*", f"{builds}/*/conda-meta/history"]
    record = host_state.fingerprint(patterns)
    assert host_state.drifted(record, patterns) == ""

    for entry in sorted((builds / "b2").rglob("*"), reverse=True):
        entry.unlink() if entry.is_file() else entry.rmdir()
    (builds / "b2").rmdir()
    (builds / "b3").mkdir()
    time.sleep(0.01)
    condarc.write_text("x: 2\n")
    drift = host_state.drifted(record, patterns)
    assert drift == f"gone {builds}/b2; new {builds}/b3; changed {condarc}", drift


def test_every_difference_from_the_record_is_a_reason(tmp_path: Path) -> None:
    now = time.time()
    assert host_state.differences(_record(tmp_path, []), "in", "drv", now) == []
    assert host_state.differences(_record(tmp_path, [], version=0), "in", "drv", now) == [
        "the record was written by another gpulab version"
    ]
    (tmp_path / "run" / "lock").mkdir(parents=True)
    old_check = {"stats": {"envs": {"dl": {"checked_at": now - 7200}}}}
    reasons = host_state.differences(_record(tmp_path, [], outputs=old_check), "new", "drv2", now)
    assert reasons == [
        "the inputs changed (role variables, the controller files they name, or gpulab itself)",
        "nvidia-smi reports another driver or other GPUs",
        f"the host lock {tmp_path / 'run' / 'lock'} is held (another run) or was left by one",
        "the MLP check is older than dl_env_check_max_age (3600 s)",
    ]


def test_a_max_age_of_0_checks_on_every_run_as_dl_env_means_it(tmp_path: Path) -> None:
    outputs = {"stats": {"checked_at": time.time() - 1}}
    reasons = host_state.differences(
        _record(tmp_path, [], check_max_age=0, outputs=outputs), "in", "drv", time.time()
    )
    assert reasons == ["the MLP check is older than dl_env_check_max_age (0 s)"]


def test_ages_are_brought_to_now_and_the_oldest_check_found() -> None:
    outputs = {"stats": {"checked_at": 100, "envs": {"a": {"checked_at": 100}, "b": {"checked_at": 40}}}}
    aged = host_state.with_ages(outputs, 1000.0)
    assert aged["stats"]["check_age_s"] == 900 and aged["stats"]["envs"]["b"]["check_age_s"] == 960
    assert host_state.oldest_check(outputs) == 40 and host_state.oldest_check({"x": [1]}) is None


def test_the_record_is_root_only_written_once_and_not_in_check_mode(tmp_path: Path) -> None:
    path = tmp_path / "var-lib-gpulab" / "state.json"
    record = {"version": 1, "inputs": "a", "recorded_at": 1.0}
    assert host_state.write_record(str(path), record, check_mode=True) is True and not path.exists()
    assert host_state.write_record(str(path), record, check_mode=False) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert host_state.write_record(str(path), record | {"recorded_at": 2.0}, check_mode=False) is False
    assert json.loads(path.read_text())["recorded_at"] == 1.0
    path.write_text("{broken")
    assert host_state.read_record(str(path))[0] is None
    assert host_state.write_record(str(path), record, check_mode=False) is True


def test_the_inputs_cover_the_controller_files_a_value_names(tmp_path: Path) -> None:
    spec = tmp_path / "files" / "env.yml"
    spec.parent.mkdir()
    spec.write_text("name: a\n")
    values = {
        "dl_env_base_file": "env.yml",
        "dl_env_envs": [{"template": str(spec)}],
        "dl_env_name": "gpulab",
    }
    found = action.named_files(values, [str(tmp_path / "files")])
    assert found == {str(spec): found[str(spec)]} and len(found[str(spec)]) == 64
    assert action.named_files({"x": "not\na path"}, [str(tmp_path)]) == {}
    assert len(action.content_digest()) == 64


def test_a_full_runs_report_becomes_what_a_rerun_that_changes_nothing_reports() -> None:
    sent = {
        "env_action": "created",
        "checked_at": 5,
        "pin_changes": [{"name": "pytorch"}],
        "recheck_reason": "this run built it",
        "check_reused": False,
        "disk_total_bytes": 10,
        "scheduler": {"drained": True, "resumed": True},
        "envs": {
            "dl": {"env_action": "updated", "checked_at": 5, "check_reused": False, "passed": True},
            "old": {"state": "absent", "env_action": "removed", "removed": ["/x"], "kept": []},
            "other": {"disk_bytes": 3},
        },
    }
    again = as_unchanged(sent)
    assert "scheduler" not in again and again["disk_total_bytes"] == 10
    assert again["env_action"] == "unchanged" and again["check_reused"] is True
    assert again["pin_changes"] == [] and again["recheck_reason"] == ""
    assert again["envs"]["dl"] == {
        "env_action": "unchanged",
        "checked_at": 5,
        "check_reused": True,
        "passed": True,
        "pin_changes": [],
        "recheck_reason": "",
    }
    assert again["envs"]["old"]["env_action"] == "absent" and again["envs"]["old"]["removed"] == []
    assert again["envs"]["other"] == {"disk_bytes": 3}
