"""The fact cache: per run by default, one shared jsonfile cache on request, other plugins left to ansible."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gpulab.errors import UsageError
from gpulab.runner import fact_cache
from tests.cli.helpers import run_gpulab

REPO = Path(__file__).resolve().parents[2]


def test_default_is_a_cache_per_run(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20260101T000000Z-abcdef"
    assert fact_cache(run, {}) == {"fact_cache": str(run / "fact_cache"), "fact_cache_type": "jsonfile"}


def test_shared_cache_is_one_private_directory_beside_the_runs(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20260101T000000Z-abcdef"
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "fact_cache").mkdir(mode=0o755)  # made loose by someone else: tightened
    settings = fact_cache(run, {"GPULAB_FACT_CACHE": "shared"})
    shared = tmp_path / "runs" / "fact_cache"
    assert settings == {"fact_cache": str(shared), "fact_cache_type": "jsonfile"}
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700


def test_another_cache_plugin_is_left_to_ansible(tmp_path: Path) -> None:
    environ = {"ANSIBLE_CACHE_PLUGIN": "community.general.redis", "GPULAB_FACT_CACHE": "shared"}
    # not "jsonfile": ansible-runner then sets neither ANSIBLE_CACHE_PLUGIN nor its connection
    assert fact_cache(tmp_path / "r", environ) == {"fact_cache_type": "community.general.redis"}


def test_an_unknown_mode_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="GPULAB_FACT_CACHE is 'redis'"):
        fact_cache(tmp_path / "r", {"GPULAB_FACT_CACHE": "redis"})


def _gathered(run_dir: Path) -> bool:
    for path in (run_dir / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        if event.get("event") == "runner_on_ok" and event["event_data"].get("task") == "Gathering Facts":
            return True
    return False


@pytest.mark.slow
def test_a_shared_cache_spares_the_next_render_its_fact_gathering(tmp_path: Path) -> None:
    env = dict(os.environ, GPULAB_STATE_DIR=str(tmp_path / "runs"), GPULAB_FACT_CACHE="shared")
    env.pop("ANSIBLE_CONFIG", None)
    runs = []
    for _ in range(2):
        proc = run_gpulab("render", "--output", str(tmp_path / "out"), cwd=REPO, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs.append((tmp_path / "runs" / "last").resolve())
    cache = tmp_path / "runs" / "fact_cache"
    assert [p.name for p in cache.iterdir()], "the first render wrote no facts"
    assert _gathered(runs[0]) and not _gathered(runs[1])  # gathering = smart found them cached
