"""Install step of the stand-in installer, run from `<PREFIX>/install_tmp` by the installer's shell header.

Usage: PYTHONPATH=<PREFIX>/install_tmp <PREFIX>/bin/python -m conda_standin._install PREFIX
(the base venv already exists at PREFIX). It lays out the prefix like a constructor install (facts §1.6):
the stand-in conda in site-packages, `bin/conda`, `condabin/conda`, `etc/profile.d/conda.sh`, `conda-meta/`
(history, records), `envs/`, `pkgs/`, the flavour's `.condarc`, and registers the base in environments.txt.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from . import release
from .context import Context
from .envs import PIP_NOTE, PYTHON_NOTE, install_wheel
from .prefix import append_history, make_record, register_env, site_packages, write_record
from .shell import conda_sh

ENTRY = (
    "#!{prefix}/bin/python\nimport sys\nfrom conda_standin.cli import main\n\n"
    "if __name__ == '__main__':\n    sys.exit(main())\n"
)
_SOURCE = '#!/bin/sh\n_CONDA_ROOT="{prefix}"\n\\. "$_CONDA_ROOT/etc/profile.d/conda.sh" || return $?\n'
SCRIPTS = {"activate": _SOURCE + 'conda activate "$@"\n', "deactivate": _SOURCE + "conda deactivate\n"}
CONDARC = {
    "miniforge": "channels:\n  - conda-forge\nmirrored_channels:\n  conda-forge:\n"
    "    - https://conda.anaconda.org/conda-forge\n    - https://prefix.dev/conda-forge\n",
    "miniconda": "channels:\n  - defaults\n",
}


def main(prefix: Path) -> int:
    rel = release()
    tmp = Path(__file__).resolve().parent.parent
    sp = site_packages(prefix)
    if sp is None:
        sys.stderr.write(f"ERROR: no site-packages in {prefix}\n")
        return 1
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

    scripts = {"bin/conda": ENTRY, "condabin/conda": ENTRY, "_conda": ENTRY}
    scripts.update({f"bin/{name}": text for name, text in SCRIPTS.items()})
    for rel_path, text in scripts.items():
        path = prefix / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_text(text.format(prefix=prefix), encoding="utf-8")
        path.chmod(0o755)
    for stale in ("activate.csh", "activate.fish", "Activate.ps1"):
        (prefix / "bin" / stale).unlink(missing_ok=True)
    ctx = Context(root_prefix=prefix, conda_version=rel["conda_version"], flavor=rel["flavor"])
    (prefix / "etc" / "profile.d").mkdir(parents=True, exist_ok=True)
    (prefix / "etc" / "profile.d" / "conda.sh").write_text(conda_sh(ctx), encoding="utf-8")

    miniconda = rel["flavor"] == "miniconda"
    channel = "https://repo.anaconda.com/pkgs/main" if miniconda else "https://conda.anaconda.org/conda-forge"
    py = ".".join(str(x) for x in sys.version_info[:3])
    records = [
        make_record("python", py, channel, noarch=False, spec="python", note=PYTHON_NOTE),
        make_record("conda", rel["conda_version"], channel, noarch=False, spec="conda",
                    note="gpulab stand-in record: the pure-Python conda stand-in (gpulab.lab.conda_standin)"),
        make_record("pip", pip_version, channel, noarch=True, spec="pip", note=PIP_NOTE),
    ]  # fmt: skip
    if miniconda:
        note = "gpulab stand-in record: the ToS gate is part of the conda stand-in"
        records.append(
            make_record("conda-anaconda-tos", "0.2.2", channel, noarch=True, spec="tos", note=note)
        )
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
