"""plugins/modules/dl_env_builds.py: which builds are gpulab's, never the live one or one in use,
disk use with hard links counted once, and when root may run a build's python. On real trees in tmp."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ._load import REPO, dl_env_filters


def _module() -> ModuleType:
    name = "gpulab_test_dl_env_builds"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "plugins" / "modules" / "dl_env_builds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


B = _module()
D1 = "a" * 12
D2 = "b" * 12
D3 = "c" * 12


def make_build(
    builds: Path,
    dirname: str,
    env: str | None,
    digest: str,
    complete: bool = True,
    legacy: bool = False,
    created: float | None = None,
) -> Path:
    """A build directory as the role leaves it: marker (or only the recorded digest, `legacy`)."""
    build = builds / dirname
    (build / "conda-meta").mkdir(parents=True)
    (build / "bin").mkdir()
    python = build / "bin" / "python"
    python.write_text("#!/bin/sh\n", encoding="utf-8")
    python.chmod(0o755)
    if complete or legacy:
        (build / B.DIGEST_FILE).write_text(digest + "\n", encoding="utf-8")
    if not legacy and env is not None:
        marker = {
            "env": env,
            "digest": digest,
            "complete": complete,
            "run_id": "r1",
            "created_epoch": created if created is not None else time.time(),
        }
        (build / B.MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return build


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    envs = tmp_path / "prefix" / "envs"
    builds = envs / ".gpulab"
    builds.mkdir(parents=True)
    return envs, builds


def link(envs: Path, name: str, build: Path) -> None:
    (envs / name).symlink_to(build)


# -- whose build ------------------------------------------------------------------------------------
def test_only_builds_marked_for_that_env_or_adopted_by_their_digest_belong_to_it(
    tree: tuple[Path, Path],
) -> None:
    _, builds = tree
    dl = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    dl_cpu = make_build(builds, f"dl-cpu-{D2}", "dl-cpu", D2 * 5)
    legacy = make_build(builds, f"dl-{D3}", None, D3 + "0" * 52, legacy=True)
    wrong_digest = make_build(builds, f"dl-{'d' * 12}", None, D1 * 5, legacy=True)
    adopted = make_build(builds, "dl-adopted", None, "", complete=False)
    assert B.owner_of(dl, "dl") == "marker"
    assert B.owner_of(dl_cpu, "dl") == "" and B.owner_of(dl_cpu, "dl-cpu") == "marker"
    assert B.owner_of(legacy, "dl") == "digest"
    assert B.owner_of(wrong_digest, "dl") == "" and B.owner_of(adopted, "dl") == ""
    assert B.builds_of(builds, "dl") == sorted([dl, legacy])


@pytest.mark.parametrize("keep", [0, 1])
@pytest.mark.parametrize("public_form", ["plain", "trailing-slash", "symlinked-prefix"])
def test_prune_never_removes_the_live_build_another_env_or_adopted(
    tree: tuple[Path, Path], keep: int, public_form: str, tmp_path: Path
) -> None:
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5, created=100)
    older = make_build(builds, f"dl-{D2}", "dl", D2 * 5, created=50)
    oldest = make_build(builds, f"dl-{D3}", "dl", D3 * 5, created=10)
    other = make_build(builds, f"dl-cpu-{D2}", "dl-cpu", D2 * 5, created=1)
    adopted = make_build(builds, "dl-adopted", None, "", complete=False)
    unfinished = make_build(builds, f"dl-{'e' * 12}", "dl", "e" * 64, complete=False, created=1)
    link(envs, "dl", live)
    envs_arg = envs
    if public_form == "trailing-slash":
        envs_arg = Path(str(envs) + "/")
    elif public_form == "symlinked-prefix":
        (tmp_path / "alias").symlink_to(tmp_path / "prefix")
        envs_arg = tmp_path / "alias" / "envs"
    result = B.prune(envs_arg, envs_arg / ".gpulab", "dl", keep)
    assert live.is_dir() and other.is_dir() and adopted.is_dir() and unfinished.is_dir()
    assert older.is_dir() == (keep >= 1)
    assert not oldest.exists()
    assert len(result["removed"]) == 2 - keep and result["changed"]
    assert B.prune(envs_arg, envs_arg / ".gpulab", "dl", keep)["changed"] is False


def test_prune_adopts_builds_made_before_markers_instead_of_deleting_them(tree: tuple[Path, Path]) -> None:
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    legacy = make_build(builds, f"dl-{D2}", None, D2 * 5, legacy=True)
    link(envs, "dl", live)
    result = B.prune(envs, builds, "dl", 1)
    assert result["adopted"] == [str(legacy)] and result["removed"] == []
    marker = json.loads((legacy / B.MARKER).read_text(encoding="utf-8"))
    assert marker["env"] == "dl" and marker["digest"] == D2 * 5 and marker["complete"] is True


def test_check_mode_prune_changes_nothing(tree: tuple[Path, Path]) -> None:
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    old = make_build(builds, f"dl-{D2}", "dl", D2 * 5)
    link(envs, "dl", live)
    result = B.prune(envs, builds, "dl", 0, check=True)
    assert result["removed"] == [str(old)] and old.is_dir()


# -- in use -----------------------------------------------------------------------------------------
@pytest.fixture
def sleeper(tree: tuple[Path, Path]) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    _, builds = tree
    build = make_build(builds, f"dl-{D2}", "dl", D2 * 5, created=1)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=build)
    yield proc, build
    proc.kill()
    proc.wait()


def test_a_build_used_by_a_process_is_found_with_its_pid_and_command(
    sleeper: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, build = sleeper
    users = B.processes_using([build])
    assert [u["pid"] for u in users] == [proc.pid]
    assert "time.sleep(60)" in users[0]["command"]
    assert B.processes_using([build.parent / "nothing-here"]) == []


def test_prune_and_absent_keep_a_build_in_use_and_say_who_uses_it(
    tree: tuple[Path, Path], sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    envs, builds = tree
    proc, used = sleeper
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5, created=100)
    link(envs, "dl", live)
    result = B.prune(envs, builds, "dl", 0)
    assert result["removed"] == [] and used.is_dir()
    assert f"pid {proc.pid}" in result["skipped"][0]
    with pytest.raises(B.BuildError, match=rf"environment dl is in use by pid {proc.pid} \(.*sleep"):
        B.remove_env(envs, builds, "dl")
    assert (envs / "dl").is_symlink() and live.is_dir()


# -- absent -----------------------------------------------------------------------------------------
def test_absent_removes_the_name_and_its_builds_and_keeps_others_and_adopted(tree: tuple[Path, Path]) -> None:
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    old = make_build(builds, f"dl-{D2}", "dl", D2 * 5)
    other = make_build(builds, f"dl-cpu-{D1}", "dl-cpu", D1 * 5)
    adopted = make_build(builds, "dl-adopted", None, "", complete=False)
    link(envs, "dl", live)
    link(envs, "dl-cpu", other)
    result = B.remove_env(envs, builds, "dl")
    assert not os.path.lexists(envs / "dl") and not live.exists() and not old.exists()
    assert other.is_dir() and (envs / "dl-cpu").is_symlink() and adopted.is_dir()
    assert result["kept"] == [str(adopted)] and result["changed"]
    assert B.remove_env(envs, builds, "dl")["changed"] is False


def test_absent_refuses_an_env_gpulab_did_not_make(tree: tuple[Path, Path], tmp_path: Path) -> None:
    envs, builds = tree
    (envs / "mine" / "conda-meta").mkdir(parents=True)
    with pytest.raises(B.BuildError, match="gpulab did not create"):
        B.remove_env(envs, builds, "mine")
    assert (envs / "mine").is_dir()
    elsewhere = make_build(tmp_path, "somewhere", None, "", complete=False)
    link(envs, "theirs", elsewhere)
    with pytest.raises(B.BuildError, match="not a gpulab build of theirs"):
        B.remove_env(envs, builds, "theirs")
    assert (envs / "theirs").is_symlink() and elsewhere.is_dir()


# -- cleanup after an interrupted run ---------------------------------------------------------------
def test_clean_removes_half_made_builds_and_temporary_links_only(tree: tuple[Path, Path]) -> None:
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    kept = make_build(builds, f"dl-{D2}", "dl", D2 * 5)
    unfinished = make_build(builds, f"dl-{D3}", "dl", D3 * 5, complete=False)
    no_marker = builds / f"dl-{'f' * 12}"
    (no_marker / "conda-meta").mkdir(parents=True)
    adopted = make_build(builds, "dl-adopted", None, "", complete=False)
    link(envs, "dl", live)
    (envs / ".dl.gpulab-next").symlink_to(unfinished)
    result = B.clean(envs, builds)
    assert sorted(result["removed"]) == sorted(
        [str(envs / ".dl.gpulab-next"), str(unfinished), str(no_marker)]
    )
    assert (
        not unfinished.exists() and not no_marker.exists() and not os.path.lexists(envs / ".dl.gpulab-next")
    )
    assert live.is_dir() and kept.is_dir() and adopted.is_dir()
    assert B.clean(envs, builds)["changed"] is False


# -- disk use ---------------------------------------------------------------------------------------
def _file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_disk_use_counts_hard_links_once_per_env_and_in_total(tmp_path: Path) -> None:
    pkgs = tmp_path / "pkgs"
    shared = _file(pkgs / "numpy" / "core.so", 256 * 1024)
    one, two = tmp_path / "one", tmp_path / "two"
    _file(one / "own.bin", 64 * 1024)
    _file(two / "own.bin", 128 * 1024)
    os.link(shared, one / "core.so")
    os.link(shared, one / "core-again.so")  # twice in one env: still one file on disk
    os.link(shared, two / "core.so")
    usage = B.disk_usage({"one": [one], "two": [two]})
    alone = B.disk_usage(
        {
            "shared": [pkgs / "numpy" / "core.so"],
            "one-own": [one / "own.bin"],
            "two-own": [two / "own.bin"],
            "one-dir": [],
            "two-dir": [],
        }
    )
    size_shared = alone["envs"]["shared"]["bytes"]
    own_one, own_two = alone["envs"]["one-own"]["bytes"], alone["envs"]["two-own"]["bytes"]
    assert size_shared >= 256 * 1024 and own_one >= 64 * 1024 and own_two >= 128 * 1024
    dirs_one = usage["envs"]["one"]["bytes"] - size_shared - own_one
    dirs_two = usage["envs"]["two"]["bytes"] - size_shared - own_two
    assert 0 <= dirs_one < 64 * 1024 and 0 <= dirs_two < 64 * 1024  # the directory entries only
    # what removing an env frees: not the file the pkgs cache and the other env link too
    assert usage["envs"]["one"]["exclusive_bytes"] == usage["envs"]["one"]["bytes"] - size_shared
    assert usage["envs"]["two"]["exclusive_bytes"] == usage["envs"]["two"]["bytes"] - size_shared
    assert usage["total_bytes"] == usage["envs"]["one"]["bytes"] + usage["envs"]["two"]["bytes"] - size_shared


def test_disk_use_counts_a_file_linked_only_inside_the_env_as_exclusive(tmp_path: Path) -> None:
    env = tmp_path / "env"
    big = _file(env / "a.bin", 200 * 1024)
    os.link(big, env / "b.bin")
    usage = B.disk_usage({"env": [env]})
    assert usage["envs"]["env"]["exclusive_bytes"] == usage["envs"]["env"]["bytes"] == usage["total_bytes"]
    assert usage["total_bytes"] < 2 * 200 * 1024


# -- trust before running a build's python ----------------------------------------------------------
@pytest.fixture
def live_env(tree: tuple[Path, Path]) -> tuple[Path, Path, Path]:
    envs, builds = tree
    for path in [envs.parent.parent, envs.parent, envs, builds]:
        path.chmod(0o755)
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    for path in [live, live / "bin", live / "conda-meta"]:
        path.chmod(0o755)
    (live / "bin" / "python3.11").write_text("#!/bin/sh\n", encoding="utf-8")
    (live / "bin" / "python3.11").chmod(0o755)
    (live / "bin" / "python").unlink()
    (live / "bin" / "python").symlink_to("python3.11")
    link(envs, "dl", live)
    return envs, builds, live


def test_trusted_python_is_the_real_path_of_a_safe_build(live_env: tuple[Path, Path, Path]) -> None:
    envs, _, live = live_env
    assert B.trusted_python(envs / "dl") == live / "bin" / "python3.11"


def test_a_group_writable_build_or_python_is_not_run(live_env: tuple[Path, Path, Path]) -> None:
    envs, _, live = live_env
    (live / "bin").chmod(0o775)
    with pytest.raises(B.BuildError, match=r"bin is writable by group/others \(mode 0775\)"):
        B.trusted_python(envs / "dl")
    (live / "bin").chmod(0o755)
    (live / "bin" / "python3.11").chmod(0o757)
    with pytest.raises(B.BuildError, match=r"python3\.11 is writable by group/others"):
        B.trusted_python(envs / "dl")


def test_a_group_writable_envs_dir_is_refused_unless_sticky(live_env: tuple[Path, Path, Path]) -> None:
    envs, _, live = live_env
    envs.chmod(0o2775)
    with pytest.raises(B.BuildError, match="envs is writable by group/others"):
        B.trusted_python(envs / "dl")
    envs.chmod(0o3775)
    assert B.trusted_python(envs / "dl") == live / "bin" / "python3.11"


def test_a_swapped_symlink_to_someone_elses_env_is_not_run(
    live_env: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conda-group member points envs/dl at their own env (files they own). As root the test gives
    that env to another uid; as a normal user it is the test's own files and the check's euid is
    another one: either way the owner is neither root nor the user running the check."""
    envs, _, _ = live_env
    theirs = make_build(tmp_path, "mallory-env", "dl", D1 * 5)  # even a forged marker does not help
    (envs / "dl").unlink()
    link(envs, "dl", theirs)
    owner = 65534 if os.geteuid() == 0 else os.geteuid()
    if os.geteuid() == 0:
        for path in [theirs, *theirs.rglob("*")]:
            os.lchown(path, owner, owner)
    else:
        monkeypatch.setattr(B.os, "geteuid", lambda: owner + 1)
    with pytest.raises(B.BuildError, match=f"mallory-env is owned by uid {owner}, not by root"):
        B.trusted_python(envs / "dl")


