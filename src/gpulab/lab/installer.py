"""Build the STAND-IN Miniconda/Miniforge installer: a constructor-style `#!/bin/sh` script with a payload.

The payload holds the stand-in conda (`gpulab.lab.conda_standin`), the pure-Python sources of PyYAML and a
pip wheel. Running the script imitates constructor's `header.sh` (facts §1.2-§1.6): flags, refusals, exit
codes, printed lines and the prefix layout. The base environment is a real `python3 -m venv --without-pip`
of the target host's python3. The build is deterministic: same inputs, same bytes, same sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Literal

import yaml

from . import wheelhouse

MARKER = b"\n@@END_HEADER@@\n"  # between the script and its payload
FIXED_MTIME = 1_700_000_000
STANDIN_DIR = Path(__file__).resolve().parent / "conda_standin"

Flavor = Literal["miniconda", "miniforge"]


class InstallerBuildError(ValueError):
    """The release string or the build inputs are not usable."""


def conda_version_of(version: str) -> str:
    """`py313_25.11.1-1` -> `25.11.1`; `25.11.1-0` -> `25.11.1`."""
    m = re.fullmatch(r"(?:py(\d+)_)?(\d+\.\d+\.\d+)-(\d+)", version)
    if not m:
        raise InstallerBuildError(
            f"release string {version!r} is not like 'py313_25.11.1-1' (Miniconda) or '25.11.1-0' (Miniforge)"
        )
    return m.group(2)


def installer_name(version: str, flavor: Flavor = "miniconda") -> str:
    base = "Miniconda3" if flavor == "miniconda" else "Miniforge3"
    return f"{base}-{version}-Linux-x86_64.sh"


def constructor_version(conda_version: str) -> str:
    """Miniconda/Miniforge built after mid-2025 use constructor 3.12+ (`Unpacking bootstrapper...`)."""
    parts = tuple(int(p) for p in conda_version.split("."))
    return "3.16.3" if parts >= (25, 7) else "3.11.0"


def _pip_wheel(cache_dir: Path | None) -> Path:
    """The pip wheel to bundle: from `<cache_dir>/wheelhouse` (`pip download`ed there once), else the running
    Python's ensurepip wheel."""
    house = (cache_dir or wheelhouse.default_cache_dir()) / "wheelhouse"
    try:
        wheelhouse.ensure(house, pythons=("3.11",), packages=("pip",))
    except (wheelhouse.WheelhouseError, OSError):
        spec = importlib.util.find_spec("ensurepip")
        bundled = sorted(Path(spec.origin).parent.glob("_bundled/pip-*.whl")) if spec and spec.origin else []
        if bundled:
            return bundled[-1]
        raise
    found = wheelhouse.find_wheel(house, "pip")
    if not found:
        raise InstallerBuildError(f"no pip wheel in {house}")
    return found


def _payload(release: dict[str, str], pip_wheel: Path) -> bytes:
    files: dict[str, tuple[bytes, int]] = {}
    for src in sorted(STANDIN_DIR.glob("*.py")):
        files[f"conda_standin/{src.name}"] = (src.read_bytes(), 0o644)
    files["conda_standin/release.json"] = (
        json.dumps(release, indent=2, sort_keys=True).encode() + b"\n",
        0o644,
    )
    for src in sorted(Path(yaml.__file__).parent.glob("*.py")):
        files[f"yaml/{src.name}"] = (src.read_bytes(), 0o644)
    files[f"wheels/{pip_wheel.name}"] = (pip_wheel.read_bytes(), 0o644)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted({name.rsplit("/", 1)[0] for name in files}):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
            tar.addfile(info)
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


