"""runner.py: the ansible-runner kwargs, run directories, retention and the `last` pointer."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpulab.errors import ParseError, UsageError
from gpulab.runner import (
    IDENT_RE,
    RunRequest,
    build_kwargs,
    inventory_hosts,
    new_ident,
    point_last,
    project_dir,
    prune_runs,
    resolve_run,
    state_dir,
)
from tests.cli.helpers import PROJECT


def _request(**kw: object) -> RunRequest:
    base: dict[str, object] = {
        "playbook": PROJECT / "playbooks" / "site.yml",
        "inventories": (PROJECT / "inventory" / "mixed.yml",),
    }
    base.update(kw)
    return RunRequest(**base)  # type: ignore[arg-type]


def test_kwargs_follow_the_house_rules(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "20260101T000000Z-abcdef"
    kwargs = build_kwargs(
        _request(
            limit="good*",
            tags=("a", "b"),
            skip_tags=("c",),
            forks=3,
            check=True,
            diff=True,
            verbosity=2,
        ),
        PROJECT,
        run_dir,
        run_dir.name,
        {"PATH": "/usr/bin"},
        ["--extra-vars=@/r/env/extravars-00.json"],
    )
    assert kwargs["private_data_dir"] == str(run_dir)
    assert Path(kwargs["artifact_dir"]) / kwargs["ident"] == run_dir  # artifacts land in the run dir
    assert kwargs["project_dir"] == str(PROJECT)
    assert Path(kwargs["playbook"]).is_absolute() and Path(kwargs["inventory"][0]).is_absolute()
    assert kwargs["suppress_env_files"] is True and kwargs["quiet"] is True
    assert kwargs["fact_cache"] == str(run_dir / "fact_cache") and kwargs["fact_cache_type"] == "jsonfile"
    assert (kwargs["limit"], kwargs["tags"], kwargs["skip_tags"], kwargs["forks"]) == ("good*", "a,b", "c", 3)
    assert kwargs["cmdline"] == "--check --diff --extra-vars=@/r/env/extravars-00.json"
    # extravars never as a keyword: ansible-runner would put their values on the command line
    assert "extravars" not in kwargs and kwargs["verbosity"] == 2
    env = kwargs["envvars"]
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"  # explicit: the runner would otherwise say False
    assert env["ANSIBLE_CONFIG"] == str(PROJECT / "ansible.cfg")
    assert env["ANSIBLE_ROLES_PATH"] == str(PROJECT / "roles")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_kwargs_respect_the_users_environment(tmp_path: Path) -> None:
    environ = {
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_CONFIG": "/etc/my.cfg",
        "PATH": f"{Path(sys.executable).parent}:/usr/bin",
    }
    kwargs = build_kwargs(_request(), PROJECT, tmp_path / "r", "r", environ)
    env = kwargs["envvars"]
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert env["ANSIBLE_CONFIG"] == "/etc/my.cfg"
    assert "PATH" not in env  # already right
    assert "cmdline" not in kwargs and "limit" not in kwargs and "tags" not in kwargs


def test_ident_format_sorts_by_time() -> None:
    a = new_ident(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC))
    b = new_ident(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert IDENT_RE.match(a) and a.startswith("20260101T000000Z-") and a < b


def test_project_and_state_dir_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPULAB_PROJECT_DIR", raising=False)
    monkeypatch.delenv("GPULAB_STATE_DIR", raising=False)
    repo = project_dir()
    assert (repo / "pyproject.toml").is_file() and state_dir(repo) == repo / "runs"
    monkeypatch.setenv("GPULAB_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("GPULAB_STATE_DIR", str(tmp_path / "st"))
    assert project_dir() == PROJECT and state_dir(PROJECT) == tmp_path / "st"
    monkeypatch.setenv("GPULAB_PROJECT_DIR", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="GPULAB_PROJECT_DIR"):
        project_dir()


def _make_runs(states: Path, n: int) -> list[str]:
    idents = [f"2026010{1 + i // 10}T0000{i % 10}0Z-abcde{i % 10}" for i in range(n)]
    for ident in idents:
        (states / ident).mkdir(parents=True)
    return idents


def test_prune_keeps_newest_and_leaves_other_entries(tmp_path: Path) -> None:
    idents = _make_runs(tmp_path, 5)
    point_last(tmp_path, idents[-1])
    (tmp_path / "notes").mkdir()
    removed = prune_runs(tmp_path, 2)
    assert [p.name for p in removed] == idents[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*idents[3:], "last", "notes"])
    assert prune_runs(tmp_path, 0) == []  # 0 keeps everything


def test_prune_never_removes_the_protected_run(tmp_path: Path) -> None:
    idents = _make_runs(tmp_path, 3)
    prune_runs(tmp_path, 1, protect=idents[0])
    assert (tmp_path / idents[0]).is_dir() and (tmp_path / idents[2]).is_dir()
    assert not (tmp_path / idents[1]).exists()


def test_resolve_run_last_prefix_and_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no finished run"):
        resolve_run(tmp_path, None)
    idents = _make_runs(tmp_path, 3)
    point_last(tmp_path, idents[1])
    assert resolve_run(tmp_path, None) == (tmp_path / idents[1]).resolve()
    assert resolve_run(tmp_path, "last").name == idents[1]
    assert resolve_run(tmp_path, idents[2]) == tmp_path / idents[2]
    assert resolve_run(tmp_path, idents[2][:20]) == tmp_path / idents[2]
    with pytest.raises(UsageError, match="ambiguous"):
        resolve_run(tmp_path, "2026")
    with pytest.raises(UsageError, match="no run"):
        resolve_run(tmp_path, "1999")


def test_point_last_replaces_the_link(tmp_path: Path) -> None:
    idents = _make_runs(tmp_path, 2)
    point_last(tmp_path, idents[0])
    point_last(tmp_path, idents[1])
    assert os.readlink(tmp_path / "last") == idents[1]


def test_inventory_hosts_uses_ansibles_patterns() -> None:
    inv = [PROJECT / "inventory" / "mixed.yml"]
    assert sorted(inventory_hosts(inv)) == ["bad", "down", "good1", "good2"]
    assert sorted(inventory_hosts(inv, "good*")) == ["good1", "good2"]
    assert sorted(inventory_hosts(inv, "all:!down")) == ["bad", "good1", "good2"]
    with pytest.raises(UsageError, match="matches no host"):
        inventory_hosts(inv, "nosuch")


def test_inventory_that_does_not_parse_or_is_empty(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts: [\n")
    with pytest.raises(ParseError, match="does not parse"):
        inventory_hosts([broken])
    empty = tmp_path / "empty.yml"
    empty.write_text("all:\n  children:\n    gpu: {}\n")
    with pytest.raises(UsageError, match="has no hosts"):
        inventory_hosts([empty])


def test_forks_are_sized_from_the_hosts_and_bounded_by_the_controller() -> None:
    from gpulab.runner import FORKS_MAX, FORKS_PER_CPU, sized_forks

    cpus = len(os.sched_getaffinity(0))
    assert sized_forks(1, {}) == 1  # never more processes than hosts
    assert sized_forks(3, {}) == min(3, FORKS_PER_CPU * cpus)
    many = sized_forks(100_000, {})
    assert many is not None and 1 <= many <= min(FORKS_PER_CPU * cpus, FORKS_MAX)
    assert sized_forks(0, {}) == 1
    # the user's own setting wins: ansible reads ANSIBLE_FORKS itself
    assert sized_forks(50, {"ANSIBLE_FORKS": "7"}) is None