def test_a_venv_style_python_is_run_when_it_and_its_directories_are_safe(
    live_env: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    envs, _, live = live_env
    system = tmp_path / "usr" / "bin"
    system.mkdir(parents=True)
    for path in [tmp_path / "usr", system]:
        path.chmod(0o755)
    (system / "python3").write_text("#!/bin/sh\n", encoding="utf-8")
    (system / "python3").chmod(0o755)
    (live / "bin" / "python").unlink()
    (live / "bin" / "python").symlink_to(system / "python3")
    assert B.trusted_python(envs / "dl") == system / "python3"
    system.chmod(0o777)
    with pytest.raises(B.BuildError, match=r"usr/bin is writable by group/others \(mode 0777\)"):
        B.trusted_python(envs / "dl")


def test_a_planted_package_place_anywhere_in_the_build_is_refused(live_env: tuple[Path, Path, Path]) -> None:
    envs, _, live = live_env
    site = live / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True, mode=0o755)
    (site / "numpy").mkdir(mode=0o755)
    (live / "lib").chmod(0o755)
    (live / "lib" / "python3.11").chmod(0o755)
    site.chmod(0o755)
    assert B.trusted_python(envs / "dl")
    (site / "numpy").chmod(0o775)
    with pytest.raises(B.BuildError, match=r"site-packages/numpy is writable by group/others"):
        B.trusted_python(envs / "dl")


