"""The stand-in Miniconda/Miniforge installer against the facts document (`conda-cli-facts.md` §1).

Each test names the section it checks. Installs go into tmp dirs with the host's python3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpulab.lab import installer
from gpulab.lab.mirror import sha256_of

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "gpulab-lab"
NEW = "py311_25.11.1-1"
OLD = "py311_25.5.1-1"
FORGE = "25.11.1-0"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("installers")
    return {
        NEW: installer.build_installer(out, NEW, cache_dir=CACHE),
        OLD: installer.build_installer(out, OLD, cache_dir=CACHE),
        FORGE: installer.build_installer(out, FORGE, "miniforge", cache_dir=CACHE),
    }


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "PIP_", "PYTHON"))}
    e.update(HOME=str(home), GPULAB_STANDIN_FAULTS=str(tmp_path / "faults"))
    yield e


def sh(script: Path, *args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        check=False,
        timeout=120,
    )


def test_file_names_and_version_parsing() -> None:
    """§1.1: `Miniconda3-py<XY>_<conda-ver>-<build>-Linux-x86_64.sh`,
    Miniforge `Miniforge3-<ver>-<build>-...`."""
    assert installer.installer_name(NEW) == "Miniconda3-py311_25.11.1-1-Linux-x86_64.sh"
    assert installer.installer_name(FORGE, "miniforge") == "Miniforge3-25.11.1-0-Linux-x86_64.sh"
    assert installer.conda_version_of(NEW) == "25.11.1"
    assert installer.conda_version_of(FORGE) == "25.11.1"
    with pytest.raises(installer.InstallerBuildError):
        installer.conda_version_of("latest")


def test_header_lines(built: dict[str, Path]) -> None:
    """§1.2: `#!/bin/sh`, `# Created by constructor X`, NAME/VER/PLAT/MD5 lines;
    the MD5 covers the payload."""
    import hashlib

    data = built[NEW].read_bytes()
    lines = data.split(b"\n", 9)[:8]
    assert lines[0] == b"#!/bin/sh"
    assert lines[2].startswith(b"# Created by constructor 3.")
    assert lines[4] == b"# NAME:  Miniconda3"
    assert lines[5] == b"# VER:   " + NEW.encode()
    assert lines[6] == b"# PLAT:  linux-64"
    payload = data.split(installer.MARKER, 1)[1]
    assert lines[7] == b"# MD5:   " + hashlib.md5(payload).hexdigest().encode()


def test_build_is_deterministic(built: dict[str, Path], tmp_path: Path) -> None:
    """Same inputs give the same bytes, so a pinned sha256 stays valid across rebuilds (§1.1 checksums)."""
    again = installer.build_installer(tmp_path, NEW, cache_dir=CACHE)
    assert sha256_of(again) == sha256_of(built[NEW])


def test_help_exits_2(built: dict[str, Path], env: dict[str, str]) -> None:
    """§1.3: `-h` prints usage to stdout and exits 2."""
    r = sh(built[NEW], "-h", env=env)
    assert r.returncode == 2
    assert "usage:" in r.stdout and "-u           update an existing installation" in r.stdout


def test_unknown_flag_exits_1(built: dict[str, Path], env: dict[str, str]) -> None:
    """§1.3: an unknown flag: getopts complains on stderr, then
    `ERROR: did not recognize option '?'` on stdout, rc 1."""
    r = sh(built[NEW], "-z", env=env)
    assert r.returncode == 1
    assert "ERROR: did not recognize option '?', please try -h" in r.stdout
    assert r.stderr.strip()
    r = sh(built[NEW], "-b", "-p", env=env)  # -p without an argument ends the same way
    assert r.returncode == 1


def test_refuses_name_without_sh(built: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    """§1.4: a file name not ending in `.sh` is refused with rc 1."""
    other = tmp_path / "miniconda-installer"
    shutil.copy(built[NEW], other)
    r = sh(other, "-b", "-p", str(tmp_path / "p"), env=env)
    assert r.returncode == 1
    assert 'Please run using "bash"/"dash"/"sh"/"zsh", but not "." or "source".' in r.stderr
    assert not (tmp_path / "p").exists()


def test_refuses_existing_prefix_without_u(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """§1.4: an existing (even empty) prefix without -u/-f: the two-line stderr error, rc 1."""
    prefix = tmp_path / "miniconda3"
    prefix.mkdir()
    r = sh(built[NEW], "-b", "-p", str(prefix), env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"ERROR: File or directory already exists: '{prefix}'",
        "If you want to update an existing installation, use the -u option.",
    ]


def test_refuses_spaces(built: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    """§1.4: spaces in the prefix are refused, rc 1."""
    r = sh(built[NEW], "-b", "-p", str(tmp_path / "a b"), env=env)
    assert r.returncode == 1
    assert "ERROR: Cannot install into directories with spaces" in r.stderr


def test_batch_install_output_and_layout(built: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    """§1.5 output order and §1.6 layout (bin/conda, condabin/conda, conda.sh exports
    of 25.11, history...)."""
    prefix = tmp_path / "mc"
    r = sh(built[NEW], "-b", "-p", str(prefix), env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == f"PREFIX={prefix}"
    assert out[1:3] == ["Unpacking bootstrapper...", "Unpacking payload..."]
    assert "\nInstalling base environment...\n\n" in r.stdout
    assert out[-1] == "installation finished."
    assert "Thank you for installing" not in r.stdout  # interactive mode only
    for rel in ("bin/conda", "condabin/conda", "bin/python", "etc/profile.d/conda.sh", "conda-meta/history"):
        assert (prefix / rel).exists(), rel
    assert os.access(prefix / "bin" / "conda", os.X_OK)
    assert (prefix / "bin" / "conda").read_text().startswith(f"#!{prefix}/bin/python\n")
    assert (prefix / "envs").is_dir()
    assert not (prefix / "install_tmp").exists()
    assert (prefix / ".nonadmin").exists() == (os.geteuid() != 0)
    conda_sh = (prefix / "etc" / "profile.d" / "conda.sh").read_text().splitlines()
    assert conda_sh[:6] == [
        f"export CONDA_EXE='{prefix}/bin/conda'",
        f"export _CONDA_EXE='{prefix}/bin/conda'",
        "export _CE_M=''",
        "export _CE_CONDA=''",
        f"export CONDA_PYTHON_EXE='{prefix}/bin/python'",
        f"export _CONDA_ROOT='{prefix}'",
    ]
    history = (prefix / "conda-meta" / "history").read_text().splitlines()
    assert history[0].startswith("==> ") and history[0].endswith(" <==")
    assert history[1].startswith("# cmd: constructor")
    assert any(line.startswith("+defaults/linux-64::python-") for line in history)
    assert history[-1].startswith("# update specs: ")
    registered = (Path(env["HOME"]) / ".conda" / "environments.txt").read_text().splitlines()
    assert str(prefix) in registered
    version = subprocess.run([prefix / "bin" / "conda", "--version"], capture_output=True, text=True, env=env)
    assert version.stdout == "conda 25.11.1\n"


def test_older_constructor_output_and_conda_sh(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """§1.5: constructor <= 3.11 prints `Unpacking payload ...` and no bootstrapper line; §1.6: conda.sh of
    older conda has no `_CONDA_EXE`/`_CONDA_ROOT` exports."""
    prefix = tmp_path / "old"
    r = sh(built[OLD], "-b", "-p", str(prefix), env=env)
    assert r.returncode == 0, r.stderr
    assert "Unpacking payload ...\n" in r.stdout
    assert "Unpacking bootstrapper" not in r.stdout
    text = (prefix / "etc" / "profile.d" / "conda.sh").read_text()
    assert "_CONDA_EXE" not in text and "_CONDA_ROOT" not in text
    assert text.startswith(f"export CONDA_EXE='{prefix}/bin/conda'\n")


def test_update_over_existing_install(built: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    """§1.3: `-u` (and `-f`) install over an existing prefix; an upgrade to a newer release works (rc 0)."""
    prefix = tmp_path / "mc"
    assert sh(built[OLD], "-b", "-p", str(prefix), env=env).returncode == 0
    (prefix / "envs" / "keep").mkdir()
    r = sh(built[NEW], "-b", "-u", "-p", str(prefix), env=env)
    assert r.returncode == 0, r.stderr
    assert (prefix / "envs" / "keep").is_dir()
    v = subprocess.run([prefix / "bin" / "conda", "-V"], capture_output=True, text=True, env=env)
    assert v.stdout == "conda 25.11.1\n"
    assert sh(built[NEW], "-b", "-f", "-p", str(prefix), env=env).returncode == 0


def test_interrupted_install_leaves_install_tmp(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """§1.6/§6.1: an interrupted install leaves `install_tmp` and no `bin/conda`; a rerun needs -u."""
    prefix = tmp_path / "mc"
    Path(env["GPULAB_STANDIN_FAULTS"]).write_text("install=interrupt\n")
    r = sh(built[NEW], "-b", "-p", str(prefix), env=env)
    assert r.returncode == 1
    assert (prefix / "install_tmp").is_dir()
    assert not (prefix / "bin" / "conda").exists()
    Path(env["GPULAB_STANDIN_FAULTS"]).write_text("")
    assert sh(built[NEW], "-b", "-p", str(prefix), env=env).returncode == 1
    r = sh(built[NEW], "-b", "-u", "-p", str(prefix), env=env)
    assert r.returncode == 0, r.stderr
    assert not (prefix / "install_tmp").exists()
    assert (prefix / "bin" / "conda").exists()


def test_miniforge_writes_condarc(built: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    """§1.6: Miniforge writes `<PREFIX>/.condarc` with `channels: [conda-forge]` and mirrored_channels."""
    import yaml

    prefix = tmp_path / "mf"
    r = sh(built[FORGE], "-b", "-p", str(prefix), env=env)
    assert r.returncode == 0, r.stderr
    rc = yaml.safe_load((prefix / ".condarc").read_text())
    assert rc["channels"] == ["conda-forge"]
    assert "https://prefix.dev/conda-forge" in rc["mirrored_channels"]["conda-forge"]


def test_md5_mismatch_only_warns(built: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    """§1.2: an MD5 mismatch prints the warning on stderr and the install continues."""
    data = bytearray(built[NEW].read_bytes())
    start = data.index(b"# MD5:   ") + len(b"# MD5:   ")
    data[start : start + 32] = b"0" * 32
    bad = tmp_path / "Miniconda3-bad-Linux-x86_64.sh"
    bad.write_bytes(bytes(data))
    r = sh(bad, "-b", "-p", str(tmp_path / "p"), env=env)
    assert r.returncode == 0, r.stderr
    assert "WARNING: md5sum mismatch of tar archive" in r.stderr
    assert f"expected: {'0' * 32}" in r.stderr


def test_interactive_license_rejected_on_eof(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """§1.4: without -b the license prompt reads stdin; no "yes" ->
    `The license agreement wasn't approved`, rc 2."""
    r = sh(built[NEW], "-p", str(tmp_path / "p"), env=env, stdin="")
    assert r.returncode == 2
    assert "The license agreement wasn't approved, aborting installation." in r.stdout
    assert not (tmp_path / "p").exists()
