"""Install step of the stand-in installer, run from `<PREFIX>/install_tmp` by the installer's shell header.

Usage: PYTHONPATH=<PREFIX>/install_tmp <PREFIX>/bin/python -m conda_standin._install PREFIX
(the base venv already exists at PREFIX). It lays out the prefix like a
constructor install (facts §1.6): the stand-in conda in site-packages, `bin/conda`, `condabin/conda`,
`etc/profile.d/conda.sh`, `conda-meta/` (history, records), `envs/`, `pkgs/`, the flavour's `.condarc`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from . import release
from .context import Context
from .envs import install_wheel_files
from .prefix import make_record, register_env, site_packages, write_record
from .shell import conda_sh

HERE = Path(__file__).resolve().parent

ENTRY = (
    "#!{prefix}/bin/python\n# -*- coding: utf-8 -*-\nimport sys\nfrom conda_standin.cli import main\n\n"
    "if __name__ == '__main__':\n    sys.exit(main())\n"
)
_SOURCE = '#!/bin/sh\n_CONDA_ROOT="{prefix}"\n\\. "$_CONDA_ROOT/etc/profile.d/conda.sh" || return $?\n'
ACTIVATE = _SOURCE + 'conda activate "$@"\n'
DEACTIVATE = _SOURCE + "conda deactivate\n"
MINIFORGE_CONDARC = """channels:
  - conda-forge
mirrored_channels:
  conda-forge:
    - https://conda.anaconda.org/conda-forge
    - https://prefix.dev/conda-forge
"""
MINICONDA_CONDARC = "channels:\n  - defaults\n"


def main(prefix: Path) -> int:
    rel = release()
    tmp = HERE.parent
    sp = site_packages(prefix)
    if sp is None:
        sys.stderr.write(f"ERROR: no site-packages in {prefix}\n")
        return 1
    for pkg in ("conda_standin", "yaml"):
        shutil.rmtree(sp / pkg, ignore_errors=True)
        shutil.copytree(tmp / pkg, sp / pkg, ignore=shutil.ignore_patterns("_install.py", "__pycache__"))
    wheels_dir = prefix / "lib" / "gpulab-standin" / "wheels"
    shutil.rmtree(wheels_dir, ignore_errors=True)
    wheels_dir.mkdir(parents=True)
    wheel = next(iter(sorted((tmp / "wheels").glob("pip-*.whl"))))
    shutil.copy2(wheel, wheels_dir / wheel.name)
    for old in sp.glob("pip-*.dist-info"):
        shutil.rmtree(old)
    _, pip_version = install_wheel_files(prefix, wheels_dir / wheel.name)

    for rel_path in ("bin/conda", "condabin/conda", "_conda"):
        path = prefix / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_text(ENTRY.format(prefix=prefix), encoding="utf-8")
        path.chmod(0o755)
    for name, text in (("activate", ACTIVATE), ("deactivate", DEACTIVATE)):
        path = prefix / "bin" / name
        path.unlink(missing_ok=True)
        path.write_text(text.format(prefix=prefix), encoding="utf-8")
        path.chmod(0o755)
    for stale in ("activate.csh", "activate.fish", "Activate.ps1"):
        (prefix / "bin" / stale).unlink(missing_ok=True)

    ctx = Context(root_prefix=prefix, conda_version=rel["conda_version"], flavor=rel["flavor"])
    profile = prefix / "etc" / "profile.d"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "conda.sh").write_text(conda_sh(ctx), encoding="utf-8")

    channel = (
        "https://conda.anaconda.org/conda-forge"
        if rel["flavor"] == "miniforge"
        else "https://repo.anaconda.com/pkgs/main"
    )
    py = ".".join(str(x) for x in sys.version_info[:3])
    records = [
        make_record(
            "python",
            py,
            channel,
            noarch=False,
            spec="python",
            note="gpulab stand-in record: the host's python3 interpreter through a venv",
        ),
        make_record(
            "conda",
            rel["conda_version"],
            channel,
            noarch=False,
            spec="conda",
            note="gpulab stand-in record: the pure-Python conda stand-in (gpulab.lab.conda_standin)",
        ),
        make_record(
            "pip",
            pip_version,
            channel,
            noarch=True,
            spec="pip",
            note="gpulab stand-in record: pip unpacked from the wheel bundled in the installer",
        ),
    ]
    if rel["flavor"] == "miniconda":
        records.append(
            make_record(
                "conda-anaconda-tos",
                "0.2.2",
                channel,
                noarch=True,
                spec="conda-anaconda-tos",
                note="gpulab stand-in record: the ToS gate is part of the conda stand-in",
            )
        )
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    for rec in records:
        write_record(prefix, rec)
    cname = "defaults" if rel["flavor"] == "miniconda" else "conda-forge"
    history = [
        f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==",
        f"# cmd: constructor construct.yaml  (gpulab stand-in {rel['installer_name']})",
        f"# conda version: {rel['conda_version']}",
    ]
    history += [f"+{cname}/{r['subdir']}::{r['name']}-{r['version']}-{r['build']}" for r in records]
    history.append("# update specs: " + json.dumps([r["name"] for r in records]))
    (meta / "history").write_text("\n".join(history) + "\n", encoding="utf-8")
    (meta / "initial-state.explicit.txt").write_text(
        "# This file may be used to create an environment using:\n"
        "# $ conda create --name <env> --file <this file>\n"
        "# platform: linux-64\n@EXPLICIT\n" + "".join(f"{r['url']}\n" for r in records),
        encoding="utf-8",
    )
    (prefix / ".condarc").write_text(
        MINIFORGE_CONDARC if rel["flavor"] == "miniforge" else MINICONDA_CONDARC, encoding="utf-8"
    )
    (prefix / "envs").mkdir(exist_ok=True)
    (prefix / "pkgs").mkdir(exist_ok=True)
    (prefix / "pkgs" / "urls.txt").touch()
    register_env(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