def test_no_environment_says_so(tree: tuple[Path, Path]) -> None:
    envs, _ = tree
    with pytest.raises(B.BuildError, match="There is no environment dl at"):
        B.trusted_python(envs / "dl")


# -- markers ----------------------------------------------------------------------------------------
def test_marker_is_written_once_and_keeps_its_creation_time(tmp_path: Path) -> None:
    build = tmp_path / f"dl-{D1}"
    build.mkdir()
    assert B.write_marker(build, "dl", D1 * 5, "run-1", False) is True
    first = json.loads((build / B.MARKER).read_text(encoding="utf-8"))
    assert B.write_marker(build, "dl", D1 * 5, "run-1", False) is False
    assert B.write_marker(build, "dl", D1 * 5, "run-1", True) is True
    second = json.loads((build / B.MARKER).read_text(encoding="utf-8"))
    assert (
        second["created"] == first["created"] and second["complete"] is True and second["run_id"] == "run-1"
    )
    assert oct((build / B.MARKER).stat().st_mode & 0o777) == "0o644"


# -- the live build's state in one call, and whether its last check still holds ---------------------
def _recheck(live: dict[str, Any], driver: str = "590.48.01", max_age: float = 3600) -> str:
    reason: str = dl_env_filters().recheck_reason(live, driver, "auto", "auto", max_age)
    return reason


