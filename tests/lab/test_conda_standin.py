"""The stand-in conda against the facts documents.

`docs/conda-facts.md` (cited "conda-facts §N") holds the facts the roles rely on, checked against conda's
and the ToS plugin's source; the other tests cite the team's longer research notes by the same section numbers
("§N"). Each test names the section it checks. Every test gets a fresh HOME (so `~/.conda`, `~/.condarc`
and the ToS records are its own) and runs the conda of a stand-in install made once per module into a tmp dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpulab.lab import installer, wheelhouse

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "gpulab-lab"
HOST_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
V2511, V255, V245 = "py311_25.11.1-1", "py311_25.5.1-1", "py311_24.5.0-0"
FORGE = "25.11.1-0"
CI_VARS = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "TRAVIS", "TF_BUILD", "JENKINS_URL", "BUILDKITE", "CIRCLECI")

Conda = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def prefixes(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Install a stand-in release once per module; returns a lookup (release, flavor) -> prefix."""
    root = tmp_path_factory.mktemp("standin")
    made: dict[tuple[str, str], Path] = {}

    def get(version: str, flavor: str = "miniconda") -> Path:
        key = (version, flavor)
        if key not in made:
            script = installer.build_installer(root / "out", version, flavor, cache_dir=CACHE)  # type: ignore[arg-type]
            prefix = root / f"{flavor}-{version}"
            env = dict(os.environ, HOME=str(root / "installhome"))
            r = subprocess.run(
                ["sh", str(script), "-b", "-p", str(prefix)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            assert r.returncode == 0, r.stderr
            made[key] = prefix
        return made[key]

    return get


@pytest.fixture()
def base_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONDA", "PIP_", "PYTHON", "_CE_", "_CONDA")) and k not in CI_VARS
    }
    env.update(
        HOME=str(home),
        GPULAB_STANDIN_FAULTS=str(tmp_path / "faults"),
        CI="false",
        CONDA_PLUGINS_AUTO_ACCEPT_TOS="yes",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(tmp_path / "nowheels"),
    )
    return env


def make_conda(prefix: Path, env: dict[str, str]) -> Conda:
    def conda(
        *args: str, extra: dict[str, str] | None = None, stdin: str = "", cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        e = dict(env, **(extra or {}))
        return subprocess.run(
            [str(prefix / "bin" / "conda"), *args],
            capture_output=True,
            text=True,
            env=e,
            input=stdin,
            cwd=cwd,
            check=False,
            timeout=120,
        )

    return conda


@pytest.fixture()
def conda(prefixes: Callable[[str, str], Path], base_env: dict[str, str]) -> Conda:
    return make_conda(prefixes(V2511, "miniconda"), base_env)


def spec(tmp_path: Path, text: str, name: str = "environment.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


SIMPLE = f"""name: demo
channels: [conda-forge]
dependencies:
  - python={HOST_PY}
  - pip
  - cuda-version=12.4
  - pytorch-gpu=2.5.1
variables:
  GPULAB_DEMO: "1"
"""


# -- §1.7 / §2.0 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [V2511, V255])
def test_version(prefixes: Callable[[str, str], Path], base_env: dict[str, str], version: str) -> None:
    """§1.7: `conda --version` / `-V` print `conda X.Y.Z` on stdout, rc 0."""
    c = make_conda(prefixes(version, "miniconda"), base_env)
    want = f"conda {installer.conda_version_of(version)}\n"
    for flag in ("--version", "-V"):
        r = c(flag)
        assert (r.returncode, r.stdout) == (0, want)


def test_argparse_error_rc2(conda: Conda, tmp_path: Path) -> None:
    """§2.0/§2.1: `env create --force` (removed in 24.3) is an argparse error:
    usage + `unrecognized arguments`, rc 2."""
    r = conda("env", "create", "-f", spec(tmp_path, SIMPLE), "--force")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "usage: conda [-h] [-v] [--no-plugins] [-V] COMMAND ..."
    assert r.stderr.splitlines()[-1] == "conda: error: unrecognized arguments: --force"
    assert conda("env", "update", "-f", spec(tmp_path, SIMPLE), "-y").returncode == 2  # §2.2: no --yes


def test_error_text_and_json_error_object(conda: Conda, tmp_path: Path) -> None:
    """§2.0: errors are `\\n<Class>: <msg>\\n` on stderr with rc 1; with --json a dump_map object
    on stdout."""
    missing = tmp_path / "nope.yml"
    r = conda("env", "create", "-f", str(missing))
    assert r.returncode == 1
    assert r.stderr == f"\nEnvironmentFileNotFound: '{missing}' file not found\n\n"
    r = conda("env", "remove", "-n", "ghost", "--yes", "--json")
    assert r.returncode == 1
    obj = json.loads(r.stdout)
    assert set(obj) >= {"caused_by", "error", "exception_name", "exception_type", "message"}
    assert obj["exception_name"] == "EnvironmentLocationNotFound"
    assert obj["exception_type"] == "<class 'conda.exceptions.EnvironmentLocationNotFound'>"
    assert obj["error"].startswith("EnvironmentLocationNotFound: Not a conda environment: ")
    assert list(obj) == sorted(obj)  # error objects keep sort_keys=True


# -- §2.6 / §2.5 ---------------------------------------------------------------------------------------
def test_info_json_keys_and_base(conda: Conda, prefixes: Callable[[str, str], Path]) -> None:
    """§2.6: `conda info --json` key set; channels are full per-subdir URLs; `--base` prints the root."""
    prefix = prefixes(V2511, "miniconda")
    info = json.loads(conda("info", "--json").stdout)
    for key in (
        "platform",
        "conda_version",
        "root_prefix",
        "root_writable",
        "pkgs_dirs",
        "envs_dirs",
        "channels",
        "active_prefix",
        "active_prefix_name",
        "conda_shlvl",
        "sys_rc_path",
        "envs",
        "python_version",
        "virtual_pkgs",
        "solver",
        "UID",
        "GID",
        "sys.prefix",
        "env_vars",
        "envs_details",
    ):
        assert key in info, key
    assert info["conda_version"] == "25.11.1"
    assert info["root_prefix"] == str(prefix)
    assert info["channels"][:2] == [
        "https://repo.anaconda.com/pkgs/main/linux-64",
        "https://repo.anaconda.com/pkgs/main/noarch",
    ]
    assert info["active_prefix"] is None and info["conda_shlvl"] == -1
    assert conda("info", "--base").stdout == f"{prefix}\n"
    assert json.loads(conda("info", "--base", "--json").stdout) == {"root_prefix": str(prefix)}


@pytest.mark.parametrize(
    ("version", "shape"),
    [(V2511, "envs+details"), (V255, "full-info"), (V245, "envs-only")],
)
def test_env_list_json_shape_by_version(
    prefixes: Callable[[str, str], Path], base_env: dict[str, str], version: str, shape: str
) -> None:
    """§2.5: 24.1-24.5 `{"envs"}` sorted keys; 24.7-25.9 the whole info dict;
    25.11 `envs` + `envs_details`."""
    prefix = prefixes(version, "miniconda")
    r = make_conda(prefix, base_env)("env", "list", "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert str(prefix) in obj["envs"]
    if shape == "envs-only":
        assert list(obj) == ["envs"]
    elif shape == "full-info":
        assert "conda_version" in obj and "root_prefix" in obj and "envs_details" not in obj
        assert list(obj) == sorted(obj)  # sort_keys up to 25.5
    else:
        assert list(obj) == ["envs", "envs_details"]
        det = obj["envs_details"][str(prefix)]
        assert list(det) == ["name", "created", "last_modified", "active", "base", "frozen", "writable"]
        assert det["name"] == "base" and det["base"] is True and det["created"].endswith("+00:00")


# -- §2.1 env create --------------------------------------------------------------------------------------
def test_env_create_records_and_lists(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§2.1/§2.7/§7.4: a real venv; conda-only packages recorded; `list --json` 8-key dicts; history, state,
    environments.txt; the activation banner; `env export` (§3 schema; `--from-history` from history specs)."""
    prefix = prefixes(V2511, "miniconda") / "envs" / "demo"
    r = conda("env", "create", "-f", spec(tmp_path, SIMPLE))
    assert r.returncode == 0, r.stderr
    assert "#     $ conda activate demo\n" in r.stdout
    py = subprocess.run(
        [prefix / "bin" / "python", "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert py.stdout.strip() == str(prefix)
    items = json.loads(conda("list", "-n", "demo", "--json").stdout)
    by_name = {i["name"]: i for i in items}
    assert [i["name"] for i in items] == sorted(by_name)
    assert set(by_name) >= {"python", "pip", "cuda-version", "pytorch-gpu"}
    assert list(by_name["cuda-version"]) == [
        "base_url",
        "build_number",
        "build_string",
        "channel",
        "dist_name",
        "name",
        "platform",
        "version",
    ]
    assert (
        by_name["cuda-version"]["version"] == "12.4" and by_name["cuda-version"]["channel"] == "conda-forge"
    )
    assert by_name["pytorch-gpu"]["base_url"] == "https://conda.anaconda.org/conda-forge"
    record = json.loads(next((prefix / "conda-meta").glob("pytorch-gpu-*.json")).read_text())
    assert "NOT installed" in record["gpulab_standin_note"]
    history = (prefix / "conda-meta" / "history").read_text().splitlines()
    assert history[0].startswith("==> ") and history[1].startswith("# cmd: ")
    assert history[2] == "# conda version: 25.11.1"
    assert "+conda-forge/noarch::cuda-version-12.4-standin_0" in history
    assert history[-1].startswith("# update specs: [")
    assert json.loads((prefix / "conda-meta" / "state").read_text()) == {"env_vars": {"GPULAB_DEMO": "1"}}
    txt = (Path(base_env["HOME"]) / ".conda" / "environments.txt").read_text().splitlines()
    assert str(prefix) in txt
    assert str(prefix) in json.loads(conda("env", "list", "--json").stdout)["envs"]
    exported = conda("env", "export", "-n", "demo")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("name: demo\nchannels:\n  - conda-forge\ndependencies:\n")
    assert "  - cuda-version=12.4=standin_0\n" in exported.stdout
    assert exported.stdout.endswith(f"variables:\n  GPULAB_DEMO: '1'\nprefix: {prefix}\n")
    history_only = conda("env", "export", "-n", "demo", "--from-history").stdout
    assert "  - pytorch-gpu=2.5.1\n" in history_only and "standin_0" not in history_only
    assert conda("env", "remove", "-n", "demo", "--yes").returncode == 0


def test_env_create_installs_real_wheels(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """§2.1/§2.7: non-conda-only packages really come from pip (the index pip reads from its environment);
    they show up in `conda list --json` as `pypi` entries; `--json` prints the actions object."""
    house = wheelhouse.ensure(CACHE / "wheelhouse", pythons=(HOST_PY,), packages=("numpy", "pip"))
    text = f"name: np\nchannels: [conda-forge]\ndependencies:\n  - python={HOST_PY}\n  - pip\n  - numpy\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "--json", extra={"PIP_FIND_LINKS": str(house)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["success"] is True and out["prefix"].endswith("/envs/np")
    assert list(out["actions"])[:4] == ["FETCH", "LINK", "PREFIX", "UNLINK"]
    assert any(p.startswith("numpy-") for p in out["actions"]["PIP"])
    run = conda("run", "-n", "np", "python", "-c", "import numpy; print(numpy.__name__)")
    assert run.stdout == "numpy\n\n"
    numpy = next(i for i in json.loads(conda("list", "-n", "np", "--json").stdout) if i["name"] == "numpy")
    assert numpy["channel"] == "pypi" and numpy["build_string"] == "pypi_0" and numpy["platform"] == "pypi"
    assert numpy["dist_name"] == f"numpy-{numpy['version']}-pypi_0"
    assert conda("env", "remove", "-n", "np", "--yes").returncode == 0


def test_env_create_package_not_found_rolls_back(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """§2.0/§6.5: a package nobody provides -> PackagesNotFoundError, rc 1, and no half-built prefix."""
    text = f"dependencies:\n  - python={HOST_PY}\n  - no-such-package-gpulab\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "-n", "nf")
    assert r.returncode == 1
    assert r.stderr.startswith(
        "\nPackagesNotFoundError: The following packages are not available from current "
        "channels:\n\n  - no-such-package-gpulab\n\nCurrent channels:\n\n"
    )
    assert not (prefixes(V2511, "miniconda") / "envs" / "nf").exists()


def test_env_create_python_must_match(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A python version the host interpreter is not -> a failed solve with conda's error shape, rc 1."""
    r = conda("env", "create", "-f", spec(tmp_path, "dependencies:\n  - python=3.8\n"), "-n", "py38")
    assert r.returncode == 1
    assert "PackagesNotFoundError" in r.stderr and "  - python=3.8" in r.stderr
    assert not (prefixes(V2511, "miniconda") / "envs" / "py38").exists()


@pytest.mark.parametrize(("version", "refuses"), [(V2511, False), (V255, False), (V245, True)])
def test_env_create_on_existing_env(
    prefixes: Callable[[str, str], Path],
    base_env: dict[str, str],
    tmp_path: Path,
    version: str,
    refuses: bool,
) -> None:
    """§2.1: existing env without --yes: 24.x `CondaValueError: prefix already exists` rc 1; 25.5-25.11
    installs into it with rc 0 (issue #15071); `--yes` removes and recreates it."""
    c = make_conda(prefixes(version, "miniconda"), base_env)
    target = tmp_path / "envx"
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    assert c("env", "create", "-f", f, "-p", str(target)).returncode == 0
    (target / "marker").write_text("x")
    f2 = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n  - cuda-version=12.6\n", "two.yml")
    r = c("env", "create", "-f", f2, "-p", str(target))
    if refuses:
        assert r.returncode == 1
        assert r.stderr == f"\nCondaValueError: prefix already exists: {target}\n\n"
    else:
        assert r.returncode == 0, r.stderr
        assert (target / "marker").exists()
        assert list((target / "conda-meta").glob("cuda-version-12.6-*.json"))
    r = c("env", "create", "-f", f2, "-p", str(target), "--yes")
    assert r.returncode == 0, r.stderr
    assert not (target / "marker").exists()


def test_env_create_without_name(conda: Conda, tmp_path: Path) -> None:
    """§2.1: 25.x with no -n, no -p and no `name:` -> CondaEnvException `Unable to create environment`, rc 1;
    targeting base -> `'base' is a reserved environment name`."""
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    r = conda("env", "create", "-f", f)
    assert r.returncode == 1
    assert r.stderr.startswith("\nCondaEnvException: Unable to create environment\n")
    assert "* Provide a path on disk via --prefix or -p" in r.stderr
    r = conda("env", "create", "-f", f, "-n", "base")
    assert (r.returncode, r.stderr) == (1, "\nCondaValueError: 'base' is a reserved environment name\n\n")


def test_env_create_dry_run(conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path) -> None:
    """§2.1 option `-d/--dry-run` (§2.0 `DryRunExit` is a CondaExitZero): the plan, nothing created, rc 0."""
    r = conda("env", "create", "-f", spec(tmp_path, SIMPLE), "-n", "dry", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "cuda-version" in r.stdout and "DryRunExit: Dry run. Exiting." in r.stderr
    assert not (prefixes(V2511, "miniconda") / "envs" / "dry").exists()


def test_env_file_without_dependencies(conda: Conda, tmp_path: Path) -> None:
    """§3: a file without `dependencies` -> EnvironmentFileInvalid, rc 1."""
    r = conda("env", "create", "-f", spec(tmp_path, "name: x\n"))
    assert r.returncode == 1
    assert (
        "EnvironmentFileInvalid: Provided environment.yaml is invalid: Missing required field 'dependencies'"
        in (r.stderr)
    )


# -- §2.2 env update ---------------------------------------------------------------------------------------
def test_env_update(conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path) -> None:
    """§2.2: update creates a missing env; a no-op with --json says
    `All requested packages already installed.`;
    `variables:` are merged into conda-meta/state."""
    prefix = prefixes(V2511, "miniconda") / "envs" / "upd"
    f = spec(tmp_path, f"name: upd\ndependencies:\n  - python={HOST_PY}\nvariables:\n  A: '1'\n")
    r = conda("env", "update", "-f", f)
    assert r.returncode == 0, r.stderr
    assert (prefix / "conda-meta" / "history").is_file()
    r = conda("env", "update", "-f", f, "--json")
    assert json.loads(r.stdout) == {"message": "All requested packages already installed.", "success": True}
    f2 = spec(tmp_path, f"name: upd\ndependencies:\n  - python={HOST_PY}\nvariables:\n  B: '2'\n", "b.yml")
    assert conda("env", "update", "-f", f2).returncode == 0
    assert json.loads((prefix / "conda-meta" / "state").read_text())["env_vars"] == {"A": "1", "B": "2"}
    assert conda("env", "remove", "-p", str(prefix), "--yes").returncode == 0


# -- §2.3 env remove ---------------------------------------------------------------------------------------
def test_env_remove(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§2.3: missing env -> EnvironmentLocationNotFound rc 1; base refused;
    `--yes` deletes and unregisters."""
    root = prefixes(V2511, "miniconda")
    r = conda("env", "remove", "-n", "never", "--yes")
    assert (r.returncode, r.stderr) == (
        1,
        f"\nEnvironmentLocationNotFound: Not a conda environment: {root}/envs/never\n\n",
    )
    r = conda("env", "remove", "-n", "base", "--yes")
    assert r.returncode == 1
    assert (
        "CondaEnvironmentError: cannot remove root environment, add -n NAME or -p PREFIX option" in r.stderr
    )
    assert (
        conda(
            "env", "create", "-f", spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"), "-n", "gone"
        ).returncode
        == 0
    )
    r = conda("env", "remove", "-n", "gone", "--yes")
    assert r.returncode == 0, r.stderr
    assert f"Remove all packages in environment {root}/envs/gone:" in r.stdout
    assert not (root / "envs" / "gone").exists()
    assert f"{root}/envs/gone" not in (Path(base_env["HOME"]) / ".conda" / "environments.txt").read_text()


def test_env_remove_without_yes_on_eof(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """§2.3 pitfall: no --yes, stdin at EOF: packages removed, the final delete defaults to no,
    `CondaSystemExit: Exiting.` with rc 0 and the directory left behind."""
    root = prefixes(V2511, "miniconda")
    assert (
        conda(
            "env", "create", "-f", spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"), "-n", "gut"
        ).returncode
        == 0
    )
    r = conda("env", "remove", "-n", "gut")
    assert r.returncode == 0
    assert "CondaSystemExit: Exiting." in r.stderr
    assert (root / "envs" / "gut").is_dir()
    assert not list((root / "envs" / "gut" / "conda-meta").glob("*.json"))


# -- §2.8 run -------------------------------------------------------------------------------------------
def test_run(conda: Conda, tmp_path: Path) -> None:
    """conda-facts §2.8: rc passthrough (and the ERROR log line), one extra newline in capture mode (<=25.11),
    stdin at EOF,
    `--no-capture-output` streams without the extra newline, a missing env -> EnvironmentLocationNotFound."""
    assert (
        conda(
            "env", "create", "-f", spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"), "-n", "runner"
        ).returncode
        == 0
    )
    r = conda("run", "-n", "runner", "python", "-c", "import sys; print(sys.prefix); sys.exit(3)")
    assert r.returncode == 3
    assert r.stdout.endswith("/envs/runner\n\n")
    assert "failed. (See above for error)" in r.stderr
    r = conda(
        "run", "-n", "runner", "python", "-c", "import sys; print(repr(sys.stdin.read()))", stdin="data"
    )
    assert r.stdout == "''\n\n"
    r = conda("run", "-n", "runner", "--no-capture-output", "python", "-c", "print('live')")
    assert (r.returncode, r.stdout) == (0, "live\n")
    assert conda("run", "-n", "runner", "no-such-command-xyz").returncode == 127
    r = conda("run", "-n", "runner", "env")
    assert "CONDA_PREFIX=" in r.stdout and "CONDA_AUTO_ACTIVATE" not in r.stdout
    r = conda("run", "-n", "absent", "true")
    assert r.returncode == 1 and "EnvironmentLocationNotFound: Not a conda environment:" in r.stderr


# -- §1.6 activation --------------------------------------------------------------------------------------
def test_activate_through_conda_sh(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§1.6: `etc/profile.d/conda.sh` defines the `conda` shell function; `conda activate NAME` puts the env
    first on PATH (its python, its `variables:`) and `conda deactivate` undoes it."""
    root = prefixes(V2511, "miniconda")
    text = f"dependencies:\n  - python={HOST_PY}\nvariables:\n  GPULAB_X: hello\n"
    assert conda("env", "create", "-f", spec(tmp_path, text), "-n", "act").returncode == 0
    script = (
        f"source {root}/etc/profile.d/conda.sh && conda activate act && "
        "python -c 'import sys, os; print(sys.prefix, os.environ[\"GPULAB_X\"])' && "
        "echo $CONDA_DEFAULT_ENV $CONDA_SHLVL && conda deactivate && echo ${CONDA_PREFIX:-none} $CONDA_SHLVL"
    )
    r = subprocess.run(["bash", "-lc", script], capture_output=True, text=True, env=base_env, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{root}/envs/act hello", "act 1", "none 0"]
    r = subprocess.run(
        ["bash", "-lc", f"source {root}/etc/profile.d/conda.sh && conda activate nosuch"],
        capture_output=True,
        text=True,
        env=base_env,
        check=False,
    )
    assert (
        r.returncode != 0 and "EnvironmentNameNotFound: Could not find conda environment: nosuch" in r.stderr
    )


# -- §5 Terms of Service ----------------------------------------------------------------------------------
TOS_NEW = """
CondaToSNonInteractiveError: Terms of Service have not been accepted for the following channels. Please accept or remove them before proceeding:
    - https://repo.anaconda.com/pkgs/main
    - https://repo.anaconda.com/pkgs/r

To accept these channels' Terms of Service, run the following commands:
    conda tos accept --override-channels --channel https://repo.anaconda.com/pkgs/main
    conda tos accept --override-channels --channel https://repo.anaconda.com/pkgs/r

For information on safely removing channels from your conda configuration,
please see the official documentation:

    https://www.anaconda.com/docs/tools/working-with-conda/channels

"""  # noqa: E501


@pytest.fixture()
def strict(prefixes: Callable[[str, str], Path], base_env: dict[str, str]) -> Conda:
    """Miniconda 25.11 conda with no auto-acceptance and CI detection off (CI=false)."""
    env = dict(base_env)
    env.pop("CONDA_PLUGINS_AUTO_ACCEPT_TOS")
    return make_conda(prefixes(V2511, "miniconda"), env)


def test_tos_error_text(
    strict: Conda, tmp_path: Path, prefixes: Callable[[str, str], Path], base_env: dict[str, str]
) -> None:
    """§5: Miniconda with defaults channels, not interactive -> the plugin 0.2.1+ error, rc 1;
    `--yes` does not
    accept; older releases print the <=0.2.0 wording; `run`/`list`/`info` are not gated."""
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    r = strict("env", "create", "-f", f, "-n", "tos1", "--yes")
    assert (r.returncode, r.stderr) == (1, TOS_NEW)
    assert strict("info", "--json").returncode == 0 and strict("env", "list", "--json").returncode == 0
    env = dict(base_env)
    env.pop("CONDA_PLUGINS_AUTO_ACCEPT_TOS")
    old = make_conda(prefixes(V255, "miniconda"), env)("env", "create", "-f", f, "-n", "tos1")
    assert old.returncode == 1
    assert "    \u2022 https://repo.anaconda.com/pkgs/main\n" in old.stderr
    assert "\u2023 conda tos accept --override-channels --channel CHANNEL" in old.stderr


@pytest.mark.parametrize("how", ["env-var", "condarc", "ci"])
def test_tos_auto_accept(strict: Conda, tmp_path: Path, base_env: dict[str, str], how: str) -> None:
    """§5 decision order: CONDA_PLUGINS_AUTO_ACCEPT_TOS, `.condarc` `plugins: {auto_accept_tos: true}`,
    CI=true."""
    extra: dict[str, str] = {}
    if how == "env-var":
        extra["CONDA_PLUGINS_AUTO_ACCEPT_TOS"] = "yes"
    elif how == "condarc":
        (Path(base_env["HOME"]) / ".condarc").write_text("plugins:\n  auto_accept_tos: true\n")
    else:
        extra["CI"] = "true"
    r = strict(
        "env",
        "create",
        "-f",
        spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"),
        "-n",
        f"t-{how}",
        extra=extra,
    )
    assert r.returncode == 0, r.stderr
    assert "you acknowledge and agree to the Terms of Service" in r.stdout
    assert strict("env", "remove", "-n", f"t-{how}", "--yes", extra=extra).returncode == 0


def test_tos_accept_records(
    strict: Conda, tmp_path: Path, prefixes: Callable[[str, str], Path], base_env: dict[str, str]
) -> None:
    """conda-facts §5.3: `conda tos accept --override-channels --channel URL` prints
    `accepted Terms of Service for URL`, writes a record (default `~/.conda/tos`, `--system` under
    `<PREFIX>/conda-meta/tos`), after which the gate passes."""
    for url in ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r"):
        r = strict("tos", "accept", "--override-channels", "--channel", url)
        assert (r.returncode, r.stdout) == (0, f"accepted Terms of Service for {url}\n")
    records = list((Path(base_env["HOME"]) / ".conda" / "tos").glob("*/*.json"))
    assert len(records) == 2
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    assert strict("env", "create", "-f", f, "-n", "tosok").returncode == 0
    assert strict("env", "remove", "-n", "tosok", "--yes").returncode == 0
    r = strict("tos", "accept", "--override-channels", "--channel", "conda-forge", "--system")
    assert r.stdout == "Terms of Service not found for https://conda.anaconda.org/conda-forge\n"
    strict("tos", "accept", "--system")
    assert len(list((prefixes(V2511, "miniconda") / "conda-meta" / "tos").glob("*/*.json"))) == 2


def test_tos_record_key_name_and_content(strict: Conda, base_env: dict[str, str]) -> None:
    """conda-facts §5.2: the record is `<root>/<sha256(location + name)>/<version.timestamp()>.json` with
    location `repo.anaconda.com` and name `pkgs/main`, holding pydantic's compact one-line JSON."""
    url = "https://repo.anaconda.com/pkgs/main"
    assert strict("tos", "accept", "--override-channels", "--channel", url).returncode == 0
    [record] = (Path(base_env["HOME"]) / ".conda" / "tos").glob("*/*.json")
    assert record.parent.name == hashlib.sha256(b"repo.anaconda.compkgs/main").hexdigest()
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.json", record.name)
    text = record.read_text(encoding="utf-8")
    assert "\n" not in text and '"tos_accepted":true' in text
    data = json.loads(text)
    assert list(data) == ["version", "text", "support", "base_url", "tos_accepted", "acceptance_timestamp"]
    assert data["base_url"] == url
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", data["acceptance_timestamp"])


def test_tos_system_root_follows_conda_root(
    strict: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """conda-facts §5.1: `--system` writes to `$CONDA_ROOT/conda-meta/tos`; conda sets CONDA_ROOT to its own
    base only when it is unset, so an inherited CONDA_ROOT wins over the running install's prefix."""
    url = "https://repo.anaconda.com/pkgs/r"
    other = tmp_path / "other-install"
    base_records = prefixes(V2511, "miniconda") / "conda-meta" / "tos"
    before = sorted(base_records.glob("*/*.json"))
    r = strict(
        "tos", "accept", "--override-channels", "--channel", url, "--system", extra={"CONDA_ROOT": str(other)}
    )
    assert r.returncode == 0, r.stderr
    assert len(list((other / "conda-meta" / "tos").glob("*/*.json"))) == 1
    assert sorted(base_records.glob("*/*.json")) == before


def test_pip_entries_run_in_the_spec_directory(conda: Conda, tmp_path: Path) -> None:
    """conda-facts §2.1: `pip:` entries are lines of a requirements file run with the environment file's
    directory as working directory: a relative wheel path is found beside the spec, whatever conda's cwd."""
    house = wheelhouse.ensure(CACHE / "wheelhouse", pythons=(HOST_PY,), packages=("numpy", "pip"))
    wheel = next(p for p in sorted(house.glob("numpy-*.whl")) if f"cp{HOST_PY.replace('.', '')}" in p.name)
    project = tmp_path / "project"
    (project / "wheels").mkdir(parents=True)
    (project / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    text = f"name: rel\ndependencies:\n  - python={HOST_PY}\n  - pip\n  - pip:\n    - ./wheels/{wheel.name}\n"
    f = spec(project, text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = conda("env", "create", "-f", f, cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    listed = {i["name"] for i in json.loads(conda("list", "-n", "rel", "--json").stdout)}
    assert "numpy" in listed
    assert conda("env", "remove", "-n", "rel", "--yes").returncode == 0


def test_miniforge_has_no_tos_gate(
    prefixes: Callable[[str, str], Path], base_env: dict[str, str], tmp_path: Path
) -> None:
    """§5: conda-forge has no ToS and Miniforge ships no plugin: create works with CI=false,
    `conda tos` is no command."""
    env = dict(base_env)
    env.pop("CONDA_PLUGINS_AUTO_ACCEPT_TOS")
    c = make_conda(prefixes(FORGE, "miniforge"), env)
    r = c("env", "create", "-f", spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"), "-n", "forge")
    assert r.returncode == 0, r.stderr
    assert " - conda-forge\n" in r.stdout
    assert c("tos", "accept").returncode == 1


# -- §4 configuration --------------------------------------------------------------------------------------
def test_condarc_envs_dirs_and_config_show(conda: Conda, tmp_path: Path, base_env: dict[str, str]) -> None:
    """§4.1/§4.2/§2.9: `~/.condarc` `envs_dirs` come first; named envs go to the first writable one;
    `config --show --json` is sorted and shows effective values."""
    envs = tmp_path / "shared-envs"
    (Path(base_env["HOME"]) / ".condarc").write_text(f"envs_dirs:\n  - {envs}\nchannels:\n  - conda-forge\n")
    cfg = json.loads(conda("config", "--show", "--json").stdout)
    assert list(cfg) == sorted(cfg)
    assert cfg["envs_dirs"][0] == str(envs) and cfg["channels"] == ["conda-forge", "defaults"]
    assert cfg["channel_alias"]["location"] == "conda.anaconda.org"
    assert cfg["plugins"] == {"auto_accept_tos": True}
    assert (
        conda(
            "env", "create", "-f", spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"), "-n", "here"
        ).returncode
        == 0
    )
    assert (envs / "here" / "conda-meta" / "history").is_file()
    assert str(envs / "here") in json.loads(conda("env", "list", "--json").stdout)["envs"]


# -- faults -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["solve", "pip", "interrupt"])
def test_faults(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str], fault: str
) -> None:
    """Failure on demand (testing-offline rule 5): `env-create=solve` fails the solve (rc 1, nothing left);
    `env-create=pip` fails the pip step with `CondaEnvException: Pip failed` (§2.1: conda part stays);
    `env-create=interrupt` kills the process mid-transaction, leaving a half-built prefix
    that is not an env."""
    Path(base_env["GPULAB_STANDIN_FAULTS"]).write_text(f"env-create={fault}\n")
    root = prefixes(V2511, "miniconda")
    text = f"dependencies:\n  - python={HOST_PY}\n  - pip\n  - cuda-version=12.4\n  - pip:\n    - something\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "-n", f"f-{fault}")
    target = root / "envs" / f"f-{fault}"
    if fault == "solve":
        assert r.returncode == 1
        assert "LibMambaUnsatisfiableError: Could not solve for environment specs" in r.stderr
        assert not target.exists()
    elif fault == "pip":
        assert r.returncode == 1
        assert r.stderr.endswith("\nCondaEnvException: Pip failed\n\n")
        assert (target / "conda-meta" / "history").is_file()
    else:
        assert r.returncode == -9
        assert target.is_dir() and not (target / "conda-meta" / "history").exists()
        assert str(target) not in json.loads(conda("env", "list", "--json").stdout)["envs"]


# -- §2.4 rename --------------------------------------------------------------------------------------
def test_rename(conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path) -> None:
    """§2.4: rename clones then removes the source; an existing destination needs --yes
    (25.x full-path message)."""
    root = prefixes(V2511, "miniconda")
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n  - pip\n")
    assert conda("env", "create", "-f", f, "-n", "ren-a").returncode == 0
    assert conda("env", "create", "-f", f, "-n", "ren-b").returncode == 0
    r = conda("rename", "-n", "ren-a", "ren-b")
    assert (r.returncode, r.stderr) == (
        1,
        f"\nCondaEnvException: The environment '{root}/envs/ren-b' already exists. Override with --yes.\n\n",
    )
    assert conda("rename", "-n", "ren-a", "ren-c").returncode == 0
    assert not (root / "envs" / "ren-a").exists()
    r = conda("run", "-n", "ren-c", "pip", "--version")
    assert r.returncode == 0 and f"{root}/envs/ren-c" in r.stdout
