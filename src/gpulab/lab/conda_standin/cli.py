"""The stand-in `conda` command line: exactly the commands and flags gpulab's roles, scenarios and lab call.

Simulated: `--version`, `env create`, `env list`, `list`, `run`, `config --show`, `shell.posix hook|activate|
deactivate` (for `etc/profile.d/conda.sh`), and, in Miniconda's base, `tos accept`. Any other command or flag
exits 2 with "gpulab stand-in: `conda X` is not simulated".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from typing import Any, NoReturn

from . import envs, errors, shell, tos
from .context import CHANNEL_ALIAS, Context, load_context


class _Unsimulated(Exception):
    """Raised by the parser for a command or flag it does not know; main() names it."""

    def __init__(self, flag: str = "") -> None:
        self.flag = flag


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '?([^' ]+)", message)
        if choice and choice.group(1) == "tos":  # Miniforge has no ToS plugin: conda's own error (facts §5.3)
            raise errors.CommandNotFoundError("No command 'conda tos'.")
        if choice or "unrecognized arguments" in message:
            raise _Unsimulated(message.split(": ", 1)[1].split()[0] if not choice else "")
        super().error(message)


def build_parser(ctx: Context) -> Parser:
    parser = Parser(prog="conda", description="conda (gpulab offline stand-in)", allow_abbrev=False)
    parser.add_argument("-V", "--version", action="version", version=f"conda {ctx.conda_version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(parent: Any, name: str, target: bool = True, json: bool = True) -> Parser:
        p: Parser = parent.add_parser(name, allow_abbrev=False)
        if target:
            g = p.add_mutually_exclusive_group()
            g.add_argument("-n", "--name")
            g.add_argument("-p", "--prefix")
        if json:
            p.add_argument("--json", action="store_true")
        return p

    command(sub, "list")
    run = command(sub, "run", json=False)
    run.add_argument("--no-capture-output", "--live-stream", action="store_true", dest="no_capture_output")
    run.add_argument("executable_call", nargs=argparse.REMAINDER)
    cfg = command(sub, "config", target=False)
    cfg.add_argument("--show", nargs="*", metavar="KEY", required=True)
    env_sub = sub.add_parser("env").add_subparsers(
        dest="env_command", metavar="COMMAND", parser_class=Parser, required=True
    )
    create = command(env_sub, "create")
    create.add_argument("-f", "--file", default="environment.yml")
    create.add_argument("-y", "--yes", action="store_true")
    command(env_sub, "list", target=False)
    sh = sub.add_parser("shell.posix")
    sh.add_argument("action", choices=("hook", "activate", "deactivate"))
    sh.add_argument("target", nargs="?", default="base")
    if ctx.flavor == "miniconda":  # the conda-anaconda-tos plugin ships in Miniconda's base only (facts §5)
        t_sub = sub.add_parser("tos").add_subparsers(
            dest="tos_command", metavar="COMMAND", parser_class=Parser, required=True
        )
        accept = t_sub.add_parser("accept")
        accept.add_argument("-c", "--channel", action="append", default=[])
        accept.add_argument("--override-channels", action="store_true")
        accept.add_argument("--system", action="store_true")
    return parser


def _channel_obj(url: str) -> dict[str, Any]:
    scheme, _, rest = url.partition("://")
    location, _, name = rest.partition("/")
    return {"auth": None, "location": location, "name": name or None, "package_filename": None,
            "platform": None, "scheme": scheme, "token": None}  # fmt: skip


def config_show(ctx: Context, keys: list[str]) -> int:
    """`conda config --show [KEY...] [--json]` (facts §2.9): the merged `.condarc` keys and computed ones."""
    d: dict[str, Any] = {**ctx.rc, "channels": ctx.channels, "auto_activate": ctx.auto_activate}
    d["channel_alias"] = _channel_obj(str(ctx.rc.get("channel_alias", CHANNEL_ALIAS)))
    d["default_channels"] = [_channel_obj(u) for u in ctx.default_channels]
    d["custom_channels"] = {
        k: _channel_obj(f"{v.rstrip('/')}/{k}") for k, v in (ctx.rc.get("custom_channels") or {}).items()
    }
    d["envs_dirs"], d["pkgs_dirs"] = [str(p) for p in ctx.envs_dirs], [str(p) for p in ctx.pkgs_dirs]
    if ctx.flavor == "miniconda":
        d["plugins"] = {**(ctx.rc.get("plugins") or {}), "auto_accept_tos": ctx.auto_accept_tos}
    unknown = [k for k in keys if k not in d]
    if unknown:
        raise errors.CondaValueError(f"Key(s) not found: {unknown}")  # stand-in wording
    shown = {k: d[k] for k in sorted(keys or d)}
    if ctx.json:
        print(json.dumps(shown, indent=2, sort_keys=True))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(shown, default_flow_style=False, sort_keys=True))
    return 0


def dispatch(ctx: Context, args: Any, cmd_line: str) -> int:
    if args.command == "list":
        return envs.list_cmd(ctx, args)
    if args.command == "run":
        argv = args.executable_call[1:] if args.executable_call[:1] == ["--"] else args.executable_call
        if not argv:
            raise errors.CondaError("No command specified")
        return shell.run(
            ctx, envs.existing_env(ctx, args.name, args.prefix), argv, not args.no_capture_output
        )
    if args.command == "config":
        return config_show(ctx, args.show)
    if args.command == "shell.posix":
        text = {
            "hook": shell.hook,
            "activate": lambda c: shell.activate(c, args.target),
            "deactivate": shell.deactivate,
        }
        sys.stdout.write(text[args.action](ctx))
        return 0
    if args.command == "tos":
        return tos.accept(ctx, args.channel, args.override_channels, args.system)
    if args.command == "env" and args.env_command == "create":
        return envs.env_create(ctx, args, cmd_line)
    if args.command == "env":
        return envs.env_list(ctx)
    build_parser(ctx).print_help()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ctx = load_context()
    try:
        try:
            args = build_parser(ctx).parse_args(argv)
        except _Unsimulated as exc:
            words: list[str] = []
            for word in argv[:2]:
                if word.startswith("-"):
                    break
                words.append(word)
            raise errors.NotSimulated(" ".join([*words, exc.flag]).strip()) from None
        except SystemExit as exc:
            return int(exc.code or 0)
        ctx.json = bool(getattr(args, "json", False))
        return dispatch(ctx, args, shlex.join([f"{ctx.root_prefix}/bin/conda", *argv]))
    except errors.CondaError as exc:
        return errors.print_error(exc, ctx.json)
    except BrokenPipeError:
        return 1
    except PermissionError as exc:
        return errors.print_error(
            errors.NotWritableError(str(exc.filename or ""), os.geteuid(), os.getegid()), ctx.json
        )


def entry() -> None:
    sys.exit(main())