def _record(live: Path, now: float, **data: Any) -> dict[str, Any]:
    check = {"passed": True, "verified": True, "driver": "590.48.01", "requested_device": "auto"}
    written: dict[str, Any] = B.record(live, {**check, "requested_backend": "auto", **data}, now=now)
    return written


def test_live_reads_link_digest_check_and_its_age_by_the_hosts_clock(
    live_env: tuple[Path, Path, Path],
) -> None:
    envs, _, live = live_env
    written = _record(live, now=1000.0)
    assert written["digest"] == D1 * 5 and written["epoch"] == 1000.0
    assert written["when"] == "1970-01-01T00:16:40Z"
    state = B.live(envs, "dl", now=1090.0)
    assert state["exists"] and state["link"] and state["python"]
    assert state["target"] == str(live) and state["digest"] == D1 * 5
    assert state["check"] == written and state["check_age_s"] == 90.0
    assert state["untrusted"] == ""
    assert _recheck(state) == ""


def test_live_without_an_environment_says_so_in_every_field(tree: tuple[Path, Path]) -> None:
    envs, _ = tree
    state = B.live(envs, "dl")
    assert state == {
        "exists": False,
        "link": False,
        "target": "",
        "python": False,
        "digest": "",
        "check": {},
        "check_age_s": None,
        "untrusted": "",
    }
    assert _recheck(state) == "never checked"


