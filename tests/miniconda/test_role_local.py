"""The miniconda role's own preflight and .condarc task, run by real ansible-playbook on the controller.

One playbook run covers every case: each case is a host (ansible_connection=local) of a generated inventory,
so cross-field checks, file name/URL building and template rendering are tested through the role's code.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "preflight_cases.yml"
SECRET = "pr0xy-s3cret-Pw"
MINICONDA_SHA = "e0b10e050e8928e2eb9aad2c522ee3b5d31d30048b8a9997663a8a460d538cef"
MINIFORGE_SHA = "be1bad9d4e67a8753eb76fb4940e9a08036786675c7adf060627e55791bf110d"
OTHER_SHA = "ab" * 32
NOBODY = 65534
# A .condarc as `conda config --system` and an older gpulab left it: managed keys (replaced), the pre-25.5
# auto-activation alias (replaced by the name this conda owns) and keys gpulab does not manage (kept).
MERGE_BEFORE = """channels: [old-channel]
auto_activate_base: true
always_yes: true
pip_interop_enabled: true
custom_multichannels: {internal: [https://conda.example.org/a]}
"""


def _shared_prefix(prefix: Path) -> None:
    """envs/ and pkgs/ as an older gpulab left them (2775), with what a conda-group user made inside."""
    for name in ("envs", "pkgs"):
        (prefix / name).mkdir()
        (prefix / name).chmod(0o2775)
    bob = prefix / "envs" / "bob-env"
    (bob / "bin").mkdir(parents=True)
    (bob / "bin" / "python").write_text("#!/bin/sh\necho planted\n")
    for path in (bob, bob / "bin", bob / "bin" / "python"):
        os.chown(path, NOBODY, NOBODY)
        path.chmod(0o777)
    (prefix / "envs" / "root-env").mkdir()
    (prefix / "pkgs" / "planted-1.0-0").mkdir()
    os.chown(prefix / "pkgs" / "planted-1.0-0", NOBODY, NOBODY)


def _cases(tmp: Path) -> dict[str, dict[str, Any]]:
    def render(name: str, **extra: Any) -> dict[str, Any]:
        prefix = tmp / name
        prefix.mkdir()
        return {
            "miniconda_test_render": True,
            "miniconda_prefix": str(prefix),
            "miniconda_credentials_file": str(tmp / f"{name}-credentials" / "conda-credentials.yml"),
            **extra,
        }

    return {
        "tos_not_accepted": {},
        "accepted": {"miniconda_accept_tos": True},
        "miniforge": {"miniconda_flavor": "miniforge", "miniconda_version": "25.11.0-1"},
        "mirror_channels": {
            "miniconda_mirror_url": "http://mirror.example.org/miniconda/",
            "miniconda_default_channels": ["https://conda.example.org/pkgs/main"],
        },
        "explicit_url": {
            "miniconda_accept_tos": True,
            "miniconda_installer_url": "https://files.example.org/any-name.sh",
        },
        "unknown_version": {"miniconda_accept_tos": True, "miniconda_version": "py312_24.9.2-0"},
        "sha_override": {
            "miniconda_accept_tos": True,
            "miniconda_version": "py312_24.9.2-0",
            "miniconda_installer_sha256": OTHER_SHA.upper(),
        },
        "miniforge_with_miniconda_version": {"miniconda_flavor": "miniforge"},
        "two_sources": {
            "miniconda_accept_tos": True,
            "miniconda_mirror_url": "http://mirror.example.org/miniconda",
            "miniconda_installer_url": "http://mirror.example.org/x.sh",
        },
        "user_mode_without_user": {"miniconda_accept_tos": True, "miniconda_install_mode": "user"},
        "user_mode_missing_user": {
            "miniconda_accept_tos": True,
            "miniconda_install_mode": "user",
            "miniconda_user": "no-such-user-gpulab",
        },
        "user_mode": {
            "miniconda_accept_tos": True,
            "miniconda_install_mode": "user",
            "miniconda_user": "nobody",
        },
        "bad_choice": {"miniconda_flavor": "anaconda"},
        "bad_type": {"miniconda_accept_tos": True, "miniconda_download_timeout": "soon"},
        "check_mode_fresh": {
            "miniconda_accept_tos": True,
            "miniconda_prefix": str(tmp / "check_mode_fresh" / "miniconda3"),
            "miniconda_profile_script": str(tmp / "check_mode_fresh" / "gpulab-conda.sh"),
        },
        "render_defaults": render("render_defaults", miniconda_accept_tos=True),
        "render_old_conda": render(
            "render_old_conda",
            miniconda_accept_tos=True,
            miniconda_version="py312_25.3.1-1",
            miniconda_installer_sha256=OTHER_SHA,
        ),
        "render_mirror": render(
            "render_mirror",
            miniconda_flavor="miniforge",
            miniconda_version="25.11.0-1",
            miniconda_channels=["conda-forge", "bioconda"],
            miniconda_channel_priority="strict",
            miniconda_channel_alias="https://conda.example.org",
            miniconda_custom_channels={"internal": "https://conda.example.org/internal"},
            miniconda_envs_dirs=["/shared/envs"],
            miniconda_pkgs_dirs=["/shared/pkgs"],
            miniconda_ssl_verify="/etc/ssl/certs/ca-certificates.crt",
            miniconda_proxy_servers={"https": f"http://user:{SECRET}@proxy.example.org:3128"},
            miniconda_condarc_extra={"always_yes": False},
        ),
        "render_merge": render("render_merge", miniconda_flavor="miniforge", miniconda_version="25.11.0-1"),
        "render_shared": render(
            "render_shared",
            miniconda_flavor="miniforge",
            miniconda_version="25.11.0-1",
            miniconda_group="root",
        ),
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("miniconda-local")
    cases = _cases(tmp)
    hosts: dict[str, Any] = {
        name: {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python"),
            **v,
        }
        for name, v in cases.items()
    }
    inventory = tmp / "inventory.yml"
    (tmp / "check_mode_fresh").mkdir()
    children = {
        "validate": {"hosts": {name: None for name in ("bad_choice", "bad_type")}},
        "checkmode": {"hosts": {"check_mode_fresh": None}},
    }
    (tmp / "render_merge" / ".condarc").write_text(MERGE_BEFORE)
    _shared_prefix(tmp / "render_shared")
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts, "children": children}}))
    env = dict(os.environ)
    env.update(
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORKS="8",
        ANSIBLE_GATHERING="implicit",
    )
    playbook = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "--diff", "-v"]
    data: dict[str, Any] = {"plays": []}
    output = ""
    # Check mode must come from --check (ansible_check_mode), as in a real `gpulab --check` run.
    for extra in (["--limit", "all:!checkmode"], ["--check", "--limit", "checkmode"]):
        proc = subprocess.run(
            [*playbook, *extra, str(PLAYBOOK)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output += proc.stdout + proc.stderr
        start = proc.stdout.find("{")
        assert start >= 0, proc.stdout + proc.stderr
        part, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
        data["plays"] += part["plays"]
    results: dict[str, Any] = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if host in results and "failed" in results[host]:
                    continue
                if res.get("changed"):
                    name = task["task"]["name"].removeprefix("gpulab.gpulab.").removeprefix("miniconda : ")
                    results.setdefault("changed", {}).setdefault(host, []).append(name)
                if res.get("failed"):
                    results[host] = {"failed": str(res.get("msg", res))}
                elif task["task"]["name"] == "Show the resolved values":
                    results[host] = {"resolved": res["msg"]}
                elif task["task"]["name"] == "Show what configure published (redacted)" and "msg" in res:
                    results.setdefault("configured", {})[host] = res["msg"]
    return {"results": results, "stdout": output, "tmp": tmp}


def _resolved(run: dict[str, Any], case: str) -> dict[str, Any]:
    res = run["results"].get(case, {})
    assert "resolved" in res, f"{case}: {res}"
    value: dict[str, Any] = res["resolved"]
    return value


def _failure(run: dict[str, Any], case: str) -> str:
    res = run["results"].get(case, {})
    assert "failed" in res, f"{case} should fail: {res}"
    return str(res["failed"])


def test_official_miniconda_name_url_and_pinned_checksum(run: dict[str, Any]) -> None:
    r = _resolved(run, "accepted")
    assert r["installer_file"] == "Miniconda3-py313_25.11.1-1-Linux-x86_64.sh"
    assert (
        r["download_url"] == "https://repo.anaconda.com/miniconda/Miniconda3-py313_25.11.1-1-Linux-x86_64.sh"
    )
    assert r["sha256"] == MINICONDA_SHA
    assert r["conda_version"] == "25.11.1"
    assert r["prefix"] == r["published_prefix"] == "/opt/miniconda3"
    assert r["owner"] == "root"
    assert r["channels"] == ["defaults"]
    assert r["tos_channels"] == ["https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r"]


def test_miniforge_uses_the_github_release_url(run: dict[str, Any]) -> None:
    r = _resolved(run, "miniforge")
    assert r["download_url"] == (
        "https://github.com/conda-forge/miniforge/releases/download/25.11.0-1/Miniforge3-25.11.0-1-Linux-x86_64.sh"
    )
    assert r["sha256"] == MINIFORGE_SHA
    assert r["channels"] == ["conda-forge"]
    assert r["tos_channels"] == []


def test_mirror_base_url_and_mirror_channels_need_no_tos(run: dict[str, Any]) -> None:
    r = _resolved(run, "mirror_channels")
    assert (
        r["download_url"] == "http://mirror.example.org/miniconda/Miniconda3-py313_25.11.1-1-Linux-x86_64.sh"
    )
    assert r["tos_channels"] == []


def test_explicit_url_wins(run: dict[str, Any]) -> None:
    assert _resolved(run, "explicit_url")["download_url"] == "https://files.example.org/any-name.sh"


def test_tos_not_accepted_fails_and_says_how(run: dict[str, Any]) -> None:
    msg = _failure(run, "tos_not_accepted")
    for needle in (
        "miniconda_accept_tos: true",
        "miniforge",
        "miniconda_default_channels",
        "tos_not_accepted",
    ):
        assert needle in msg


def test_unknown_version_needs_a_checksum(run: dict[str, Any]) -> None:
    msg = _failure(run, "unknown_version")
    assert "miniconda_installer_sha256" in msg and "Miniconda3-py312_24.9.2-0-Linux-x86_64.sh" in msg


def test_checksum_override_is_normalised(run: dict[str, Any]) -> None:
    r = _resolved(run, "sha_override")
    assert r["sha256"] == OTHER_SHA
    assert r["conda_version"] == "24.9.2"


def test_miniforge_rejects_a_miniconda_release_string(run: dict[str, Any]) -> None:
    msg = _failure(run, "miniforge_with_miniconda_version")
    assert "miniconda_version 'py313_25.11.1-1'" in msg and "25.11.0-1" in msg


def test_only_one_source(run: dict[str, Any]) -> None:
    msg = _failure(run, "two_sources")
    assert "miniconda_installer_url" in msg and "miniconda_mirror_url" in msg and "two_sources" in msg


def test_user_mode_inputs(run: dict[str, Any]) -> None:
    assert "miniconda_user" in _failure(run, "user_mode_without_user")
    assert "no-such-user-gpulab" in _failure(run, "user_mode_missing_user")
    r = _resolved(run, "user_mode")
    assert r["owner"] == "nobody"
    assert r["prefix"].endswith("/miniconda3") and r["prefix"] == r["published_prefix"]


def test_argument_specs_reject_bad_values_before_any_change(run: dict[str, Any]) -> None:
    assert "miniconda_flavor" in _failure(run, "bad_choice")
    assert "miniconda_download_timeout" in _failure(run, "bad_type")


def _condarc(run: dict[str, Any], case: str) -> tuple[str, dict[str, Any]]:
    assert case not in run["results"] or "failed" not in run["results"][case], run["results"][case]
    text = (run["tmp"] / case / ".condarc").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return text, data


def test_condarc_defaults(run: dict[str, Any]) -> None:
    text, data = _condarc(run, "render_defaults")
    assert text.splitlines()[:2] == ["#", "# Ansible managed"]
    prefix = str(run["tmp"] / "render_defaults")
    assert data == {
        "channels": ["defaults"],
        "channel_priority": "flexible",
        # System mode: users' own envs and caches first, the root-owned prefix's after them.
        "pkgs_dirs": ["~/.conda/pkgs", f"{prefix}/pkgs"],
        "envs_dirs": ["~/.conda/envs", f"{prefix}/envs"],
        "ssl_verify": True,
        "auto_activate": False,
        "report_errors": False,
        "notify_outdated_conda": False,
        "number_channel_notices": 0,
    }


def test_condarc_uses_auto_activate_base_before_conda_25_5(run: dict[str, Any]) -> None:
    _, data = _condarc(run, "render_old_conda")
    assert data["auto_activate_base"] is False
    assert "auto_activate" not in data


def test_condarc_mirror_settings(run: dict[str, Any]) -> None:
    _, data = _condarc(run, "render_mirror")
    assert data["channels"] == ["conda-forge", "bioconda"]
    assert data["channel_priority"] == "strict"
    assert data["channel_alias"] == "https://conda.example.org"
    assert data["custom_channels"] == {"internal": "https://conda.example.org/internal"}
    assert data["envs_dirs"] == ["/shared/envs"]
    assert data["pkgs_dirs"] == ["/shared/pkgs"]
    assert data["ssl_verify"] == "/etc/ssl/certs/ca-certificates.crt"
    assert data["always_yes"] is False


def test_proxy_credentials_go_to_a_root_only_file_outside_the_public_condarc(run: dict[str, Any]) -> None:
    text, data = _condarc(run, "render_mirror")
    assert "proxy_servers" not in data and SECRET not in text
    assert oct((run["tmp"] / "render_mirror" / ".condarc").stat().st_mode & 0o777) == "0o644"
    creds = run["tmp"] / "render_mirror-credentials" / "conda-credentials.yml"
    assert oct(creds.stat().st_mode & 0o777) == "0o600" and creds.stat().st_uid == 0
    assert yaml.safe_load(creds.read_text()) == {
        "proxy_servers": {"https": f"http://user:{SECRET}@proxy.example.org:3128"}
    }
    # gpulab's own conda and pip calls get the file through CONDARC and the proxy through https_proxy.
    env = run["results"]["configured"]["render_mirror"]["conda_env"]
    assert env == {"https_proxy": "http://***@proxy.example.org:3128", "CONDARC": str(creds)}
    assert not (run["tmp"] / "render_defaults-credentials").exists()
    assert run["results"]["configured"]["render_defaults"]["conda_env"] == {}


def test_condarc_keeps_keys_gpulab_does_not_manage_and_backs_up_the_old_file(run: dict[str, Any]) -> None:
    _, data = _condarc(run, "render_merge")
    assert data["channels"] == ["conda-forge"]
    assert data["auto_activate"] is False and "auto_activate_base" not in data
    assert data["always_yes"] is True
    assert data["pip_interop_enabled"] is True
    assert data["custom_multichannels"] == {"internal": ["https://conda.example.org/a"]}
    backups = [p for p in (run["tmp"] / "render_merge").iterdir() if p.name.startswith(".condarc.")]
    assert [b.read_text() for b in backups] == [MERGE_BEFORE]
    # The second configure run in the same playbook changed nothing.
    changed = run["results"]["changed"]["render_merge"]
    assert changed.count("configure | Write the .condarc, keeping keys gpulab does not manage") == 1, changed


def test_shared_envs_and_pkgs_are_tightened_and_users_entries_left_alone(run: dict[str, Any]) -> None:
    prefix = run["tmp"] / "render_shared"
    for name in ("envs", "pkgs"):
        info = (prefix / name).stat()
        assert (oct(info.st_mode & 0o7777), info.st_uid) == ("0o755", 0), name
    bob = prefix / "envs" / "bob-env"
    for path in (bob, bob / "bin", bob / "bin" / "python"):
        assert (oct(path.stat().st_mode & 0o777), path.stat().st_uid) == ("0o777", NOBODY), path
    found = run["results"]["configured"]["render_shared"]
    assert found["foreign_envs"] == [str(bob)]
    assert found["foreign_pkgs"] == [str(prefix / "pkgs" / "planted-1.0-0")]
    changed = run["results"]["changed"]["render_shared"]
    assert changed.count("configure | Make envs and pkgs root-owned and writable by root only") == 1, changed


def test_proxy_secret_never_reaches_the_log(run: dict[str, Any]) -> None:
    _condarc(run, "render_mirror")
    assert SECRET not in run["stdout"]
    # The same run did show diffs for hosts without secrets, so the check is not vacuous.
    assert "number_channel_notices" in run["stdout"]


def test_check_mode_reports_the_install_and_changes_nothing(run: dict[str, Any]) -> None:
    assert "failed" not in run["results"].get("check_mode_fresh", {}), run["results"]["check_mode_fresh"]
    changed = run["results"].get("changed", {}).get("check_mode_fresh", [])
    assert "install | Report that check mode would run the installer" in changed, run["results"]
    assert "shell | Install the profile script for all users" in changed
    assert list((run["tmp"] / "check_mode_fresh").iterdir()) == []
