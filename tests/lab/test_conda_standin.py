"""The stand-in conda: what the roles, scenarios and lab call, checked against the facts documents.

`docs/conda-facts.md` (cited "conda-facts §N") holds the facts the roles rely on, checked against conda's
and the ToS plugin's source; the other tests cite the team's longer research notes by the same section numbers
("§N"). Each test names the section it checks; every command or form the stand-in does not simulate must say
so (`test_unsimulated_commands_fail_plainly`). Every test gets a fresh HOME (so `~/.conda` and `~/.condarc`
are its own) and CONDA_ROOT (so are the `--system` ToS records) and runs the conda of a stand-in install made
once per module into a tmp dir.
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
V2511 = "py311_25.11.1-1"
FORGE = IMAGE_MINIFORGE_RELEASE

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
        k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "PIP_", "PYTHON", "_CE_", "_CONDA"))
    }
    env.update(
        HOME=str(home),
        CONDA_ROOT=str(tmp_path / "conda-root"),
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
def test_version(conda: Conda) -> None:
    """§1.7: `conda --version` / `-V` print `conda X.Y.Z` on stdout, rc 0."""
    for flag in ("--version", "-V"):
        assert (conda(flag).returncode, conda(flag).stdout) == (0, "conda 25.11.1\n")


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["info", "--json"], "info"),
        (["create", "-n", "x", "python"], "create"),
        (["env", "remove", "-n", "x", "--yes"], "env remove"),
        (["env", "update", "-f", "environment.yml"], "env update"),
        (["tos", "reject"], "tos reject"),
        (["env", "create", "-f", "SPEC", "-p", "DRY", "--dry-run"], "env create --dry-run"),
        (["env", "create", "-f", "SPEC", "-n", "dry"], "env create without -p/--prefix"),
        (["list", "-p", "DRY"], "list without --json"),
        (["env", "list"], "env list without --json"),
        (["tos", "accept", "--channel", "defaults"], "tos accept without --override-channels, --system"),
        (["shell.posix", "deactivate"], "shell.posix deactivate"),
    ],
)
def test_unsimulated_commands_fail_plainly(conda: Conda, tmp_path: Path, argv: list[str], shown: str) -> None:
    """What nothing in gpulab calls is not imitated: it fails with rc 2, says so, and changes nothing."""
    subst = {"SPEC": spec(tmp_path, SIMPLE), "DRY": str(tmp_path / "dry")}
    r = conda(*[subst.get(a, a) for a in argv])
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"gpulab stand-in: `conda {shown}` is not simulated (see docs/standins.md)\n"
    assert not (tmp_path / "dry").exists()


def test_error_text(conda: Conda, tmp_path: Path) -> None:
    """§2.0: a handled error is `\\n<Class>: <msg>\\n` on stderr with rc 1."""
    missing = tmp_path / "nope.yml"
    r = conda("env", "create", "-f", str(missing), "-p", str(tmp_path / "x"))
    assert (r.returncode, r.stderr) == (1, f"\nEnvironmentFileNotFound: '{missing}' file not found\n\n")


# -- §2.1 env create, §2.7 list, §2.5 env list -------------------------------------------------------------
def test_env_create_records_and_lists(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§2.1/§2.7/§7.4: a real venv with its own interpreter; conda-only packages recorded; `list --json`
    8-key dicts; history, state, environments.txt; `env list --json`."""
    prefix = prefixes(V2511, "miniconda") / "envs" / "demo"
    r = conda("env", "create", "-f", spec(tmp_path, SIMPLE), "-p", str(prefix))
    assert r.returncode == 0, r.stderr
    assert "Executing transaction: done" in r.stdout
    py = subprocess.run(
        [prefix / "bin" / "python", "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert py.stdout.strip() == str(prefix)
    # As in a conda env, the interpreter is the env's own file (dl_env refuses to run one outside the build).
    assert Path(os.path.realpath(prefix / "bin" / "python")).parent == prefix / "bin"
    items = json.loads(conda("list", "--prefix", str(prefix), "--json").stdout)
    by_name = {i["name"]: i for i in items}
    assert [i["name"] for i in items] == sorted(by_name)
    assert set(by_name) >= {"python", "pip", "cuda-version", "pytorch-gpu"}
    assert list(by_name["cuda-version"]) == [
        "base_url", "build_number", "build_string", "channel", "dist_name", "name", "platform", "version"
    ]  # fmt: skip
    assert by_name["cuda-version"]["version"] == "12.4"
    assert by_name["cuda-version"]["channel"] == "conda-forge"
    assert by_name["pytorch-gpu"]["base_url"] == "https://conda.anaconda.org/conda-forge"
    record = json.loads(next((prefix / "conda-meta").glob("pytorch-gpu-*.json")).read_text())
    assert "NOT installed" in record["gpulab_standin_note"]
    history = (prefix / "conda-meta" / "history").read_text().splitlines()
    assert history[0].startswith("==> ") and history[1].startswith("# cmd: ")
    assert history[2] == "# conda version: 25.11.1"
    assert "+conda-forge/linux-64::cuda-version-12.4-standin_0" in history
    assert history[-1].startswith("# update specs: [")
    assert json.loads((prefix / "conda-meta" / "state").read_text()) == {"env_vars": {"GPULAB_DEMO": "1"}}
    txt = (Path(base_env["HOME"]) / ".conda" / "environments.txt").read_text().splitlines()
    assert str(prefix) in txt
    listed = json.loads(conda("env", "list", "--json").stdout)
    assert list(listed) == ["envs"]
    assert str(prefix) in listed["envs"] and str(prefixes(V2511, "miniconda")) in listed["envs"]
    r = conda("list", "--prefix", str(tmp_path / "ghost"), "--json")
    assert (r.returncode, r.stderr) == (
        1,
        f"\nEnvironmentLocationNotFound: Not a conda environment: {tmp_path}/ghost\n\n",
    )


def test_env_create_installs_real_wheels(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """§2.1/§2.7: non-conda-only packages really come from pip (the index pip reads from its environment);
    they show up in `conda list --json` as `pypi` entries; `conda run -n` finds the env by name."""
    house = wheelhouse.ensure(CACHE / "wheelhouse", pythons=(HOST_PY,), packages=("numpy", "pip"))
    text = f"name: np\nchannels: [conda-forge]\ndependencies:\n  - python={HOST_PY}\n  - pip\n  - numpy\n"
    prefix = prefixes(V2511, "miniconda") / "envs" / "np"
    r = conda(
        "env", "create", "-f", spec(tmp_path, text), "-p", str(prefix), extra={"PIP_FIND_LINKS": str(house)}
    )
    assert r.returncode == 0, r.stderr
    listed = json.loads(conda("list", "-p", str(prefix), "--json").stdout)
    numpy = next(i for i in listed if i["name"] == "numpy")
    assert numpy["channel"] == "pypi" and numpy["build_string"] == "pypi_0" and numpy["platform"] == "pypi"
    assert numpy["dist_name"] == f"numpy-{numpy['version']}-pypi_0"
    run = conda("run", "-n", "np", "python", "-c", "import numpy; print(numpy.__name__)")
    assert run.stdout == "numpy\n\n"


def test_env_create_package_not_found_rolls_back(conda: Conda, tmp_path: Path) -> None:
    """§2.0/§6.5: a package nobody provides -> PackagesNotFoundError, rc 1, and no half-built prefix; so does
    a python the host's interpreter cannot be."""
    text = f"dependencies:\n  - python={HOST_PY}\n  - no-such-package-gpulab\n"
    r = conda("env", "create", "-f", spec(tmp_path, text), "-p", str(tmp_path / "nf"))
    assert r.returncode == 1
    assert r.stderr.startswith(
        "\nPackagesNotFoundError: The following packages are not available from current "
        "channels:\n\n  - no-such-package-gpulab\n\nCurrent channels:\n\n  - https://repo.anaconda.com/pkgs/main/linux-64\n"
    )
    assert not (tmp_path / "nf").exists()
    r = conda(
        "env", "create", "-f", spec(tmp_path, "dependencies:\n  - python=3.8\n"), "-p", str(tmp_path / "py38")
    )
    assert r.returncode == 1
    assert "PackagesNotFoundError" in r.stderr and "  - python=3.8" in r.stderr
    assert not (tmp_path / "py38").exists()


def test_pip_section_failure_keeps_the_conda_part(conda: Conda, tmp_path: Path) -> None:
    """conda-facts §2.1: a `pip:` entry pip cannot install -> `CondaEnvException: Pip failed`, rc 1, and the
    conda part stays installed (what `dl_env`'s failed-build path meets)."""
    text = f"dependencies:\n  - python={HOST_PY}\n  - nccl\n  - pip:\n    - gpulab-no-such-package\n"
    target = tmp_path / "pipfail"
    r = conda("env", "create", "-f", spec(tmp_path, text), "-p", str(target))
    assert r.returncode == 1
    assert r.stderr.endswith("\nCondaEnvException: Pip failed\n\n")
    assert "gpulab-no-such-package" in r.stdout
    assert (target / "conda-meta" / "history").is_file() and list((target / "conda-meta").glob("nccl-*.json"))
    assert list((target / "conda-meta").glob("pip-*.json"))  # conda adds pip for a `pip:` section


def test_pip_entries_run_in_the_spec_directory(conda: Conda, tmp_path: Path) -> None:
    """conda-facts §2.1: `pip:` entries are lines of a requirements file run with the environment file's
    directory as working directory: a relative wheel path is found beside the spec, whatever conda's cwd."""
    house = wheelhouse.ensure(CACHE / "wheelhouse", pythons=(HOST_PY,), packages=("numpy", "pip"))
    wheel = next(p for p in sorted(house.glob("numpy-*.whl")) if f"cp{HOST_PY.replace('.', '')}" in p.name)
    project = tmp_path / "project"
    (project / "wheels").mkdir(parents=True)
    (project / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    text = f"dependencies:\n  - python={HOST_PY}\n  - pip\n  - pip:\n    - ./wheels/{wheel.name}\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = conda("env", "create", "-f", spec(project, text), "-p", str(tmp_path / "rel"), cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numpy" in {
        i["name"] for i in json.loads(conda("list", "-p", str(tmp_path / "rel"), "--json").stdout)
    }


# -- §2.8 run, §1.6 activation ------------------------------------------------------------------------------
def test_run(conda: Conda, tmp_path: Path) -> None:
    """conda-facts §2.8: rc passthrough (and the ERROR log line), one extra newline in capture mode, stdin at
    EOF, the env's `variables:` set (activation); a missing env -> conda's error, rc 1."""
    text = f"dependencies:\n  - python={HOST_PY}\nvariables:\n  GPULAB_RUN: yes-set\n"
    env = str(tmp_path / "runner")
    assert conda("env", "create", "-f", spec(tmp_path, text), "-p", env).returncode == 0
    r = conda("run", "-p", env, "python", "-c", "import sys; print(sys.prefix); sys.exit(3)")
    assert (r.returncode, r.stdout) == (3, f"{env}\n\n")
    assert "failed. (See above for error)" in r.stderr
    r = conda("run", "-p", env, "python", "-c", "import sys; print(repr(sys.stdin.read()))", stdin="data")
    assert r.stdout == "''\n\n"
    assert conda("run", "-p", env, "no-such-command-xyz").returncode == 127
    r = conda("run", "-p", env, "env")
    assert f"CONDA_PREFIX={env}\n" in r.stdout and "GPULAB_RUN=yes-set" in r.stdout
    r = conda("run", "-n", "absent", "true")
    assert (
        r.returncode == 1 and "EnvironmentNameNotFound: Could not find conda environment: absent" in r.stderr
    )


def test_activate_through_conda_sh(
    conda: Conda, prefixes: Callable[[str, str], Path], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """§1.6/§4: `etc/profile.d/conda.sh` defines the `conda` shell function; `conda activate NAME` finds NAME
    in the envs dirs (`envs_dirs` of `~/.condarc` first) and puts the env first on PATH (its python, its
    `variables:`). A name that is a symlink in an envs dir (dl_env's public name for its live build)
    activates under the link's path."""
    root, envs = prefixes(V2511, "miniconda"), tmp_path / "shared-envs"
    (Path(base_env["HOME"]) / ".condarc").write_text(f"envs_dirs:\n  - {envs}\n")
    text = f"dependencies:\n  - python={HOST_PY}\nvariables:\n  GPULAB_X: hello\n"
    build = envs / ".builds" / "act-0123"
    assert conda("env", "create", "-f", spec(tmp_path, text), "-p", str(build)).returncode == 0
    (envs / "act").symlink_to(build)
    script = (
        f"source {root}/etc/profile.d/conda.sh && conda activate act && "
        'python -c \'import sys, os; print(os.environ["CONDA_PREFIX"], os.environ["GPULAB_X"])\' && '
        "echo $CONDA_DEFAULT_ENV $CONDA_SHLVL && conda activate base && echo $CONDA_DEFAULT_ENV $CONDA_SHLVL"
    )
    r = subprocess.run(["bash", "-lc", script], capture_output=True, text=True, env=base_env, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{envs}/act hello", "act 1", "base 1"]
    assert str(envs / "act") in json.loads(conda("env", "list", "--json").stdout)["envs"]
    r = subprocess.run(
        ["bash", "-lc", f"source {root}/etc/profile.d/conda.sh && conda activate nosuch"],
        capture_output=True,
        text=True,
        env=base_env,
        check=False,
    )
    assert r.returncode != 0
    assert "EnvironmentNameNotFound: Could not find conda environment: nosuch" in r.stderr


# -- §2.9 / §4 configuration ------------------------------------------------------------------------------
def test_config_show(conda: Conda, tmp_path: Path, base_env: dict[str, str]) -> None:
    """§2.9/§4: `config --show KEY... --json` shows the merged `.condarc` values (`<prefix>/.condarc`, then
    `~/.condarc`, then `$CONDARC`; lists merged, higher precedence first)."""
    (Path(base_env["HOME"]) / ".condarc").write_text("channels:\n  - conda-forge\n")
    creds = tmp_path / "credentials.yml"
    creds.write_text("proxy_servers:\n  https: http://u:p@proxy:3128\n")
    r = conda("config", "--show", "proxy_servers", "channels", "--json", extra={"CONDARC": str(creds)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "channels": ["conda-forge", "defaults"],
        "proxy_servers": {"https": "http://u:p@proxy:3128"},
    }
    assert list(json.loads(r.stdout)) == ["channels", "proxy_servers"]
    r = conda("config", "--show", "proxy_servers", "--json")
    assert (r.returncode, r.stderr) == (1, "\nCondaValueError: Key(s) not found: ['proxy_servers']\n\n")


# -- §5 Terms of Service ----------------------------------------------------------------------------------
TOS_ERROR = """
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
    """Miniconda 25.11 conda with no auto-acceptance."""
    env = dict(base_env)
    env.pop("CONDA_PLUGINS_AUTO_ACCEPT_TOS")
    return make_conda(prefixes(V2511, "miniconda"), env)


def test_tos_gate(strict: Conda, tmp_path: Path) -> None:
    """§5/§5.4: Miniconda with defaults channels, not interactive -> the plugin 0.2.1+ error, rc 1, nothing
    made; `list`/`env list` are not gated; `conda tos --help` works (the miniconda role's probe for the
    plugin); CONDA_PLUGINS_AUTO_ACCEPT_TOS lets create through, saying so."""
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    r = strict("env", "create", "-f", f, "-p", str(tmp_path / "tos1"))
    assert (r.returncode, r.stderr) == (1, TOS_ERROR)
    assert not (tmp_path / "tos1").exists()
    assert strict("env", "list", "--json").returncode == 0
    assert strict("tos", "--help").returncode == 0
    r = strict(
        "env", "create", "-f", f, "-p", str(tmp_path / "tos2"), extra={"CONDA_PLUGINS_AUTO_ACCEPT_TOS": "yes"}
    )
    assert r.returncode == 0, r.stderr
    assert "you acknowledge and agree to the Terms of Service" in r.stdout


def test_tos_accept_records(strict: Conda, tmp_path: Path, base_env: dict[str, str]) -> None:
    """conda-facts §5.1-§5.3: `conda tos accept --override-channels --channel URL --system` prints
    `accepted Terms of Service for URL` and writes `$CONDA_ROOT/conda-meta/tos/<sha256(location + name)>/
    <version.timestamp()>.json` holding pydantic's compact one-line JSON, after which the gate passes; a
    channel without a ToS gets no record."""
    root = Path(base_env["CONDA_ROOT"]) / "conda-meta" / "tos"
    for url in ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r"):
        r = strict("tos", "accept", "--override-channels", "--channel", url, "--system")
        assert (r.returncode, r.stdout) == (0, f"accepted Terms of Service for {url}\n")
    [record] = (root / hashlib.sha256(b"repo.anaconda.compkgs/main").hexdigest()).glob("*.json")
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.json", record.name)
    text = record.read_text(encoding="utf-8")
    assert "\n" not in text and '"tos_accepted":true' in text
    data = json.loads(text)
    assert list(data) == ["version", "text", "support", "base_url", "tos_accepted", "acceptance_timestamp"]
    assert data["base_url"] == "https://repo.anaconda.com/pkgs/main"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", data["acceptance_timestamp"])
    f = spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n")
    assert strict("env", "create", "-f", f, "-p", str(tmp_path / "tosok")).returncode == 0
    r = strict("tos", "accept", "--override-channels", "--channel", "conda-forge", "--system")
    assert r.stdout == "Terms of Service not found for https://conda.anaconda.org/conda-forge\n"
    assert len(list(root.glob("*/*.json"))) == 2


def test_tos_system_root_defaults_to_the_base(
    strict: Conda, prefixes: Callable[[str, str], Path], base_env: dict[str, str]
) -> None:
    """conda-facts §5.1: conda sets CONDA_ROOT to its own base only when it is unset, so `--system` without an
    inherited CONDA_ROOT writes under `<base>/conda-meta/tos`."""
    env = {k: v for k, v in base_env.items() if k not in ("CONDA_ROOT", "CONDA_PLUGINS_AUTO_ACCEPT_TOS")}
    url = "https://repo.anaconda.com/pkgs/r"
    r = make_conda(prefixes(V2511, "miniconda"), env)(
        "tos", "accept", "--override-channels", "--channel", url, "--system"
    )
    assert r.returncode == 0, r.stderr
    key = hashlib.sha256(b"repo.anaconda.compkgs/r").hexdigest()
    assert list((prefixes(V2511, "miniconda") / "conda-meta" / "tos" / key).glob("*.json"))


def test_miniforge_has_no_tos_gate(
    prefixes: Callable[[str, str], Path], base_env: dict[str, str], tmp_path: Path
) -> None:
    """§5: conda-forge has no ToS and Miniforge ships no plugin: create works without acceptance,
    `conda tos` is no command (conda's own CommandNotFoundError, rc 1: the role's probe fails)."""
    env = dict(base_env)
    env.pop("CONDA_PLUGINS_AUTO_ACCEPT_TOS")
    c = make_conda(prefixes(FORGE, "miniforge"), env)
    r = c(
        "env",
        "create",
        "-f",
        spec(tmp_path, f"dependencies:\n  - python={HOST_PY}\n"),
        "-p",
        str(tmp_path / "forge"),
    )
    assert r.returncode == 0, r.stderr
    assert " - conda-forge\n" in r.stdout
    r = c("tos", "--help")
    assert (r.returncode, r.stderr) == (1, "\nCommandNotFoundError: No command 'conda tos'.\n\n")
