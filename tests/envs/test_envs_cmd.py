"""`gpulab envs`: the listing playbook through ansible-runner (gpulab.runner) against a local host whose
builds tree is laid out as the dl_env role leaves it, and the table/JSON made from it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab import envs_cmd

DIGEST = "0123456789ab" + "c" * 52


def fake_host(root: Path) -> Path:
    """<root>/envs with a live build `torch` (marker, conda-meta records, last check), a second build of
    it, a build of `data` sharing a hard-linked file, and a user's env gpulab did not make."""
    envs = root / "envs"
    builds = envs / ".gpulab"
    shared = root / "pkgs" / "libbig.so"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(os.urandom(300 * 1024))

    def build(
        name: str, env: str, digest: str, records: dict[str, str], check: dict[str, Any] | None
    ) -> Path:
        path = builds / name
        meta = path / "conda-meta"
        meta.mkdir(parents=True)
        (meta / "gpulab-build.json").write_text(
            json.dumps({"env": env, "digest": digest, "complete": True, "created": "2026-01-01T00:00:00Z"}),
            encoding="utf-8",
        )
        (meta / "gpulab-spec.sha256").write_text(digest + "\n", encoding="utf-8")
        for pkg, version in records.items():
            (meta / f"{pkg}-{version}-0.json").write_text(
                json.dumps({"name": pkg, "version": version}), encoding="utf-8"
            )
        if check is not None:
            (meta / "gpulab-check.json").write_text(json.dumps(check), encoding="utf-8")
        os.link(shared, path / "libbig.so")
        return path

    live = build(
        f"torch-{DIGEST[:12]}",
        "torch",
        DIGEST,
        {"python": "3.11.9", "pytorch-gpu": "2.5.1", "cuda-version": "12.6"},
        {"when": "2026-12-05T07:00:00Z", "passed": True, "verified": True, "backend": "numpy"},
    )
    build("torch-ffffffffffff", "torch", "f" * 64, {"python": "3.11.9"}, None)
    data = build(
        f"data-{'d' * 12}",
        "data",
        "d" * 64,
        {"python": "3.11.9"},
        {"when": "2026-12-05T07:01:00Z", "passed": True, "verified": False},
    )
    (envs / "torch").symlink_to(live)
    (envs / "data").symlink_to(data)
    (envs / "mine" / "conda-meta").mkdir(parents=True)
    return envs


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("envs_cmd")
    envs = fake_host(tmp / "node1")
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "hosts": {
                "node1": {"dl_env_envs_dir": str(envs)},
                "empty": {"dl_env_envs_dir": str(tmp / "none")},
            },
        }
    }
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    old = os.environ.get("GPULAB_STATE_DIR")
    os.environ["GPULAB_STATE_DIR"] = str(tmp / "runs")
    try:
        collected = envs_cmd.run_envs((tmp / "hosts.yml",), None)
    finally:
        if old is None:
            os.environ.pop("GPULAB_STATE_DIR")
        else:
            os.environ["GPULAB_STATE_DIR"] = old
    return {"collected": collected, "tmp": tmp, "inventory": tmp / "hosts.yml"}


def test_each_env_gpulab_made_is_listed_with_what_the_host_records(listed: dict[str, Any]) -> None:
    out = envs_cmd.result(listed["collected"])
    assert out["failed"] == {} and out["unreachable"] == {}
    node = out["hosts"]["node1"]
    assert sorted(node["envs"]) == ["data", "torch"]  # `mine` has no gpulab marker: not listed
    torch = node["envs"]["torch"]
    assert torch["digest"] == DIGEST and torch["live"].endswith(f"torch-{DIGEST[:12]}")
    assert torch["versions"] == {"python": "3.11.9", "framework": "pytorch-gpu 2.5.1", "cuda": "12.6"}
    assert torch["check"]["passed"] is True and torch["check"]["when"] == "2026-12-05T07:00:00Z"
    assert len(torch["builds"]) == 2
    # the hard-linked 300 KiB file (in both torch builds and in data) counts once per env, once in the
    # total, and is no env's own
    assert 300 * 1024 <= torch["bytes"] < 400 * 1024 and node["envs"]["data"]["bytes"] >= 300 * 1024
    assert torch["exclusive_bytes"] < 300 * 1024
    assert node["total_bytes"] < torch["bytes"] + node["envs"]["data"]["bytes"] - 250 * 1024
    assert out["hosts"]["empty"]["envs"] == {} and out["hosts"]["empty"]["total_bytes"] == 0


def test_the_table_says_per_host_and_env_state_versions_check_and_disk(listed: dict[str, Any]) -> None:
    collected = listed["collected"]
    table = envs_cmd.render_table(
        envs_cmd.rows(collected.data), {h: b["total_bytes"] for h, b in collected.data.items()}
    )
    torch_line = next(line for line in table.splitlines() if " torch " in f" {line} ")
    for cell in (
        "node1",
        "live",
        DIGEST[:12],
        "3.11.9",
        "pytorch-gpu 2.5.1",
        "12.6",
        "passed 2026-12-05T07:00:00Z",
        "KiB",
    ):
        assert cell in torch_line, (cell, torch_line)
    assert "not verified 2026-12-05T07:01:00Z" in table
    assert "empty" in table and "no environments" in table
    assert "node1: all environments" in table


def test_gpulab_envs_json_through_the_registered_subcommand(
    listed: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPULAB_STATE_DIR", str(listed["tmp"] / "runs2"))
    parser = argparse.ArgumentParser()
    envs_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["envs", "-i", str(listed["inventory"]), "--limit", "node1", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["hosts"]) == ["node1"] and sorted(out["hosts"]["node1"]["envs"]) == ["data", "torch"]


def test_a_host_that_cannot_be_listed_gives_the_host_failure_exit_code() -> None:
    collected = envs_cmd.Collected()
    collected({"event": "runner_on_failed", "event_data": {"host": "n2", "res": {"msg": "boom"}}})
    collected({"event": "runner_on_ok", "event_data": {"host": "n1"}})
    assert envs_cmd.exit_code(collected) == 2 and collected.failed == {"n2": "boom"}
    collected({"event": "runner_on_unreachable", "event_data": {"host": "n3", "res": {"msg": "ssh"}}})
    assert envs_cmd.exit_code(collected) == 3
