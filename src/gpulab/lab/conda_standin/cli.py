"""The stand-in `conda` command line (argparse, like conda's own; facts §2)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from . import envs, errors, release, shell, tos
from .context import SUBDIR, Context, channel_url, load_context
from .prefix import env_details, known_prefixes

TOP_USAGE = "conda [-h] [-v] [--no-plugins] [-V] COMMAND ..."


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and self.prog.startswith("conda"):
            cmd = message.split("invalid choice: ", 1)[1].split(" ", 1)[0].strip("'")
            raise errors.CommandNotFoundError(f"No command '{self.prog} {cmd}'.")
        super().error(message)


def _target(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-n", "--name")
    g.add_argument("-p", "--prefix")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")


def build_parser(ctx: Context) -> Parser:
    parser = Parser(
        prog="conda",
        usage=TOP_USAGE,
        description="conda is a tool for managing and deploying "
        "applications, environments and packages. (gpulab offline stand-in)",
    )
    parser.add_argument("-V", "--version", action="version", version=f"conda {ctx.conda_version}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--no-plugins", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    info = sub.add_parser("info")
    _common(info)
    info.add_argument("--base", action="store_true")
    info.add_argument("-e", "--envs", action="store_true")
    info.add_argument("-a", "--all", action="store_true")

    lst = sub.add_parser("list")
    _target(lst)
    _common(lst)
    lst.add_argument("regex", nargs="?")
    lst.add_argument("--explicit", action="store_true")

    run = sub.add_parser("run")
    _target(run)
    run.add_argument("-v", "--verbose", action="count", default=0)
    run.add_argument("--dev", action="store_true")
    run.add_argument("--debug-wrapper-scripts", action="store_true")
    run.add_argument("--cwd")
    run.add_argument("--no-capture-output", "--live-stream", action="store_true", dest="no_capture_output")
    run.add_argument("executable_call", nargs=argparse.REMAINDER)

    rename = sub.add_parser("rename")
    _target(rename)
    _common(rename)
    rename.add_argument("destination")
    rename.add_argument("-y", "--yes", action="store_true")
    rename.add_argument("-d", "--dry-run", action="store_true")

    cfg = sub.add_parser("config")
    _common(cfg)
    cfg.add_argument("--show", nargs="*", metavar="KEY")
    cfg.add_argument("--show-sources", action="store_true")
    for where in ("--system", "--env"):
        cfg.add_argument(where, action="store_true")
    cfg.add_argument("--file")

    env = sub.add_parser("env")
    env_sub = env.add_subparsers(dest="env_command", metavar="COMMAND", parser_class=Parser)
    for cmd in ("create", "update"):
        p = env_sub.add_parser(cmd)
        _target(p)
        _common(p)
        p.add_argument("-f", "--file", default="environment.yml")
        p.add_argument("--solver")
        if ctx.v >= (25, 0):
            p.add_argument("--env-spec", "--environment-specifier")
        if cmd == "create":
            p.add_argument("-C", "--use-index-cache", action="store_true")
            p.add_argument("-k", "--insecure", action="store_true")
            p.add_argument("--offline", action="store_true")
            p.add_argument("--no-default-packages", action="store_true")
            p.add_argument("-d", "--dry-run", action="store_true")
            p.add_argument("-y", "--yes", action="store_true")
            if ctx.v < (24, 3):
                p.add_argument("--force", action="store_true", dest="yes")
            if ctx.v >= (25, 0):
                p.add_argument("--subdir", "--platform")
        else:
            p.add_argument("--prune", action="store_true")
            if ctx.v >= (25, 0):
                p.add_argument("--override-frozen", action="store_true")
    rm = env_sub.add_parser("remove")
    _target(rm)
    _common(rm)
    rm.add_argument("-y", "--yes", action="store_true")
    rm.add_argument("-d", "--dry-run", action="store_true")
    rm.add_argument("--solver")
    if ctx.v >= (25, 0):
        rm.add_argument("--override-frozen", action="store_true")
    el = env_sub.add_parser("list")
    _common(el)
    ex = env_sub.add_parser("export")
    _target(ex)
    _common(ex)
    ex.add_argument("-f", "--file")
    ex.add_argument("--no-builds", action="store_true")
    ex.add_argument("--from-history", action="store_true")
    ex.add_argument("--ignore-channels", action="store_true")

    for name in ("shell.posix", "shell.bash", "shell.sh", "shell.zsh"):
        sh = sub.add_parser(name)
        sh.add_argument("action", choices=("hook", "activate", "deactivate", "reactivate"))
        sh.add_argument("target", nargs="?")
        sh.add_argument("--stack", action="store_true")

    if ctx.flavor == "miniconda":  # the conda-anaconda-tos plugin ships in Miniconda's base only (facts §5)
        t = sub.add_parser("tos")
        _common(t)
        t_sub = t.add_subparsers(dest="tos_command", metavar="COMMAND", parser_class=Parser)
        for cmd in ("accept", "reject", "view"):
            tp = t_sub.add_parser(cmd)
            _common(tp)
            tp.add_argument("-c", "--channel", action="append")
            tp.add_argument("--override-channels", action="store_true")
            loc = tp.add_mutually_exclusive_group()
            for flag in ("--site", "--system", "--user", "--env"):
                loc.add_argument(flag, action="store_const", const=flag[2:], dest="where")
            loc.add_argument("--tos-root")
    return parser


# -- info, env list, config ------------------------------------------------------------------------
def _env_vars() -> dict[str, str]:
    out = {}
    for k, v in sorted(os.environ.items()):
        if k.startswith(("CONDA", "PYTHON", "SUDO")) or k.endswith("PATH"):
            out[k] = v
        elif k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            out[k] = "<set>"
    return out


def info_dict(ctx: Context) -> dict[str, Any]:
    """`conda info --json` keys (facts §2.6)."""
    active = os.environ.get("CONDA_PREFIX")
    if not active:
        active_name = None
    elif active == str(ctx.root_prefix):
        active_name = "base"
    elif any(Path(active).parent == d for d in ctx.envs_dirs):
        active_name = Path(active).name
    else:
        active_name = active
    envs = known_prefixes(ctx)
    py = sys.version_info
    d: dict[str, Any] = {
        "GID": os.getgid(),
        "UID": os.getuid(),
        "active_prefix": active,
        "active_prefix_name": active_name,
        "av_data_dir": str(ctx.root_prefix / "etc" / "conda"),
        "av_metadata_url_base": None,
        "channels": ctx.channel_subdir_urls(),
        "conda_build_version": "not installed",
        "conda_env_version": ctx.conda_version,
        "conda_location": str(Path(__file__).resolve().parent),
        "conda_prefix": str(ctx.root_prefix),
        "conda_shlvl": int(os.environ.get("CONDA_SHLVL") or -1),
        "conda_version": ctx.conda_version,
        "config_files": ctx.config_files,
        "default_prefix": active or str(ctx.root_prefix),
        "env_vars": _env_vars(),
        "envs": envs,
        "envs_dirs": [str(p) for p in ctx.envs_dirs],
        "netrc_file": None,
        "offline": False,
        "pkgs_dirs": [str(p) for p in ctx.pkgs_dirs],
        "platform": SUBDIR,
        "python_version": f"{py.major}.{py.minor}.{py.micro}.{py.releaselevel}.{py.serial}",
        "rc_path": str(Path(os.path.expanduser("~")) / ".condarc"),
        "requests_version": "2.32.3",
        "root_prefix": str(ctx.root_prefix),
        "root_writable": ctx.root_writable,
        "site_dirs": [],
        "solver": {"default": True, "name": "libmamba", "user_agent": "solver/libmamba conda/standin"},
        "sys.executable": sys.executable,
        "sys.prefix": sys.prefix,
        "sys.version": sys.version,
        "sys_rc_path": str(ctx.root_prefix / ".condarc"),
        "user_agent": f"conda/{ctx.conda_version} requests/2.32.3 CPython/{platform.python_version()} "
        f"Linux/{platform.release()} gpulab-standin",
        "user_rc_path": str(Path(os.path.expanduser("~")) / ".condarc"),
        "virtual_pkgs": [
            ["__archspec", "1", platform.machine()],
            ["__conda", ctx.conda_version, "0"],
            ["__glibc", platform.libc_ver()[1] or "2.36", "0"],
            ["__linux", platform.release().split("-")[0], "0"],
            ["__unix", "0", "0"],
        ],
    }
    if ctx.v >= (25, 11):
        d["envs_details"] = {p: env_details(ctx, p) for p in envs}
    return d


def dumps(ctx: Context, obj: Any, sort: bool | None = None) -> str:
    return json.dumps(obj, indent=2, sort_keys=ctx.sort_json() if sort is None else sort)


def info_cmd(ctx: Context, args: Any) -> int:
    if args.base:
        print(dumps(ctx, {"root_prefix": str(ctx.root_prefix)}) if ctx.json else str(ctx.root_prefix))
        return 0
    if args.envs and not ctx.json:
        return env_list_text(ctx)
    if ctx.json:
        print(dumps(ctx, info_dict(ctx)))
        return 0
    d = info_dict(ctx)
    print()
    for key, label in (
        ("active_prefix_name", "active environment"),
        ("conda_version", "conda version"),
        ("python_version", "python version"),
        ("root_prefix", "base environment"),
        ("channels", "channel URLs"),
        ("pkgs_dirs", "package cache"),
        ("envs_dirs", "envs directories"),
        ("platform", "platform"),
    ):
        val = d[key]
        if isinstance(val, list):
            val = ("\n" + " " * 28).join(val)
        print(f"{label:>26} : {val}")
    print()
    return 0


def env_list_json(ctx: Context) -> dict[str, Any]:
    """The three shapes of `conda env list --json` (facts §2.5)."""
    envs = known_prefixes(ctx)
    if ctx.v < (24, 7):
        return {"envs": envs}
    if ctx.v < (25, 11):
        return info_dict(ctx)
    return {"envs": envs, "envs_details": {p: env_details(ctx, p) for p in envs}}


def env_list_text(ctx: Context) -> int:
    print("# conda environments:\n#")
    if ctx.v >= (25, 0):
        print("# * -> active\n# + -> frozen")
    for p in known_prefixes(ctx):
        det = env_details(ctx, p)
        star = "*" if det["active"] else " "
        if ctx.v >= (25, 0):
            print(f"{det['name']:20} {star} {'+' if det['frozen'] else ' '} {p}")
        else:
            print(f"{det['name']:20} {star} {p}")
    print()
    return 0


def _channel_obj(url: str) -> dict[str, Any]:
    scheme, _, rest = url.partition("://")
    location, _, name = rest.partition("/")
    return {
        "auth": None,
        "location": location,
        "name": name or None,
        "package_filename": None,
        "platform": None,
        "scheme": scheme,
        "token": None,
    }


def config_dict(ctx: Context) -> dict[str, Any]:
    d: dict[str, Any] = {
        "add_pip_as_python_dependency": True,
        "allowlist_channels": [],
        "always_yes": ctx.always_yes or None,
        "auto_activate": ctx.auto_activate,
        "auto_update_conda": True,
        "channel_alias": _channel_obj("https://conda.anaconda.org"),
        "channel_priority": str(ctx.rc.get("channel_priority", "flexible")),
        "channels": ctx.channels,
        "custom_channels": {"pkgs/pro": _channel_obj("https://repo.anaconda.com/pkgs/pro")},
        "default_channels": [_channel_obj(u) for u in ctx.default_channels],
        "denylist_channels": [],
        "envs_dirs": [str(p) for p in ctx.envs_dirs],
        "notify_outdated_conda": bool(ctx.rc.get("notify_outdated_conda", True)),
        "number_channel_notices": int(ctx.rc.get("number_channel_notices", 5)),
        "offline": bool(ctx.rc.get("offline", False)),
        "pkgs_dirs": [str(p) for p in ctx.pkgs_dirs],
        "register_envs": bool(ctx.rc.get("register_envs", True)),
        "report_errors": ctx.rc.get("report_errors"),
        "rollback_enabled": True,
        "solver": str(ctx.rc.get("solver", "libmamba")),
        "ssl_verify": ctx.rc.get("ssl_verify", True),
    }
    if ctx.v < (25, 5):
        d["auto_activate_base"] = d.pop("auto_activate")
    if ctx.flavor == "miniconda":
        d["plugins"] = {"auto_accept_tos": ctx.auto_accept_tos}
    return d


def config_cmd(ctx: Context, args: Any) -> int:
    """`conda config --show [KEY...] [--json]` and `--show-sources` (facts §2.9)."""
    if args.show_sources:
        if ctx.json:
            import yaml

            print(
                json.dumps(
                    {f: yaml.safe_load(Path(f).read_text()) or {} for f in ctx.config_files},
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            for f in ctx.config_files:
                print(f"==> {f} <==\n{Path(f).read_text()}")
        return 0
    if args.show is None:
        raise errors.CondaValueError(
            "stand-in: only `conda config --show [--json]` and `--show-sources` are imitated"
        )
    d = config_dict(ctx)
    if args.show:
        unknown = [k for k in args.show if k not in d]
        if unknown:
            raise errors.CondaValueError(f"Key(s) not found: {unknown}")  # stand-in wording
        d = {k: d[k] for k in args.show}
    if ctx.json:
        print(json.dumps(d, indent=2, sort_keys=True))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(d, default_flow_style=False, sort_keys=True))
    return 0


def run_cmd(ctx: Context, args: Any) -> int:
    prefix = envs.existing_env(ctx, args.name, args.prefix)
    argv = list(args.executable_call)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise errors.ArgumentError("No command specified")
    return shell.run(ctx, prefix, argv, capture=not args.no_capture_output, cwd=args.cwd)


def shell_cmd(ctx: Context, args: Any) -> int:
    if args.action == "hook":
        sys.stdout.write(shell.hook(ctx))
    elif args.action == "activate":
        sys.stdout.write(shell.activate(ctx, args.target or "base"))
    elif args.action == "deactivate":
        sys.stdout.write(shell.deactivate(ctx))
    return 0


def tos_cmd(ctx: Context, args: Any) -> int:
    if args.tos_command in ("accept", "reject"):
        return tos.accept(
            ctx,
            args.channel,
            args.override_channels,
            args.where,
            args.tos_root,
            reject=args.tos_command == "reject",
        )
    for url in ctx.channel_base_urls():
        status = tos._state(ctx, url) if tos.has_tos(url) else None
        label = (
            "n/a" if not tos.has_tos(url) else {True: "accepted", False: "rejected", None: "pending"}[status]
        )
        print(f"{url}  {label}")
    return 0


def dispatch(ctx: Context, args: Any, cmd_line: str) -> int:
    cmd = args.command
    if cmd == "info":
        return info_cmd(ctx, args)
    if cmd == "list":
        return envs.list_cmd(ctx, args)
    if cmd == "run":
        return run_cmd(ctx, args)
    if cmd == "rename":
        return envs.rename_cmd(ctx, args, cmd_line)
    if cmd == "config":
        return config_cmd(ctx, args)
    if cmd and cmd.startswith("shell."):
        return shell_cmd(ctx, args)
    if cmd == "tos":
        return tos_cmd(ctx, args)
    if cmd == "env":
        sub = args.env_command
        if sub == "create":
            return envs.env_create(ctx, args, cmd_line)
        if sub == "update":
            return envs.env_update(ctx, args, cmd_line)
        if sub == "remove":
            return envs.env_remove(ctx, args, cmd_line)
        if sub == "export":
            return envs.env_export(ctx, args)
        if sub == "list":
            if ctx.json:
                print(dumps(ctx, env_list_json(ctx)))
                return 0
            return env_list_text(ctx)
    build_parser(ctx).print_help()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ctx = load_context()
    try:
        parser = build_parser(ctx)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        ctx.json = bool(getattr(args, "json", False))
        ctx.quiet = bool(getattr(args, "quiet", False))
        cmd_line = shlex.join([f"{ctx.root_prefix}/bin/conda", *argv])
        return dispatch(ctx, args, cmd_line)
    except errors.CondaError as exc:
        return errors.print_error(exc, ctx.json)
    except BrokenPipeError:
        return 1
    except PermissionError as exc:
        err = errors.NotWritableError(str(exc.filename or ""), os.geteuid(), os.getegid())
        return errors.print_error(err, ctx.json)
    except KeyboardInterrupt:
        sys.stderr.write("\nCondaSystemExit: Operation aborted.  Exiting.\n\n")
        return 1
    except Exception:
        sys.stderr.write("# >>>>>>>>>>>>>>>>>>>>>> ERROR REPORT <<<<<<<<<<<<<<<<<<<<<<\n\n")
        sys.stderr.write(traceback.format_exc())
        sys.stderr.write(
            f"\n`$ {' '.join(argv)}`\n\n  environment variables:\n  conda version: {ctx.conda_version}\n"
            f"  (gpulab stand-in {release().get('installer_name')})\n\n"
            "An unexpected error has occurred. Conda has prepared the above report.\n"
        )
        return 1


def entry() -> None:
    sys.exit(main())


__all__ = ["channel_url", "main"]
