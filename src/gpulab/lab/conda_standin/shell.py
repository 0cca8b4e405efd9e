"""`etc/profile.d/conda.sh`, `conda shell.posix hook|activate|deactivate` and `conda run`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from . import errors
from .context import Context
from .prefix import is_environment, state_vars

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


def _q(value: str) -> str:
    return shlex.quote(value) if value else "''"


def exe_vars(ctx: Context) -> list[tuple[str, str]]:
    """`context.conda_exe_vars_dict` as conda.sh exports it (facts §1.6; `_CONDA_*` from 25.11)."""
    root, new = str(ctx.root_prefix), ctx.v >= (25, 11)
    out = [("CONDA_EXE", f"{root}/bin/conda")] + ([("_CONDA_EXE", f"{root}/bin/conda")] if new else [])
    out += [("_CE_M", ""), ("_CE_CONDA", ""), ("CONDA_PYTHON_EXE", f"{root}/bin/python")]
    return out + ([("_CONDA_ROOT", root)] if new else [])


def conda_sh(ctx: Context) -> str:
    return "".join(f"export {k}='{v}'\n" for k, v in exe_vars(ctx)) + CONDA_SH_BODY


def hook(ctx: Context) -> str:
    return conda_sh(ctx) + ("conda activate 'base'\n" if ctx.auto_activate else "")


def resolve_env(ctx: Context, target: str) -> Path:
    """`conda activate` target: a path, `base`, or a name in the envs dirs (not resolved: a symlinked env
    keeps its public path)."""
    if "/" in target:
        path = Path(os.path.abspath(os.path.expanduser(target)))
        if is_environment(path):
            return path
    elif target in ("base", "root"):
        return ctx.root_prefix
    else:
        for d in ctx.envs_dirs:
            if is_environment(d / target):
                return d / target
    raise errors.EnvironmentNameNotFound(target)


def env_name(ctx: Context, prefix: Path) -> str:
    if prefix == ctx.root_prefix:
        return "base"
    return prefix.name if prefix.parent in ctx.envs_dirs else str(prefix)


def activation(ctx: Context, prefix: Path) -> dict[str, str]:
    """The variables `conda activate PREFIX` sets (PATH first: the env's bin replaces the active env's)."""
    old = os.environ.get("CONDA_PREFIX")
    path = [p for p in os.environ.get("PATH", "").split(":") if p and p != f"{old}/bin"]
    return {
        "PATH": ":".join([f"{prefix}/bin", *path]),
        "CONDA_PREFIX": str(prefix),
        "CONDA_SHLVL": str(int(os.environ.get("CONDA_SHLVL") or 0) + (0 if old else 1)),
        "CONDA_DEFAULT_ENV": env_name(ctx, prefix),
        "CONDA_PROMPT_MODIFIER": f"({env_name(ctx, prefix)}) ",
        **dict(exe_vars(ctx)),
        **state_vars(prefix),
    }


def activate(ctx: Context, target: str) -> str:
    """One activation level: activating another env replaces the active one (no stacking)."""
    variables = activation(ctx, resolve_env(ctx, target))
    ps1 = os.environ.get("PS1", "").removeprefix(os.environ.get("CONDA_PROMPT_MODIFIER", ""))
    lines = [f"PS1={_q(variables['CONDA_PROMPT_MODIFIER'] + ps1)}"]
    lines += [f"export {k}={_q(v)}" for k, v in variables.items()]
    lines += [
        f"unset {k}"
        for k in state_vars(Path(os.environ.get("CONDA_PREFIX") or "/nonexistent"))
        if k not in variables
    ]
    return "\n".join(lines) + "\n"


def deactivate(ctx: Context) -> str:
    old = os.environ.get("CONDA_PREFIX")
    if not old:
        return ""
    path = [p for p in os.environ.get("PATH", "").split(":") if p and p != f"{old}/bin"]
    ps1 = os.environ.get("PS1", "").removeprefix(os.environ.get("CONDA_PROMPT_MODIFIER", ""))
    lines = [f"export PATH={_q(':'.join(path))}", f"PS1={_q(ps1)}", "export CONDA_SHLVL='0'"]
    lines += [
        f"unset {k}"
        for k in ("CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_PROMPT_MODIFIER", *state_vars(Path(old)))
    ]
    return "\n".join(lines) + "\n"


def run(ctx: Context, prefix: Path, argv: list[str], capture: bool) -> int:
    """`conda run` (conda-facts §2.8): the command in the activated env, stdin at EOF, its rc passed through
    with conda's ERROR line when not 0; capture mode prints the output with `print()` (one extra newline)."""
    env = {**os.environ, **activation(ctx, prefix)}
    try:
        proc = subprocess.run(argv, capture_output=capture, stdin=subprocess.DEVNULL, env=env, check=False)
    except OSError as exc:
        sys.stderr.write(f"{exc}\n")
        rc = 127
    else:
        rc = proc.returncode
        if capture and proc.stdout:
            print(proc.stdout.decode(errors="replace"))
        if capture and proc.stderr:
            print(proc.stderr.decode(errors="replace"), file=sys.stderr)
    if rc != 0:
        sys.stderr.write(
            f"ERROR conda.cli.main_run:execute(127): `conda run {shlex.join(argv)}` failed. "
            "(See above for error)\n"
        )
    return rc
