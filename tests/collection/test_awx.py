"""The project as AWX and ansible-navigator use it (docs/awx.md), offline: collections/requirements.yml
installs and covers every collection the playbooks name, the example inventory imports from its
project-relative path, the survey matches the variables' homes, set_stats reaches the job output, and
`ansible-navigator run` works without an execution environment.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.helpers import PROJECT
from tests.collection.test_collection import _run
from tests.conftest import IN_CI, REPO

# The venv of the Python running the tests (a checkout's .venv, or the one on PATH in a worktree).
BIN = Path(sys.executable).parent
REQUIREMENTS = REPO / "collections" / "requirements.yml"
SURVEY = REPO / "docs" / "awx-survey-provision.json"
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
# ansible-core's own collection: no requirements.yml entry installs it.
CORE = {"ansible.builtin", "ansible.legacy"}
FQCN = re.compile(r"^([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.[a-z][a-z0-9_.]*$")
# A plugin named inside Jinja: `| ns.coll.filter`, `is ns.coll.test`, lookup/query('ns.coll.name').
JINJA_FQCN = re.compile(
    r"(?:\|\s*|\bis\s+(?:not\s+)?|\b(?:lookup|query|q)\(\s*['\"])([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.[a-z]"
)
ROLE_KEYS = ("import_role", "include_role")
# Play/task keywords and connection variables whose value is a plugin name.
PLUGIN_VALUE_KEYS = {"connection", "strategy", "become_method", "ansible_connection", "ansible_become_method"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "GPULAB_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_NOCOLOR="1", **extra)
    return env


# --- collections/requirements.yml ---------------------------------------------------------------


def _walk(node: Any) -> Iterator[str]:
    """The collections (namespace.name) that YAML content names: module/action keys, roles, plugin-valued
    keywords, and filters/tests/lookups inside Jinja strings."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str) and (m := FQCN.match(k)):
                yield m.group(1)
            if isinstance(k, str) and k.endswith(ROLE_KEYS) and isinstance(v, dict):
                yield from _role(v.get("name"))
            if k == "roles" and isinstance(v, list):
                for entry in v:
                    yield from _role(
                        entry.get("role") or entry.get("name") if isinstance(entry, dict) else entry
                    )
            if k in PLUGIN_VALUE_KEYS and isinstance(v, str) and (m := FQCN.match(v)):
                yield m.group(1)
            yield from _walk(v)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, str):
        yield from JINJA_FQCN.findall(node)


def _role(name: Any) -> Iterator[str]:
    if isinstance(name, str) and (m := FQCN.match(name)):
        yield m.group(1)


def _content_files() -> list[Path]:
    """What AWX runs: playbooks, roles (not their Molecule scenarios) and the example inventory."""
    files = [*(REPO / "playbooks").rglob("*.yml"), *(REPO / "inventory").rglob("*.yml")]
    files += [p for p in (REPO / "roles").rglob("*.yml") if "molecule" not in p.relative_to(REPO).parts]
    return sorted(files)


def used_collections() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in _content_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for collection in _walk(doc):
                used.setdefault(collection, set()).add(str(path.relative_to(REPO)))
    return used


def listed_collections() -> set[str]:
    """Collection names requirements.yml installs; a git source counts as gpulab.gpulab only when it is
    galaxy.yml's repository."""
    names = set()
    for entry in yaml.safe_load(REQUIREMENTS.read_text(encoding="utf-8"))["collections"]:
        entry = entry if isinstance(entry, dict) else {"name": entry}
        if entry.get("type", "galaxy") == "galaxy":
            names.add(entry["name"])
        elif entry["name"] in (GALAXY["repository"], f"{GALAXY['repository']}.git"):
            names.add(f"{GALAXY['namespace']}.{GALAXY['name']}")
    return names


def test_the_scan_sees_modules_roles_and_filters() -> None:
    """The scanner itself: it must find what a playbook names, or the coverage test below proves nothing."""
    play = yaml.safe_load(
        """
        - hosts: all
          connection: community.docker.docker
          roles: [{role: acme.roles.base}]
          tasks:
            - community.general.ini_file: {path: /x}
            - ansible.builtin.import_role: {name: gpulab.gpulab.dl_env}
            - ansible.builtin.debug: {msg: "{{ x | acme.filters.f }} {{ lookup('acme.lookups.l', 'y') }}"}
        """
    )
    assert set(_walk(play)) == {
        "community.docker",
        "acme.roles",
        "community.general",
        "ansible.builtin",
        "gpulab.gpulab",
        "acme.filters",
        "acme.lookups",
    }


