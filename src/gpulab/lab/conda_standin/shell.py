"""`etc/profile.d/conda.sh`, `conda shell.posix activate` (what its `conda activate` runs) and `conda run`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from . import CondaError
from .context import Context

# The `conda` shell function of conda.sh: `conda activate|deactivate` evaluate what
# `conda shell.posix activate|deactivate` prints; every other subcommand runs the conda executable.
CONDA_SH_BODY = r"""
__conda_exe() (
    "$CONDA_EXE" $_CE_M $_CE_CONDA "$@"
)

__conda_activate() {
    \local ask_conda
    ask_conda="$(PS1="${PS1:-}" __conda_exe shell.posix "$@")" || \return
    \eval "$ask_conda"
    \hash -r
}

conda() {
    \local cmd="${1-__missing__}"
    case "$cmd" in
        activate|deactivate)
            __conda_activate "$@"
            ;;
        *)
            __conda_exe "$@"
            ;;
    esac
}

if [ -z "${CONDA_SHLVL+x}" ]; then
    \export CONDA_SHLVL=0
    PATH="$(\dirname "$(\dirname "$CONDA_EXE")")/condabin${PATH:+":${PATH}"}"
    \export PATH
fi
"""


def is_environment(prefix: Path) -> bool:
    """conda's own test (`PrefixData.is_environment`): `<prefix>/conda-meta/history` exists (facts §6.1)."""
    return (prefix / "conda-meta" / "history").is_file()


def exe_vars(ctx: Context) -> list[tuple[str, str]]:
    """`context.conda_exe_vars_dict` as conda.sh exports it (facts §1.6; `_CONDA_*` from 25.11)."""
    root, new = str(ctx.root_prefix), ctx.v >= (25, 11)
    out = [("CONDA_EXE", f"{root}/bin/conda")] + ([("_CONDA_EXE", f"{root}/bin/conda")] if new else [])
    out += [("_CE_M", ""), ("_CE_CONDA", ""), ("CONDA_PYTHON_EXE", f"{root}/bin/python")]
    return out + ([("_CONDA_ROOT", root)] if new else [])


def conda_sh(ctx: Context) -> str:
    return "".join(f"export {k}='{v}'\n" for k, v in exe_vars(ctx)) + CONDA_SH_BODY


def find_env(ctx: Context, name: str | None, path: str | None) -> Path:
    """`-p PATH`, `base`, or a name in the envs dirs (not resolved: a symlinked env keeps its public path)."""
    if path:
        found = [Path(os.path.abspath(os.path.expanduser(path)))]
    else:
        found = [ctx.root_prefix] if name in ("base", "root") else [d / str(name) for d in ctx.envs_dirs]
    for prefix in found:
        if is_environment(prefix):
            return prefix
    if path:
        raise CondaError(f"Not a conda environment: {found[0]}", "EnvironmentLocationNotFound")
    raise CondaError(
        f"Could not find conda environment: {name}\n"
        "You can list all discoverable environments with `conda info --envs`.",
        "EnvironmentNameNotFound",
    )


def activation(ctx: Context, prefix: Path) -> dict[str, str]:
    """The variables `conda activate PREFIX` sets: the env's bin replaces the active env's first on PATH,
    and the env's `variables:` (`conda-meta/state`, conda-facts §2.1)."""
    old = os.environ.get("CONDA_PREFIX")
    path = [p for p in os.environ.get("PATH", "").split(":") if p and p != f"{old}/bin"]
    try:
        state = json.loads((prefix / "conda-meta" / "state").read_text(encoding="utf-8"))["env_vars"]
    except (OSError, ValueError, KeyError):
        state = {}
    name = (
        "base"
        if prefix == ctx.root_prefix
        else prefix.name
        if prefix.parent in ctx.envs_dirs
        else str(prefix)
    )
    return {
        "PATH": ":".join([f"{prefix}/bin", *path]),
        "CONDA_PREFIX": str(prefix),
        "CONDA_SHLVL": str(int(os.environ.get("CONDA_SHLVL") or 0) + (0 if old else 1)),
        "CONDA_DEFAULT_ENV": name,
        **dict(exe_vars(ctx)),
        **{str(k): str(v) for k, v in state.items()},
    }


def activate(ctx: Context, target: str) -> int:
    """One activation level: activating another env replaces the active one (no stacking)."""
    prefix = find_env(ctx, None if "/" in target else target, target if "/" in target else None)
    for key, value in activation(ctx, prefix).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def run(ctx: Context, prefix: Path, argv: list[str]) -> int:
    """`conda run` (conda-facts §2.8): the command in the activated env, stdin at EOF, its rc passed through
    with conda's ERROR line when not 0; the captured output printed with `print()` (one extra newline)."""
    env = {**os.environ, **activation(ctx, prefix)}
    try:
        proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, env=env, check=False)
    except OSError as exc:
        sys.stderr.write(f"{exc}\n")
        rc = 127
    else:
        rc = proc.returncode
        if proc.stdout:
            print(proc.stdout.decode(errors="replace"))
        if proc.stderr:
            print(proc.stderr.decode(errors="replace"), file=sys.stderr)
    if rc != 0:
        sys.stderr.write(
            f"ERROR conda.cli.main_run:execute(127): `conda run {shlex.join(argv)}` failed. "
            "(See above for error)\n"
        )
    return rc