HEADER = r"""#!/bin/sh
#
# Created by constructor @CONSTRUCTOR@
#
# NAME:  @NAME@
# VER:   @VER@
# PLAT:  linux-64
# MD5:   @MD5@
#
# gpulab STAND-IN installer (gpulab.lab.installer): imitates a constructor installer for offline tests.
# The base environment is a venv of this host's python3; conda is the gpulab conda stand-in @CONDA@.

set -eu
unset LD_LIBRARY_PATH LD_PRELOAD LD_AUDIT || true
unset CONDARC MAMBARC || true

case "$0" in
    *.sh) ;;
    *)
        printf 'Please run using "bash"/"dash"/"sh"/"zsh", but not "." or "source".\n' >&2
        exit 1
        ;;
esac

THIS_DIR=$(DIRNAME=$(dirname "$0"); cd "$DIRNAME"; pwd)
THIS_FILE=$(basename "$0")
THIS_PATH="$THIS_DIR/$THIS_FILE"
PREFIX="${HOME:-/opt}/@LOWER@"
BATCH=0
FORCE=0
USAGE="
usage: $0 [options]

Installs @NAME@ @VER@
@CFLAG_HELP@
-b           run install in batch mode (without manual intervention),
             it is expected the license terms (if any) are agreed upon
-f           no error if install prefix already exists
-h           print this help message and exit
-p PREFIX    install prefix, defaults to $PREFIX, must not contain spaces.
-s           skip running pre/post-link/install scripts
-u           update an existing installation
-t           run package tests after installation (may install conda-build)
"

while getopts "@GETOPTS@" x; do
    case "$x" in
        h)
            printf "%s\n" "$USAGE"
            exit 2
            ;;
        b) BATCH=1 ;;
        i) BATCH=0 ;;
        f) FORCE=1 ;;
        p) PREFIX="$OPTARG" ;;
        k|s|m|t|c) ;;
        u) FORCE=1 ;;
        ?)
            printf "ERROR: did not recognize option '%s', please try -h\n" "$x"
            exit 1
            ;;
    esac
done

if [ "$BATCH" = "0" ]; then
    printf "\n"
    printf "Welcome to @NAME@ @VER@\n"
    printf "\n"
    printf "In order to continue the installation process, please review the license\n"
    printf "agreement.\n"
    printf "Please, press ENTER to continue\n"
    printf ">>> "
    read -r dummy || true
    printf "\n(gpulab stand-in: no license text here; the real installer shows its terms)\n"
    printf "\n"
    printf "Do you accept the license terms? [yes|no]\n"
    printf ">>> "
    ans=""
    read -r ans || true
    if [ "$ans" != "yes" ] && [ "$ans" != "Yes" ] && [ "$ans" != "YES" ]; then
        printf "The license agreement wasn't approved, aborting installation.\n"
        exit 2
    fi
    printf "\n"
    printf "@NAME@ will now be installed into this location:\n"
    printf "%s\n" "$PREFIX"
    printf "\n"
    printf "  - Press ENTER to confirm the location\n"
    printf "  - Press CTRL-C to abort the installation\n"
    printf "  - Or specify a different location below\n"
    printf "\n"
    printf "[%s] >>> " "$PREFIX"
    user_prefix=""
    read -r user_prefix || true
    if [ "$user_prefix" != "" ]; then
        PREFIX="$user_prefix"
    fi
fi

case "$PREFIX" in
    *\ * )
        printf "ERROR: Cannot install into directories with spaces\n" >&2
        exit 1
        ;;
esac

if [ "$FORCE" = "0" ] && [ -e "$PREFIX" ]; then
    printf "ERROR: File or directory already exists: '%s'\n" "$PREFIX" >&2
    printf "If you want to update an existing installation, use the -u option.\n" >&2
    exit 1
fi

if ! mkdir -p "$PREFIX" 2>/dev/null; then
    printf "ERROR: Could not create directory: '%s'.\n" "$PREFIX" >&2
    printf "Check permissions and available disk space (@MB@ MB needed).\n" >&2
    exit 1
fi

PREFIX=$(cd "$PREFIX"; pwd)
export PREFIX

printf "PREFIX=%s\n" "$PREFIX"

if ! command -v python3 >/dev/null 2>&1; then
    printf "ERROR: the gpulab stand-in installer needs python3 on this host\n" >&2
    exit 1
fi

@BOOTSTRAP@
mkdir -p "$PREFIX/install_tmp"
if [ "$(id -u)" != "0" ]; then
    touch "$PREFIX/.nonadmin"
fi

printf "@UNPACKING@\n"
python3 - "$THIS_PATH" "$PREFIX/install_tmp" <<'PYEOF' || exit 1
import hashlib, io, sys, tarfile
data = open(sys.argv[1], "rb").read()
marker = b"\n@@END" + b"_HEADER@@\n"
cut = data.index(marker)
payload = data[cut + len(marker):]
expected = [ln[9:].decode() for ln in data[:cut].split(b"\n")[:12] if ln.startswith(b"# MD5:   ")][0]
got = hashlib.md5(payload).hexdigest()
if got != expected:
    sys.stderr.write("WARNING: md5sum mismatch of tar archive\n")
    sys.stderr.write("expected: %s\n     got: %s  -\n" % (expected, got))
kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
    tar.extractall(sys.argv[2], **kw)
PYEOF

FAULTS="${GPULAB_STANDIN_FAULTS:-/etc/gpulab-lab/conda-faults}"
if [ -f "$FAULTS" ] && grep -qx 'install=interrupt' "$FAULTS"; then
    printf "(gpulab stand-in fault install=interrupt: stopping as a killed install would)\n" >&2
    exit 1
fi

printf "\nInstalling base environment...\n\n"
python3 -m venv --without-pip "$PREFIX" || exit 1
PYTHONPATH="$PREFIX/install_tmp" "$PREFIX/bin/python" -m conda_standin._install "$PREFIX" || exit 1
printf "Preparing transaction: done\n"
printf "Executing transaction: done\n"

mkdir -p "$PREFIX/envs"
rm -rf "$PREFIX/install_tmp"

printf "installation finished.\n"

if [ "${PYTHONPATH:-}" != "" ]; then
    printf "WARNING:\n"
    printf "    You currently have a PYTHONPATH environment variable set. This may cause\n"
    printf "    unexpected behavior when running the Python interpreter in @NAME@.\n"
    printf "    For best results, please verify that your PYTHONPATH only points to\n"
    printf "    directories of packages that are compatible with the Python interpreter\n"
    printf "    in @NAME@: $PREFIX\n"
fi

if [ "$BATCH" = "0" ]; then
    printf "\nYou have chosen to not have conda modify your shell scripts at all.\n"
    printf "To activate conda's base environment in your current shell session:\n\n"
    printf "eval \"\$(%s/bin/conda shell.YOUR_SHELL_NAME hook)\" \n\n" "$PREFIX"
    printf "Thank you for installing @NAME@!\n"
fi

exit 0
"""


