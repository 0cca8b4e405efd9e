"""The gpulab.gpulab collection as a user gets it, offline: built and installed with ansible-galaxy, its docs,
ansible-test sanity, its playbooks by FQCN from an empty directory, and the gpulab wheel in a fresh venv.

Every step runs away from the checkout (an empty cwd, no ANSIBLE_CONFIG, a collections path holding only
the installed copy), so nothing here can pass by finding the repository's own files.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN

pytestmark = pytest.mark.slow

MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
PLAYBOOKS = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
# What `gpulab/_collection/` in the wheel and the galaxy tarball hold, besides the metadata files.
CONTENT = {
    "CHANGELOG.md",
    "LICENSE",
    "README.md",
    "execution-environment.yml",  # so an installed gpulab can build the EE (gpulab.ee)
    "ansible.cfg",
    "docs",
    "inventory",
    "meta",
    "playbooks",
    "plugins",
    "roles",
    "templates",
}

# ansible-test sanity tests that run offline here. ansible-test runs most tests in venvs it builds with pip
# from the network (its get-pip bootstrap and pinned requirements); for ansible-doc and yamllint the
# controller's own packages are what those venvs need, so _offline_sanity_venv pre-makes them. Excluded:
#   validate-modules, runtime-metadata: need voluptuous/antsibull-docs-parser, not installed, no network;
#   import: builds a second venv per context with pip from the network;
#   pylint, pep8: pylint/pycodestyle not installed (ruff and mypy lint the Python in tests/test_lint.py);
#   changelog: no changelogs/ fragments (antsibull-changelog not installed).
SANITY_VENV_TESTS = ("ansible-doc", "yamllint")
SANITY_SKIPPED = ("validate-modules", "runtime-metadata", "import", "pylint", "pep8", "changelog")


def _env(collections: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "GPULAB_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_NOCOLOR="1",
        # The venv's cryptography warns about DSA at each ansible start; ansible-test fails on stderr.
        PYTHONWARNINGS="ignore::UserWarning",
        **extra,
    )
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(argv)} (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(tarball, collections dir, empty cwd): built from the checkout, installed offline from the tarball."""
    tmp = tmp_path_factory.mktemp("collection")
    empty = tmp / "empty"
    empty.mkdir()
    coll = tmp / "coll"
    env = _env(coll)
    _run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp), str(REPO)],
        empty,
        env,
    )
    tarball = tmp / f"gpulab-gpulab-{GALAXY['version']}.tar.gz"
    _run(
        [
            str(VENV_BIN / "ansible-galaxy"),
            "collection",
            "install",
            "--offline",
            str(tarball),
            "-p",
            str(coll),
        ],
        empty,
        env,
    )
    return tarball, coll, empty


def test_galaxy_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert GALAXY["version"] == pyproject["project"]["version"]
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    floor = re.search(r"ansible-core>=([\d.]+)", " ".join(pyproject["project"]["dependencies"]))
    assert floor is not None
    assert runtime["requires_ansible"] == f">={floor.group(1)}.0"


def test_tarball_holds_the_collection_and_nothing_of_the_project(installed: tuple[Path, Path, Path]) -> None:
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    top = {n.split("/", 1)[0] for n in names}
    assert top == CONTENT | {"MANIFEST.json", "FILES.json"}
    for plugin in ("plugins/modules/nvidia_gpu_facts.py", "plugins/filter/dl_env.py",
                   "plugins/plugin_utils/dl_env_specs.py", "plugins/lookup/host_lock_controller.py",
                   "roles/dl_env/files/mlp_check.py", "templates/environment.yml.j2"):  # fmt: skip
        assert plugin in names
    assert not [n for n in names if "/molecule/" in n or "__pycache__" in n], "build_ignore missed something"


def test_ansible_doc_renders_modules_lookup_filters_and_roles(installed: tuple[Path, Path, Path]) -> None:
    _, coll, empty = installed
    env = _env(coll)
    doc = str(VENV_BIN / "ansible-doc")
    for module in MODULES:
        out = _run([doc, "-t", "module", f"gpulab.gpulab.{module}"], empty, env)
        assert str(coll) in out, f"{module} did not come from the installed collection"
        assert "EXAMPLES:" in out and "RETURN VALUES:" in out, module
    _run([doc, "-t", "lookup", "gpulab.gpulab.host_lock_controller"], empty, env)
    # Every filter the plugins define is listed with its short description and has the docs of
    # plugins/filter/<name>.yml: its input, what it returns and an example.
    filters = sorted(f"gpulab.gpulab.{name}" for name in _filter_names())
    assert "gpulab.gpulab.cuda_check_select" in filters
    listed = json.loads(_run([doc, "-t", "filter", "-l", "--json", "gpulab.gpulab"], empty, env))
    assert sorted(listed) == filters
    assert not {name: desc for name, desc in listed.items() if not desc or desc == "UNDOCUMENTED"}
    docs = json.loads(_run([doc, "-t", "filter", "--json", *filters], empty, env))
    for name in filters:
        assert str(coll) in docs[name]["doc"]["filename"], f"{name} is not the installed collection's"
        assert "_input" in docs[name]["doc"]["options"], name
        assert docs[name]["return"]["_value"]["description"], name
        assert name in docs[name]["examples"], f"{name}'s EXAMPLES do not use it"
    roles = _run([doc, "-t", "role", "-l", "gpulab.gpulab"], empty, env)
    for role in ("cuda_check", "miniconda", "dl_env", "host_lock"):
        assert f"gpulab.gpulab.{role}" in roles


