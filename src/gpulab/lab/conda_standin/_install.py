"""Install step of the stand-in installer, run from `<PREFIX>/install_tmp` by the installer's shell header.

Usage: PYTHONPATH=<PREFIX>/install_tmp <PREFIX>/bin/python -m conda_standin._install PREFIX
(the base venv already exists at PREFIX). It lays out what the roles read of a constructor install (facts
§1.6): the stand-in conda in site-packages, `bin/conda`, `condabin/conda`, `etc/profile.d/conda.sh`,
`conda-meta/` (history, records), `envs/`, `pkgs/`, the flavour's `.condarc`, the base in environments.txt.
"""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

from . import release
from .context import Context
from .envs import (
    PIP_NOTE,
    PYTHON_NOTE,
    append_history,
    install_wheel,
    make_record,
    register_env,
    site_packages,
    write_record,
)
from .shell import conda_sh

ENTRY = "#!{prefix}/bin/python\nimport sys\nfrom conda_standin.cli import main\n\nsys.exit(main())\n"
CONDARC = {
    "miniforge": "channels:\n  - conda-forge\nmirrored_channels:\n  conda-forge:\n"
    "    - https://conda.anaconda.org/conda-forge\n    - https://prefix.dev/conda-forge\n",
    "miniconda": "channels:\n  - defaults\n",
}


def main(prefix: Path) -> int:
    rel = release()
    tmp = Path(__file__).resolve().parent.parent
    sp = site_packages(prefix)
    for pkg in ("conda_standin", "yaml"):
        shutil.rmtree(sp / pkg, ignore_errors=True)
        shutil.copytree(tmp / pkg, sp / pkg, ignore=shutil.ignore_patterns("_install.py", "__pycache__"))
    wheels = prefix / "lib" / "gpulab-standin" / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    wheel = shutil.copy2(min((tmp / "wheels").glob("pip-*.whl")), wheels)
    for old in sp.glob("pip-*.dist-info"):
        shutil.rmtree(old)
    pip_version = install_wheel(prefix, Path(wheel))
    for rel_path in ("bin/conda", "condabin/conda"):
        path = prefix / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_text(ENTRY.format(prefix=prefix), encoding="utf-8")
        path.chmod(0o755)
    ctx = Context(root_prefix=prefix, conda_version=rel["conda_version"], flavor=rel["flavor"])
    (prefix / "etc" / "profile.d").mkdir(parents=True, exist_ok=True)
    (prefix / "etc" / "profile.d" / "conda.sh").write_text(conda_sh(ctx), encoding="utf-8")

    miniconda = rel["flavor"] == "miniconda"
    channel = "https://repo.anaconda.com/pkgs/main" if miniconda else "https://conda.anaconda.org/conda-forge"
    conda_note = "gpulab stand-in record: the pure-Python conda stand-in (gpulab.lab.conda_standin)"
    records = [
        make_record("python", platform.python_version(), channel, "python", PYTHON_NOTE),
        make_record("conda", rel["conda_version"], channel, "conda", conda_note),
        make_record("pip", pip_version, channel, "pip", PIP_NOTE),
    ]
    for rec in records:
        write_record(prefix, rec)
    (prefix / "conda-meta" / "history").unlink(missing_ok=True)
    cmd = f"constructor construct.yaml  (gpulab stand-in {rel['installer_name']})"
    specs = [r["name"] for r in records]
    append_history(ctx, prefix, cmd, records, specs, channel="defaults" if miniconda else "conda-forge")
    (prefix / ".condarc").write_text(CONDARC[rel["flavor"]], encoding="utf-8")
    (prefix / "envs").mkdir(exist_ok=True)
    (prefix / "pkgs").mkdir(exist_ok=True)
    register_env(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