def test_requirements_list_every_collection_the_content_names() -> None:
    used = used_collections()
    assert {"ansible.builtin", "gpulab.gpulab"} <= used.keys()
    missing = {
        name: sorted(files)[:3] for name, files in used.items() if name not in CORE | listed_collections()
    }
    assert not missing, f"add these to collections/requirements.yml (named in): {missing}"


def test_the_git_source_is_the_collection_release() -> None:
    (entry,) = [e for e in yaml.safe_load(REQUIREMENTS.read_text())["collections"] if e.get("type") == "git"]
    assert entry["name"] == f"{GALAXY['repository']}.git"
    assert entry["version"] == GALAXY["version"]  # the release tag is galaxy.yml's version


@pytest.mark.slow
@pytest.mark.parametrize("source", ["git", "dir"])
def test_requirements_install_offline_from_a_local_source(tmp_path: Path, source: str) -> None:
    """The committed requirements.yml with gpulab.gpulab's source pointed at this checkout (git: its
    committed HEAD through git+file://, as AWX clones it; dir: the working tree, as an air-gapped lab)."""
    entries = []
    for entry in yaml.safe_load(REQUIREMENTS.read_text())["collections"]:
        if entry.get("type") == "git":
            entry = (
                {"name": f"git+file://{REPO}", "type": "git", "version": "HEAD"}
                if source == "git"
                else {"name": str(REPO), "type": "dir"}
            )
        entries.append(entry)
    requirements = tmp_path / "requirements.yml"
    requirements.write_text(yaml.safe_dump({"collections": entries}))
    coll = tmp_path / "coll"
    env = _env(ANSIBLE_COLLECTIONS_PATH=str(coll))
    argv = [str(BIN / "ansible-galaxy"), "collection", "install", "-r", str(requirements), "-p", str(coll)]
    _run(argv, tmp_path, env)
    root = coll / "ansible_collections" / "gpulab" / "gpulab"
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == GALAXY["version"]
    assert (root / "roles" / "dl_env" / "tasks" / "main.yml").is_file()
    assert not (root / "collections").exists()  # the project's own requirements stay out (build_ignore)
    out = _run([str(BIN / "ansible-galaxy"), "collection", "list", "-p", str(coll)], tmp_path, env)
    assert re.search(rf"gpulab\.gpulab\s+{re.escape(GALAXY['version'])}", out)


# --- inventory source ---------------------------------------------------------------------------


def test_example_inventory_imports_from_its_project_relative_path() -> None:
    """What an AWX inventory source "Sourced from a Project" runs: ansible-inventory on the project path,
    group_vars/ and host_vars/ beside it included."""
    out = _run(
        [str(BIN / "ansible-inventory"), "-i", "inventory/example_cluster", "--list"],
        REPO,
        _env(),
        timeout=120,
    )
    inventory = json.loads(out)
    assert set(inventory["all"]["children"]) >= {"gpu_a100", "gpu_h100", "cpu_nodes"}
    hostvars = inventory["_meta"]["hostvars"]
    assert set(hostvars) == {"a100-01", "a100-02", "h100-01", "login-01"}
    assert hostvars["login-01"]["dl_env_name"] == "gpulab"  # group_vars/all
    assert hostvars["h100-01"]["dl_env_drain_command"][0] == "scontrol"  # group_vars/gpu_h100
    assert "jupyterlab" in hostvars["a100-02"]["dl_env_host_conda_packages"]  # host_vars
    assert "dl_env_drain_command" not in hostvars["a100-01"]


# --- survey -------------------------------------------------------------------------------------

SURVEY_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "textarea": (str,),
    "integer": (int,),
    "float": (float, int),
}