def _filter_names() -> set[str]:
    """The filters plugins/filter/*.py define: the keys of the dict each FilterModule.filters() returns
    (through filter_table)."""
    names: set[str] = set()
    for path in (REPO / "plugins" / "filter").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and ret.value is not None:
                        for table in ast.walk(ret.value):
                            if isinstance(table, ast.Dict):
                                names |= {str(k.value) for k in table.keys if isinstance(k, ast.Constant)}
    return names


def _offline_sanity_venv(home: Path, test: str, cwd: Path, env: dict[str, str]) -> None:
    """Pre-make the venv ansible-test would build for `test` (where it looks: the path it names when it
    cannot bootstrap pip) from the controller's site-packages; marker.txt says the venv is complete."""
    argv = [str(VENV_BIN / "ansible-test"), "sanity", "--python", "3.11", "--test", test]
    probe = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'Python 3\.11 at "([^"]+)/bin/python"', probe.stdout + probe.stderr)
    assert found, f"ansible-test {test} did not ask for a venv:\n{probe.stdout}\n{probe.stderr}"
    venv = Path(found.group(1))
    assert home in venv.parents
    shutil.rmtree(venv, ignore_errors=True)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "controller.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "zz_quiet.pth").write_text(
        'import warnings; warnings.filterwarnings("ignore", "DSA is deprecated")\n'
    )
    (venv / "meta.yaml.json").write_text("true\n")  # PyYAML with libyaml, as ansible-test's yamlcheck says
    (venv / "marker.txt").touch()


def test_ansible_test_sanity_is_clean(installed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, coll, _ = installed
    root = coll / "ansible_collections" / "gpulab" / "gpulab"
    env = _env(coll, HOME=str(tmp_path))  # ansible-test keeps its venvs under ~/.ansible/test
    for test in SANITY_VENV_TESTS:
        _offline_sanity_venv(tmp_path, test, root, env)
    skips = [arg for test in SANITY_SKIPPED for arg in ("--skip-test", test)]
    out = _run([str(VENV_BIN / "ansible-test"), "sanity", "--python", "3.11", *skips], root, env, timeout=600)
    for test in SANITY_VENV_TESTS:
        assert f'Running sanity test "{test}"' in out


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_collection_playbooks_by_fqcn_from_an_empty_directory(
    installed: tuple[Path, Path, Path], playbook: str
) -> None:
    _, coll, empty = installed
    out = _run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "--syntax-check",
            f"gpulab.gpulab.{playbook}",
        ],
        empty,
        _env(coll),
    )
    root = coll / "ansible_collections" / "gpulab" / "gpulab"
    assert f"playbook: {root / 'playbooks' / playbook}.yml" in out  # the installed copy, by its FQCN


def _copy_source(dest: Path) -> None:
    """The files a wheel is built from (a copy: pip's in-tree build would write build/ into the checkout)."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in sorted({"pyproject.toml", "setup.py", "MANIFEST.in", "galaxy.yml", "src"} | CONTENT):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=junk)
        else:
            shutil.copy2(REPO / name, dest / name)


def test_wheel_in_a_fresh_venv_runs_gpulab_render_from_its_own_collection(tmp_path: Path) -> None:
    src, wheels, venv, work, state = (tmp_path / n for n in ("src", "wheels", "venv", "work", "state"))
    for path in (src, work):
        path.mkdir()
    _copy_source(src)
    python = str(VENV_BIN / "python")
    build = [
        python,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        str(src),
        "-w",
        str(wheels),
    ]
    _run(build, src, dict(os.environ))
    wheel = next(wheels.glob("gpulab-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    _run([python, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
          "--no-index", str(wheel)], work, dict(os.environ))  # fmt: skip
    site = next((venv / "lib").glob("python3*/site-packages"))
    # The venv's own gpulab first; its dependencies (ansible-core, ansible-runner, ...) from the test venv.
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = _env(Path("/nonexistent"), XDG_STATE_HOME=str(state), HOME=str(tmp_path))
    env.pop("ANSIBLE_COLLECTIONS_PATH")
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = _run([str(venv / "bin" / "python"), "-c", "import gpulab; print(gpulab.__file__)"], work, env)
    assert Path(where.strip()).is_relative_to(site)
    out = _run([str(venv / "bin" / "gpulab"), "render", "--output", str(work / "rendered")], work, env)
    assert "ok (exit 0)" in out
    assert (work / "rendered" / "localhost" / "environment.yml").is_file()
    report = json.loads((state / "gpulab" / "runs" / "last" / "report.json").read_text())
    packaged = site / "gpulab" / "_collection" / "ansible_collections" / "gpulab" / "gpulab"
    assert report["playbook"] == str(packaged / "playbooks" / "render.yml")
    assert not (packaged / "runs").exists() and not list(work.glob("runs"))