def build_installer(
    out_dir: Path, version: str, flavor: Flavor = "miniconda", cache_dir: Path | None = None
) -> Path:
    """Write `Miniconda3-<version>-Linux-x86_64.sh` (or Miniforge3-...) into `out_dir` and return its path."""
    conda_version = conda_version_of(version)
    name = "Miniconda3" if flavor == "miniconda" else "Miniforge3"
    cons = constructor_version(conda_version)
    new_constructor = cons >= "3.12"
    release = {
        "conda_version": conda_version,
        "constructor_version": cons,
        "flavor": flavor,
        "installer_name": name,
        "installer_version": version,
    }
    payload = _payload(release, _pip_wheel(cache_dir))
    md5 = hashlib.md5(payload).hexdigest()
    subst = {
        "@CONSTRUCTOR@": cons,
        "@NAME@": name,
        "@LOWER@": name.lower(),
        "@VER@": version,
        "@MD5@": md5,
        "@CONDA@": conda_version,
        "@MB@": str(max(1, len(payload) * 3 // 1_000_000)),
        "@GETOPTS@": "bifhkp:smutc" if new_constructor else "bifhkp:smut",
        "@CFLAG_HELP@": "" if not new_constructor else "-c           run 'conda init' after a batch install",
        "@BOOTSTRAP@": 'printf "Unpacking bootstrapper...\\n"' if new_constructor else ":",
        "@UNPACKING@": "Unpacking payload..." if new_constructor else "Unpacking payload ...",
    }
    text = HEADER
    for key, value in subst.items():
        text = text.replace(key, value)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / installer_name(version, flavor)
    path.write_bytes(text.encode() + MARKER[1:] + payload)
    path.chmod(0o755)
    return path
