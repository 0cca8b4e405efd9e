"""The execution environment (docs/ee.md): `execution-environment.yml` built offline by `python -m gpulab.ee
build`, and `gpulab provision --ee IMAGE` running site.yml inside it against a one-node SSH lab.

The fast tests check the definition against pyproject and what the runner is told for a containerized run
(mounts, paths, no secret on a command line); the container test builds the image (skipped while its recipe
label matches) and provisions a lab node from inside it, then re-runs it with `-K` (changed=0).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect  # type: ignore[import-untyped]
import pytest
import yaml

from gpulab import ee, ee_run
from gpulab import extravars as xvars
from gpulab.connection import ConnectionOptions
from gpulab.errors import ExitCode
from gpulab.runner import RunRequest, build_kwargs
from tests.conftest import REPO, lab_up, require_containers, run_gpulab, tool_env

# The image scripts/test.sh builds in its set-up (the test rebuilds it only when its recipe changed).
TEST_TAG = ee.DEFAULT_TAG


def _definition() -> dict[str, Any]:
    return ee.load_definition(REPO / ee.DEFINITION)


def test_definition_pins_the_same_ansible_core_and_runner_as_pyproject() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    by_name = {re.split(r"[<>=!~ ]", spec, maxsplit=1)[0]: spec for spec in deps}
    definition = _definition()["dependencies"]
    assert definition["ansible_core"]["package_pip"] == by_name["ansible-core"]
    assert definition["ansible_runner"]["package_pip"] == by_name["ansible-runner"]


def test_wheelhouse_request_covers_what_the_generated_containerfile_installs() -> None:
    specs = ee.pip_requirements(_definition())
    # ansible-builder's builder stage installs bindep, pyyaml, packaging; the definition bootstraps pip
    # from its wheel; the final stage installs dumb-init (container_init default).
    for name in ("ansible-core", "ansible-runner", "pip", "bindep", "pyyaml", "packaging", "dumb-init"):
        assert any(spec.startswith(name) for spec in specs), (name, specs)


def test_definition_stages_only_files_the_build_module_writes() -> None:
    definition = _definition()
    sources = {entry["src"] for entry in definition["additional_build_files"]}
    assert sources == {f"{ee.STAGE}/wheels", f"{ee.STAGE}/collections"}
    galaxy = definition["dependencies"]["galaxy"]["collections"]
    assert galaxy == [{"name": f"/build/collections/{ee.TARBALL}", "type": "file"}]


def _request(tmp_path: Path, **changes: Any) -> tuple[RunRequest, Path]:
    inv_dir = tmp_path / "inv"
    (inv_dir / "group_vars").mkdir(parents=True)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "id").write_text("KEY\n")
    (keys / "known_hosts").write_text("")
    inventory = inv_dir / "hosts.yml"
    common = f"-o UserKnownHostsFile={keys / 'known_hosts'} -o IdentitiesOnly=yes"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"n1": {"ansible_host": "127.0.0.1"}},
                    "vars": {
                        "ansible_ssh_private_key_file": str(keys / "id"),
                        "ansible_ssh_common_args": common,
                    },
                }
            }
        )
    )
    vault = tmp_path / "vault" / "pass"
    vault.parent.mkdir()
    vault.write_text("v\n")
    request = RunRequest(
        playbook=REPO / "playbooks" / "site.yml",
        inventories=(inventory,),
        extravars=xvars.plan(["token=s3cret-value"]),
        internal_vars={"gpulab_stop_file": str(tmp_path / "runs" / "r1" / "stop-requested")},
        connection=ConnectionOptions(vault_password_files=(vault,)),
        ee_image="localhost/some-ee:1",
        **changes,
    )
    return request, tmp_path / "runs" / "r1"


def test_containerized_run_mounts_what_it_reads_and_keeps_secrets_off_the_command_line(
    tmp_path: Path,
) -> None:
    request, run_dir = _request(tmp_path)
    run_dir.mkdir(parents=True)
    args = xvars.write(request.extravars, ee_run.internal_vars(request.internal_vars, run_dir), run_dir)
    kwargs = build_kwargs(request, REPO, run_dir, "r1", os.environ, args)

    assert kwargs["process_isolation"] is True and kwargs["process_isolation_executable"] == "podman"
    assert kwargs["container_image"] == "localhost/some-ee:1"
    assert kwargs["playbook"] == "gpulab.gpulab.site"
    assert "project_dir" not in kwargs and "inventory" not in kwargs
    assert "--network=host" in kwargs["container_options"]
    mounts = kwargs["container_volume_mounts"]
    assert f"{run_dir}:/runner/artifacts/r1:Z" in mounts  # the callback's event data lands in the run dir
    for directory in ("inv", "keys", "vault"):  # inventory, the key + known_hosts it names, the vault file
        assert f"{tmp_path / directory}:{tmp_path / directory}:ro" in mounts, mounts
    cmdline = kwargs["cmdline"]
    assert f"--inventory={tmp_path / 'inv' / 'hosts.yml'}" in cmdline
    assert "--extra-vars=@/runner/env/extravars-00.json" in cmdline
    assert "s3cret-value" not in json.dumps(kwargs, default=str)
    # The value is in a 0600 file in the 0700 run directory, which only the container reads (as /runner).
    chunk = run_dir / "env" / "extravars-00.json"
    assert "s3cret-value" in chunk.read_text() and chunk.stat().st_mode & 0o777 == 0o600
    # gpulab's stop file as the container sees it; the host's venv PATH and collection paths stay out.
    assert (
        json.loads((run_dir / "env" / "extravars").read_text())["gpulab_stop_file"]
        == "/runner/stop-requested"
    )
    env = kwargs["envvars"]
    assert "PATH" not in env and "ANSIBLE_COLLECTIONS_PATH" not in env
    assert env["ANSIBLE_CONFIG"] == f"{ee_run.IMAGE_COLLECTION}/ansible.cfg"


@pytest.mark.containers
def test_missing_image_is_one_clear_message(tmp_path: Path) -> None:
    require_containers()
    env = tool_env() | {"GPULAB_STATE_DIR": str(tmp_path / "runs")}
    proc = run_gpulab(["provision", "--ee", "localhost/gpulab-ee:no-such-tag"], env)
    assert proc.returncode == ExitCode.USAGE_ERROR, proc.stderr
    assert "no such image" in proc.stderr and "python -m gpulab.ee build" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_podman_is_one_clear_message(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with python and ansible but no podman
    bin_dir.mkdir()
    env = tool_env() | {"GPULAB_STATE_DIR": str(tmp_path / "runs"), "PATH": str(bin_dir)}
    proc = run_gpulab(["provision", "--ee", "localhost/gpulab-ee:x"], env)
    assert proc.returncode == ExitCode.USAGE_ERROR, proc.stderr
    assert "podman is not installed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def ee_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    require_containers()
    if shutil.which("ansible-builder", path=tool_env()["PATH"]) is None:
        pytest.fail("ansible-builder is missing (pip install -e '.[test]')")
    base = tmp_path_factory.mktemp("ee-lab")
    nodes = ["--connection", "ssh", "--sudo-password", "--nodes", "ee-node=l40s-595.80"]
    with lab_up(base, nodes) as (env, _):
        yield env, base


@pytest.mark.containers
@pytest.mark.slow
def test_site_provisions_an_ssh_lab_node_from_inside_the_ee(
    ee_lab: tuple[dict[str, str], Path],
) -> None:
    env, base = ee_lab
    inventory = base / "lab" / "inventory" / "hosts.yml"
    assert ee.build(TEST_TAG, project=REPO, log=False) == TEST_TAG  # rebuilt only when its recipe changed
    password_file = base / "lab" / "ssh" / "sudo-password"
    password = password_file.read_text().strip()
    argv = ["provision", "--ee", TEST_TAG, "-i", str(inventory), "--become-password-file", str(password_file)]

    first = base / "first.json"
    proc = run_gpulab([*argv, "--report", str(first)], env, timeout=900)
    data = json.loads(first.read_text())
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    host = data["hosts"]["ee-node"]
    assert host["status"] == "ok" and host["counts"]["changed"] > 0, host
    assert host["mlp_check"]["passed"] is True, host["mlp_check"]
    assert data["options"]["ee"] == TEST_TAG
    assert data["options"]["strategy"] is None  # the image carries no Mitogen: the configured strategy
    # The playbook ran in the image: ansible-runner's command is podman, with the image's collection.
    command = json.loads((Path(data["artifacts"]) / "command").read_text())["command"]
    assert command[:2] == ["podman", "run"] and TEST_TAG in command and "gpulab.gpulab.site" in command

    # The re-run changes nothing; it asks for the sudo password (-K): sudo's prompt inside the container
    # reaches ansible-runner through podman's terminal, and the runner answers it.
    second = base / "second.json"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "gpulab", *argv[:-2], "-K", "--report", str(second)],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        codec_errors="replace",
        timeout=900,
    )
    child.expect(r"(?i)become password[^\r\n]*:", timeout=60)
    child.sendline(password)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.OK, str(child.before)[-3000:]
    data = json.loads(second.read_text())
    assert data["hosts"]["ee-node"]["counts"]["changed"] == 0, data["hosts"]["ee-node"]

    for path in (base / "runs").rglob("*"):  # the sudo password reached no artifact
        if path.is_file() and not path.is_symlink():
            assert password not in path.read_text(errors="replace"), path
