"""The stand-in conda: what the roles, scenarios and lab call, checked against the facts documents.

`docs/conda-facts.md` (cited "conda-facts §N") holds the facts the roles rely on, checked against conda's
and the ToS plugin's source; the other tests cite the team's longer research notes by the same section numbers
("§N"). Each test names the section it checks; every command the stand-in does not simulate must say so
(`test_unsimulated_commands_fail_plainly`). Every test gets a fresh HOME (so `~/.conda`, `~/.condarc` and the
ToS records are its own) and runs the conda of a stand-in install made once per module into a tmp dir.
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
from gpulab.lab.services import IMAGE_MINIFORGE_RELEASE

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "gpulab-lab"
HOST_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
V2511, V255 = "py311_25.11.1-1", "py311_25.5.1-1"
FORGE = IMAGE_MINIFORGE_RELEASE
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


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["info", "--json"], "info"),
        (["env", "remove", "-n", "x", "--yes"], "env remove"),
        (["env", "update", "-f", "environment.yml"], "env update"),
        (["env", "export", "-n", "x"], "env export"),
        (["rename", "-n", "x", "y"], "rename"),
        (["tos", "reject"], "tos reject"),
        (["env", "create", "-f", "SPEC", "-n", "dry", "--dry-run"], "env create --dry-run"),
        (["list", "-n", "base", "--explicit"], "list --explicit"),
    ],
)
def test_unsimulated_commands_fail_plainly(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, argv: list[str], shown: str
) -> None:
    """What nothing in gpulab calls is not imitated: it fails with rc 2, says so, and changes nothing."""
    r = conda(*[spec(tmp_path, SIMPLE) if a == "SPEC" else a for a in argv])
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"gpulab stand-in: `conda {shown}` is not simulated (see docs/standins.md)\n"
    assert not (prefixes(V2511, "miniconda") / "envs" / "dry").exists()


def test_error_text_and_json_error_object(conda: Conda, tmp_path: Path) -> None:
    """§2.0: errors are `\\n<Class>: <msg>\\n` on stderr with rc 1; with --json a dump_map object
    on stdout."""
    missing = tmp_path / "nope.yml"
    r = conda("env", "create", "-f", str(missing))
    assert r.returncode == 1
    assert r.stderr == f"\nEnvironmentFileNotFound: '{missing}' file not found\n\n"
    r = conda("env", "create", "-f", str(missing), "-n", "x", "--json")
    assert r.returncode == 1
    obj = json.loads(r.stdout)
    assert list(obj) == sorted(obj)
    assert set(obj) >= {"caused_by", "error", "exception_name", "exception_type", "message"}
    assert obj["exception_name"] == "EnvironmentFileNotFound"
    assert obj["exception_type"] == "<class 'conda.exceptions.EnvironmentFileNotFound'>"
    assert obj["error"] == f"EnvironmentFileNotFound: '{missing}' file not found"


# -- §2.1 env create, §2.7 list, §2.5 env list -------------------------------------------------------------
def test_env_create_records_and_lists(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§2.1/§2.7/§7.4: a real venv with its own interpreter; conda-only packages recorded; `list --json`
    8-key dicts; history, state, environments.txt; `env list --json`; the activation banner."""
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
    # As in a conda env, the interpreter is the env's own file (dl_env refuses to run one outside the build).
    assert Path(os.path.realpath(prefix / "bin" / "python")).parent == prefix / "bin"
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
    assert by_name["cuda-version"]["version"] == "12.4"
    assert by_name["cuda-version"]["channel"] == "conda-forge"
    assert by_name["pytorch-gpu"]["base_url"] == "https://conda.anaconda.org/conda-forge"
    assert conda("list", "-p", str(prefix), "--json").stdout == conda("list", "-n", "demo", "--json").stdout
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
    listed = json.loads(conda("env", "list", "--json").stdout)
    assert list(listed) == ["envs"]
    assert str(prefix) in listed["envs"] and str(prefixes(V2511, "miniconda")) in listed["envs"]
    r = conda("list", "-n", "ghost", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["exception_name"] == "EnvironmentLocationNotFound"


def test_env_create_installs_real_wheels(conda: Conda, tmp_path: Path) -> None:
    """§2.1/§2.7: non-conda-only packages really come from pip (the index pip reads from its environment);
    they show up in `conda list --json` as `pypi` entries; `--json` prints the actions object."""
    house = wheelhouse.ensure(CACHE / "wheelhouse", pythons=(HOST_PY,), packages=("numpy", "pip"))
    text = f"name: np\nchannels: [conda-forge]\ndependencies:\n  - python={HOST_PY}\n  - pip\n  - numpy\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "--json", extra={"PIP_FIND_LINKS": str(house)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["success"] is True and out["prefix"].endswith("/envs/np")
    assert list(out["actions"]) == ["FETCH", "LINK", "PREFIX", "UNLINK"]
    assert {d["name"] for d in out["actions"]["LINK"]} == {"python", "pip"}
    numpy = next(i for i in json.loads(conda("list", "-n", "np", "--json").stdout) if i["name"] == "numpy")
    assert numpy["channel"] == "pypi" and numpy["build_string"] == "pypi_0" and numpy["platform"] == "pypi"
    assert numpy["dist_name"] == f"numpy-{numpy['version']}-pypi_0"
    run = conda("run", "-n", "np", "python", "-c", "import numpy; print(numpy.__name__)")
    assert run.stdout == "numpy\n\n"


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
    r = conda("env", "create", "-f", spec(tmp_path, "dependencies:\n  - python=3.8\n"), "-n", "py38")
    assert r.returncode == 1
    assert "PackagesNotFoundError" in r.stderr and "  - python=3.8" in r.stderr
    assert not (prefixes(V2511, "miniconda") / "envs" / "py38").exists()


def test_pip_section_failure_keeps_the_conda_part(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """conda-facts §2.1: a `pip:` entry pip cannot install -> `CondaEnvException: Pip failed`, rc 1, and the
    conda part stays installed (what `dl_env`'s failed-build path meets)."""
    text = f"dependencies:\n  - python={HOST_PY}\n  - pip\n  - nccl\n  - pip:\n    - gpulab-no-such-package\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "-n", "pipfail")
    assert r.returncode == 1
    assert r.stderr.endswith("\nCondaEnvException: Pip failed\n\n")
    assert "gpulab-no-such-package" in r.stdout
    target = prefixes(V2511, "miniconda") / "envs" / "pipfail"
    assert (target / "conda-meta" / "history").is_file() and list((target / "conda-meta").glob("nccl-*.json"))


def test_env_create_on_existing_env(conda: Conda, tmp_path: Path) -> None:
    """§2.1: an existing env without --yes: 25.5-25.11 install into it with rc 0 (issue #15071); `--yes`
    removes and recreates it."""
    target = tmp_path / "envx"
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    assert conda("env", "create", "-f", f, "-p", str(target)).returncode == 0
    (target / "marker").write_text("x")
    f2 = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n  - cuda-version=12.6\n", "two.yml")
    r = conda("env", "create", "-f", f2, "-p", str(target))
    assert r.returncode == 0, r.stderr
    assert (target / "marker").exists()
    assert list((target / "conda-meta").glob("cuda-version-12.6-*.json"))
    r = conda("env", "create", "-f", f2, "-p", str(target), "--yes")
    assert r.returncode == 0, r.stderr
    assert not (target / "marker").exists()


def test_env_create_refusals(conda: Conda, tmp_path: Path) -> None:
    """§2.1: 25.x with no -n, no -p and no `name:` -> CondaEnvException `Unable to create environment`, rc 1;
    base is reserved; §3: a file without `dependencies` -> EnvironmentFileInvalid, rc 1."""
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    r = conda("env", "create", "-f", f)
    assert r.returncode == 1
    assert r.stderr.startswith("\nCondaEnvException: Unable to create environment\n")
    assert "* Provide a path on disk via --prefix or -p" in r.stderr
    r = conda("env", "create", "-f", f, "-n", "base")
    assert (r.returncode, r.stderr) == (1, "\nCondaValueError: 'base' is a reserved environment name\n\n")
    r = conda("env", "create", "-f", spec(tmp_path, "name: x\n", "nodeps.yml"))
    assert r.returncode == 1
    assert "Provided environment.yaml is invalid: Missing required field 'dependencies'" in r.stderr
    assert r.stderr.startswith("\nEnvironmentFileInvalid: ")


# -- §2.8 run -------------------------------------------------------------------------------------------
def test_run(conda: Conda, tmp_path: Path) -> None:
    """conda-facts §2.8: rc passthrough (and the ERROR log line), one extra newline in capture mode (<=25.11),
    stdin at EOF, `--no-capture-output` streams without the extra newline, a missing env ->
    EnvironmentLocationNotFound; the env's `variables:` are set (activation)."""
    text = f"dependencies:\n  - python={HOST_PY}\nvariables:\n  GPULAB_RUN: yes-set\n"
    assert conda("env", "create", "-f", spec(tmp_path, text), "-n", "runner").returncode == 0
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
    assert "CONDA_PREFIX=" in r.stdout and "GPULAB_RUN=yes-set" in r.stdout
    r = conda("run", "-n", "absent", "true")
    assert r.returncode == 1 and "EnvironmentLocationNotFound: Not a conda environment:" in r.stderr


# -- §1.6 activation --------------------------------------------------------------------------------------
def test_activate_through_conda_sh(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§1.6: `etc/profile.d/conda.sh` defines the `conda` shell function; `conda activate NAME` puts the env
    first on PATH (its python, its `variables:`) and `conda deactivate` undoes it. A name that is a symlink in
    an envs dir (dl_env's public name for its live build) activates under the link's path."""
    root = prefixes(V2511, "miniconda")
    text = f"dependencies:\n  - python={HOST_PY}\nvariables:\n  GPULAB_X: hello\n"
    build = root / "envs" / ".builds" / "act-0123"
    assert conda("env", "create", "-f", spec(tmp_path, text), "-p", str(build)).returncode == 0
    (root / "envs" / "act").symlink_to(build)
    script = (
        f"source {root}/etc/profile.d/conda.sh && conda activate act && "
        'python -c \'import sys, os; print(os.environ["CONDA_PREFIX"], os.environ["GPULAB_X"])\' && '
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
    assert r.returncode != 0
    assert "EnvironmentNameNotFound: Could not find conda environment: nosuch" in r.stderr


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
    """§5: Miniconda with defaults channels, not interactive -> the plugin 0.2.1+ error, rc 1; `--yes` does
    not accept; 25.5 prints the <=0.2.0 wording; `list`/`env list` are not gated (§5.4); `conda tos --help`
    works (the miniconda role's probe for the plugin)."""
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    r = strict("env", "create", "-f", f, "-n", "tos1", "--yes")
    assert (r.returncode, r.stderr) == (1, TOS_NEW)
    assert strict("list", "-n", "base", "--json").returncode == 0
    assert strict("env", "list", "--json").returncode == 0
    assert strict("tos", "--help").returncode == 0
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
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    r = strict("env", "create", "-f", f, "-p", str(tmp_path / "env"), extra=extra)
    assert r.returncode == 0, r.stderr
    assert "you acknowledge and agree to the Terms of Service" in r.stdout


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
    assert strict("env", "create", "-f", f, "-p", str(tmp_path / "tosok")).returncode == 0
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


def test_miniforge_has_no_tos_gate(
    prefixes: Callable[[str, str], Path], base_env: dict[str, str], tmp_path: Path
) -> None:
    """§5: conda-forge has no ToS and Miniforge ships no plugin: create works with CI=false,
    `conda tos` is no command (conda's own CommandNotFoundError, rc 1: the role's probe fails)."""
    env = dict(base_env)
    env.pop("CONDA_PLUGINS_AUTO_ACCEPT_TOS")
    c = make_conda(prefixes(FORGE, "miniforge"), env)
    r = c("env", "create", "-f", spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"), "-n", "forge")
    assert r.returncode == 0, r.stderr
    assert " - conda-forge\n" in r.stdout
    r = c("tos", "--help")
    assert (r.returncode, r.stderr) == (1, "\nCommandNotFoundError: No command 'conda tos'.\n\n")


# -- §4 configuration --------------------------------------------------------------------------------------
def test_condarc_envs_dirs_and_config_show(conda: Conda, tmp_path: Path, base_env: dict[str, str]) -> None:
    """§4.1/§4.2/§2.9: `~/.condarc` `envs_dirs` come first; named envs go to the first writable one;
    `config --show [KEY] --json` is sorted and shows effective values (lists merged, higher precedence
    first)."""
    envs = tmp_path / "shared-envs"
    (Path(base_env["HOME"]) / ".condarc").write_text(f"envs_dirs:\n  - {envs}\nchannels:\n  - conda-forge\n")
    cfg = json.loads(conda("config", "--show", "--json").stdout)
    assert list(cfg) == sorted(cfg)
    assert cfg["envs_dirs"][0] == str(envs) and cfg["channels"] == ["conda-forge", "defaults"]
    assert cfg["channel_alias"]["location"] == "conda.anaconda.org"
    assert cfg["plugins"] == {"auto_accept_tos": True}
    assert json.loads(conda("config", "--show", "channels", "--json").stdout) == {
        "channels": ["conda-forge", "defaults"]
    }
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    assert conda("env", "create", "-f", f, "-n", "here").returncode == 0
    assert (envs / "here" / "conda-meta" / "history").is_file()
    assert str(envs / "here") in json.loads(conda("env", "list", "--json").stdout)["envs"]


# -- faults -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["solve", "interrupt"])
def test_faults(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str], fault: str
) -> None:
    """Failure on demand (`/etc/gpulab-lab/conda-faults`): `env-create=solve` fails the solve (rc 1, nothing
    left); `env-create=interrupt` kills the process mid-transaction, leaving a half-built prefix that is not
    an env (facts §6.5)."""
    Path(base_env["GPULAB_STANDIN_FAULTS"]).write_text(f"env-create={fault}\n")
    root = prefixes(V2511, "miniconda")
    text = f"dependencies:\n  - python={HOST_PY}\n  - pip\n  - cuda-version=12.4\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "-n", f"f-{fault}")
    target = root / "envs" / f"f-{fault}"
    if fault == "solve":
        assert r.returncode == 1
        assert "LibMambaUnsatisfiableError: Could not solve for environment specs" in r.stderr
        assert not target.exists()
    else:
        assert r.returncode == -9
        assert target.is_dir() and not (target / "conda-meta" / "history").exists()
        assert str(target) not in json.loads(conda("env", "list", "--json").stdout)["envs"]