def _homes() -> dict[str, dict[str, Any]]:
    """variable -> {type, default[, choices]}: the roles' argument specs (main entry points) and the
    `"{{ var | default(X) }}"` play keywords of site.yml."""
    homes: dict[str, dict[str, Any]] = {}
    for path in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        spec = yaml.safe_load(path.read_text())["argument_specs"]["main"]["options"]
        for name, option in spec.items():
            homes[name] = {k: option[k] for k in ("type", "default", "choices") if k in option}
    for play in yaml.safe_load((REPO / "playbooks" / "site.yml").read_text()):
        for value in play.values():
            m = re.fullmatch(r"\{\{ (\w+) \| default\((.+)\) \}\}", value) if isinstance(value, str) else None
            if m:
                default = yaml.safe_load(m.group(2))
                if isinstance(default, str) and " if " in default:  # decided in the play: no survey default
                    homes[m.group(1)] = {"type": "int", "default": ""}
                else:
                    homes[m.group(1)] = {"type": type(default).__name__, "default": default}
    return homes


def test_every_survey_question_matches_its_variables_home() -> None:
    survey = json.loads(SURVEY.read_text())
    assert survey["name"] and survey["spec"]
    homes = _homes()
    for question in survey["spec"]:
        name = question["variable"]
        assert name in homes, f"{name}: no role argument spec or site.yml keyword defines it"
        home, kind = homes[name], question["type"]
        assert question["required"] is False, f"{name}: a survey default must be the variable's default"
        if kind == "multiplechoice":
            choices = question["choices"].split("\n")
            if home["type"] == "bool":
                assert choices == ["false", "true"] and question["default"] == str(home["default"]).lower()
            else:
                assert (
                    set(choices) <= set(home.get("choices", choices))
                    and question["default"] == home["default"]
                )
        else:
            assert kind in SURVEY_TYPES, f"{name}: survey type {kind}"
            assert home["type"] in {t.__name__ for t in SURVEY_TYPES[kind]}, (
                f"{name}: {kind} vs {home['type']}"
            )
            assert question["default"] == home["default"], name
    asked = {q["variable"] for q in survey["spec"]}
    assert {"gpulab_batch", "gpulab_max_fail_percentage", "dl_env_reverify", "host_lock_break"} <= asked


# --- set_stats in the job output ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("show", [True, False])
def test_set_stats_are_printed_when_show_custom_stats_is_set(tmp_path: Path, show: bool) -> None:
    """A plain ansible-playbook run (AWX's stdout) prints the run-level set_stats data only with
    ANSIBLE_SHOW_CUSTOM_STATS; AWX keeps it as the job's artifacts either way."""
    extra = {"ANSIBLE_SHOW_CUSTOM_STATS": "true"} if show else {}
    out = _run(
        [str(BIN / "ansible-playbook"), "-i", "inventory/healthy.yml", "playbooks/site.yml"],
        PROJECT,
        _env(**extra),
        timeout=120,
    )
    assert ("CUSTOM STATS" in out) is show
    if show:
        stats = out[out.index("CUSTOM STATS") :]
        assert re.search(r'"gpulab": \{\s*"good1": \{.*"env_action": "created"', stats), stats


# --- ansible-navigator ---------------------------------------------------------------------------


@pytest.mark.slow
def test_navigator_runs_a_gpulab_playbook_without_an_execution_environment(tmp_path: Path) -> None:
    """`ansible-navigator run` from the checkout (its ansible-navigator.yml applies) with --ee false:
    gpulab.gpulab.render on this machine, changing nothing on it; its set_stats data in the output."""
    navigator = BIN / "ansible-navigator"
    if not navigator.exists():
        problem = "ansible-navigator is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    artifact = tmp_path / "render-artifact.json"
    out = _run(
        [
            str(navigator),
            "run",
            "gpulab.gpulab.render",
            "--ee",
            "false",
            "--mode",
            "stdout",
            "--dc",
            "false",
            "-i",
            "inventory/local/hosts.yml",
            "--pas",
            str(artifact),
            "--lf",
            str(tmp_path / "navigator.log"),
            "-e",
            f"dl_env_render_dest_controller={tmp_path / 'rendered'}",
        ],
        REPO,
        _env(HOME=str(tmp_path), ANSIBLE_SHOW_CUSTOM_STATS="true"),
        timeout=300,
    )
    # ansible.cfg's yaml result format prints the same data as YAML
    assert re.search(r"gpulab:\s+localhost:.*env_action: rendered", out[out.index("CUSTOM STATS") :], re.S)
    assert re.search(r"localhost\s+: ok=\d+ .*failed=0", out), out[-3000:]
    assert (tmp_path / "rendered" / "localhost" / "environment.yml").is_file()
    assert json.loads(artifact.read_text())["status"] == "successful"