def test_a_kept_check_does_not_hold_once_anything_it_depended_on_changed(
    live_env: tuple[Path, Path, Path],
) -> None:
    envs, _, live = live_env
    _record(live, now=1000.0)
    state = B.live(envs, "dl", now=1010.0)
    assert "driver changed since its last check (590.48.01 -> 595.1.2)" in _recheck(state, driver="595.1.2")
    assert "600 s old" not in _recheck(state) and "10 s old" in _recheck(state, max_age=5)
    assert "10 s old" in _recheck(state, max_age=0)  # 0: check on every run
    assert "device cuda" in dl_env_filters().recheck_reason(state, "590.48.01", "cuda", "auto", 3600)
    assert "clock moved back" in _recheck(B.live(envs, "dl", now=900.0))
    _record(live, now=1000.0, passed=False)
    assert _recheck(B.live(envs, "dl", now=1010.0)) == "its last check did not pass"
    # A check recorded for another build (the name now points at a rebuild) does not carry over.
    (live / B.DIGEST_FILE).write_text(D2 * 5 + "\n", encoding="utf-8")
    _record(live, now=1000.0)
    (live / B.DIGEST_FILE).write_text(D1 * 5 + "\n", encoding="utf-8")
    assert _recheck(B.live(envs, "dl", now=1010.0)) == "its last check was of another build"


def test_a_build_someone_else_could_change_is_checked_again(live_env: tuple[Path, Path, Path]) -> None:
    envs, _, live = live_env
    _record(live, now=1000.0)
    (live / "bin").chmod(0o775)
    state = B.live(envs, "dl", now=1010.0)
    assert "writable" in state["untrusted"]
    assert _recheck(state).startswith("the environment may have been changed: ")
