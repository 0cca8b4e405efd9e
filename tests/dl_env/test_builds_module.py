"""plugins/modules/dl_env_builds.py: which builds are gpulab's, never the live one or one in use,
disk use with hard links counted once, and when root may run a build's python. On real trees in tmp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._load import dl_env_builds, dl_env_filters, make_build

B = dl_env_builds()
D1 = "a" * 12
D2 = "b" * 12
D3 = "c" * 12


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


def test_a_new_build_is_marked_sealed_and_its_python_checked_in_one_call(tree: tuple[Path, Path]) -> None:
    envs, builds = tree
    for path in [envs.parent.parent, envs.parent, envs, builds]:
        path.chmod(0o755)
    new = make_build(builds, f"dl-{D2}", None, "", complete=False)
    (new / "bin" / "python").chmod(0o777)  # as a careless build step could leave it
    changed, python = B.seal_new(new, "dl", D2 * 5, "run-2")
    assert changed is True and python == new / "bin" / "python"
    marker = json.loads((new / B.MARKER).read_text(encoding="utf-8"))
    assert (marker["env"], marker["digest"], marker["complete"], marker["run_id"]) == (
        "dl",
        D2 * 5,
        False,
        "run-2",
    )
    assert oct(python.stat().st_mode & 0o777) == "0o755"
    assert B.seal_new(new, "dl", D2 * 5, "run-2") == (False, python)
    # A build whose python someone else could change is refused after sealing (a venv-style link out).
    elsewhere = tree[0].parent.parent / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    elsewhere.chmod(0o777)
    (elsewhere / "python").write_text("#!/bin/sh\n", encoding="utf-8")
    (new / "bin" / "python").unlink()
    (new / "bin" / "python").symlink_to(elsewhere / "python")
    with pytest.raises(B.BuildError, match="elsewhere is writable by group/others"):
        B.seal_new(new, "dl", D2 * 5, "run-2")


def test_the_spec_and_its_digest_are_recorded_in_the_build_root_only_and_once(tmp_path: Path) -> None:
    build = tmp_path / f"dl-{D1}"
    (build / "conda-meta").mkdir(parents=True)
    spec = tmp_path / "environment.yml"
    spec.write_text("name: dl\ndependencies: [{pip: [--index-url https://tok:SECRET@example/simple]}]\n")
    spec.chmod(0o640)  # as write_host leaves it, root:<dl_env_group>
    os.chown(spec, 0, 65534)
    assert B.record_spec(build, spec, D1 * 5) is True
    assert (build / B.SPEC_COPY).read_bytes() == spec.read_bytes()
    assert B.recorded_digest(build) == D1 * 5
    copy = (build / B.SPEC_COPY).stat()
    assert (oct(copy.st_mode & 0o777), copy.st_uid, copy.st_gid) == ("0o640", 0, 65534)
    assert oct((build / B.DIGEST_FILE).stat().st_mode & 0o777) == "0o644"
    assert B.record_spec(build, spec, D1 * 5) is False
    # A link planted where the copy goes is replaced, never written through.
    target = tmp_path / "planted"
    (build / B.SPEC_COPY).unlink()
    (build / B.SPEC_COPY).symlink_to(target)
    assert B.record_spec(build, spec, D1 * 5) is True
    assert not target.exists() and not (build / B.SPEC_COPY).is_symlink()


def test_the_new_build_goes_beside_the_live_one_and_a_kept_finished_one_is_reused(
    tree: tuple[Path, Path],
) -> None:
    envs, builds = tree
    assert B.new_build(builds, "dl", D1 * 5, "") == (builds / f"dl-{D1}", False)
    kept = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    assert B.new_build(builds, "dl", D1 * 5, "") == (kept, True)
    # The live build has this spec's name but recorded another digest: the new build gets its own name.
    link(envs, "dl", kept)
    (kept / B.DIGEST_FILE).write_text("0" * 64 + "\n", encoding="utf-8")
    state = B.live(envs, "dl", builds_dir=builds, digest=D1 * 5)
    assert state["new_prefix"] == str(builds / f"dl-{D1}-rebuild") and state["kept"] is False
    assert "new_prefix" not in B.live(envs, "dl")


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
        "marker": "",
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


def test_a_driver_change_during_a_run_is_checked_again_by_the_next_run(
    live_env: tuple[Path, Path, Path],
) -> None:
    """cuda_check read 590.48.01, then the driver became 595.1.2 before the MLP check ran.

    verify.yml stamps the check with the driver cuda_check read at the start of the run (it cannot tell
    which driver the check ran on), so the record says 590.48.01. The next run's cuda_check reads 595.1.2:
    the stamp differs, the check runs again (it does not carry over) and is stamped 595.1.2, which then holds.
    """
    envs, _, live = live_env
    _record(live, now=1000.0, driver="590.48.01")  # run 1: the check passed, stamped with the start driver
    after = B.live(envs, "dl", now=1010.0)
    assert after["check"]["driver"] == "590.48.01"
    reason = _recheck(after, driver="595.1.2")  # run 2: cuda_check reads the new driver
    assert reason == "the driver changed since its last check (590.48.01 -> 595.1.2)"
    _record(live, now=1020.0, driver="595.1.2")  # run 2 checked again on the driver it read
    assert _recheck(B.live(envs, "dl", now=1030.0), driver="595.1.2") == ""  # run 3 reuses it
    # A driver that comes back to the old one is a change too: the stamp is the last driver checked on.
    assert "595.1.2 -> 590.48.01" in _recheck(B.live(envs, "dl", now=1030.0), driver="590.48.01")


def test_a_build_someone_else_could_change_is_checked_again(live_env: tuple[Path, Path, Path]) -> None:
    envs, _, live = live_env
    _record(live, now=1000.0)
    (live / "bin").chmod(0o775)
    state = B.live(envs, "dl", now=1010.0)
    assert "writable" in state["untrusted"]
    assert _recheck(state).startswith("the environment may have been changed: ")


# -- unreadable markers (disk fault, hand edit) -------------------------------------------------------
GOOD_MARKER = {"env": "dl", "digest": D2 * 5, "complete": True, "run_id": "r1", "created_epoch": 1.0}
UNREADABLE: dict[str, tuple[bytes, str]] = {
    "truncated": (json.dumps(GOOD_MARKER).encode()[:25], "not JSON (truncated or garbage)"),
    "garbage": (b"\x00\xff\xfe not a marker", "not JSON (truncated or garbage)"),
    "empty": (b"", "not JSON (truncated or garbage)"),
    "a list": (b'["dl", true]', "a JSON list, not an object"),
    "env a number": (json.dumps(GOOD_MARKER | {"env": 5}).encode(), "wrong: its 'env' is 5"),
    "complete a string": (
        json.dumps(GOOD_MARKER | {"complete": "yes"}).encode(),
        "wrong: its 'complete' is \"yes\"",
    ),
    "complete missing": (
        json.dumps({"env": "dl", "digest": D2 * 5}).encode(),
        "wrong: its 'complete' is null",
    ),
    "epoch a bool": (
        json.dumps(GOOD_MARKER | {"created_epoch": True}).encode(),
        "wrong: its 'created_epoch' is true",
    ),
}


def _spoil(build: Path, raw: bytes) -> None:
    (build / B.MARKER).write_bytes(raw)


def _run_module(**args: Any) -> dict[str, Any]:
    """The module as Ansible runs it: a python process given its arguments, printing its JSON."""
    argv = [sys.executable, str(B.__file__), json.dumps({"ANSIBLE_MODULE_ARGS": args})]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("case", UNREADABLE)
def test_prune_and_clean_never_remove_a_build_whose_marker_is_unreadable_and_say_so(
    tree: tuple[Path, Path], case: str
) -> None:
    envs, builds = tree
    raw, why = UNREADABLE[case]
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5, created=100)
    finished = make_build(builds, f"dl-{D2}", "dl", D2 * 5, created=50)  # would be pruned with keep 0
    half = make_build(builds, f"dl-{D3}", "dl", D3 * 5, complete=False)  # would be cleaned
    link(envs, "dl", live)
    _spoil(finished, raw)
    _spoil(half, raw)
    assert B.read_marker(finished) == (None, why)
    assert B.owner_of(finished, "dl") == "" and B.builds_of(builds, "dl") == [live]
    pruned = _run_module(state="prune", name="dl", envs_dir=str(envs), builds_dir=str(builds), keep=0)
    cleaned = _run_module(state="clean", envs_dir=str(envs), builds_dir=str(builds))
    assert pruned["changed"] is False and pruned["removed"] == [], pruned
    assert cleaned["changed"] is False and cleaned["removed"] == [], cleaned
    for build, result in ((finished, pruned), (half, pruned), (half, cleaned)):
        said = [s for s in result["skipped"] if s.startswith(f"{build} (")]
        assert len(said) == 1, result["skipped"]
        assert f"its gpulab marker {build / B.MARKER} is {why}" in said[0]
        assert "not provably a gpulab build" in said[0] and "not removing it" in said[0]
    assert live.is_dir() and finished.is_dir() and half.is_dir()
    assert (finished / B.MARKER).read_bytes() == raw  # nothing "repaired" it either


def test_a_missing_marker_is_a_build_from_before_markers_or_a_half_made_one(tree: tuple[Path, Path]) -> None:
    """Missing is not unreadable: with the digest its name carries, adopted (then pruned as any);
    without a recorded digest, half-made (cleaned)."""
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    legacy = make_build(builds, f"dl-{D2}", None, D2 * 5, legacy=True)
    half = make_build(builds, f"dl-{D3}", None, "", complete=False)
    link(envs, "dl", live)
    assert B.read_marker(legacy) == (None, "") and B.unreadable_builds(builds, "dl") == []
    result = B.prune(envs, builds, "dl", 1)
    assert result["adopted"] == [str(legacy)] and result["skipped"] == [] and legacy.is_dir()
    assert B.clean(envs, builds)["removed"] == [str(half)] and not half.exists()


def test_a_live_build_with_an_unreadable_marker_is_built_again_not_trusted(tree: tuple[Path, Path]) -> None:
    """`live` names the problem, the role's decision (dl_env_build_reason) builds again beside it (the
    role names the new build `<name>-<digest12>-rebuild`), and after the swap the next run is settled:
    nothing to build, the old build kept and reported by every prune, no human step."""
    envs, builds = tree
    live = make_build(builds, f"dl-{D1}", "dl", D1 * 5)
    link(envs, "dl", live)
    build_reason = dl_env_filters().build_reason
    assert B.live(envs, "dl")["marker"] == "" and build_reason(B.live(envs, "dl"), D1 * 5) == ""
    _spoil(live, UNREADABLE["truncated"][0])
    state = _run_module(state="live", name="dl", envs_dir=str(envs))
    problem = f"its gpulab marker {live / B.MARKER} is not JSON (truncated or garbage)"
    assert state["marker"] == problem and state["digest"] == D1 * 5  # same spec, yet not trusted
    assert build_reason(state, D1 * 5) == f"the live build is not provably gpulab's: {problem}"
    # What build.yml then does: a new build beside it, marked, checked, swapped in under the name.
    rebuilt = make_build(builds, f"dl-{D1}-rebuild", "dl", D1 * 5)
    (envs / ".dl.gpulab-next").symlink_to(rebuilt)
    os.replace(envs / ".dl.gpulab-next", envs / "dl")
    after = B.live(envs, "dl")
    assert after["target"] == str(rebuilt) and after["marker"] == "" and build_reason(after, D1 * 5) == ""
    for _ in range(2):
        pruned = B.prune(envs, builds, "dl", 0)
        assert pruned["changed"] is False and live.is_dir() and rebuilt.is_dir()
        assert [s.split(" (")[0] for s in pruned["skipped"]] == [str(live)]


def test_a_live_build_marked_for_another_env_or_unmarked_is_not_trusted(tree: tuple[Path, Path]) -> None:
    envs, builds = tree
    other = make_build(builds, f"dl-cpu-{D1}", "dl-cpu", D1 * 5)
    link(envs, "dl", other)
    assert "names environment dl-cpu, not dl" in B.live(envs, "dl")["marker"]
    (envs / "dl").unlink()
    bare = make_build(builds, f"dl-{D2}", None, "", complete=False)
    link(envs, "dl", bare)
    assert B.live(envs, "dl")["marker"] == f"{bare} has no gpulab marker"
    (envs / "dl").unlink()
    legacy = make_build(builds, f"dl-{D3}", None, D3 * 5, legacy=True)
    link(envs, "dl", legacy)
    assert B.live(envs, "dl")["marker"] == ""  # made before markers: adopted by its digest
