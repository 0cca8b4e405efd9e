"""gpulab lab STAND-IN for the download sites: an HTTP mirror on 127.0.0.1 with faults on demand.

It serves a directory laid out by `populate()` the way the real sites publish their files:

- `/miniconda/`: Miniconda installers and `index.html`, the directory table of repo.anaconda.com
  (`Filename | Size | Last Modified | SHA256`, one `<td>` per line);
- `/miniforge/<file>.sh` and `<file>.sh.sha256` (`<hex>  ./<file>`, as Miniforge's `sha256sum` makes it);
- `/pypi/simple/<project>/`: a PEP 503 index over a wheelhouse with `#sha256=` fragments, files under
  `/pypi/packages/`.

`Mirror.inject_fault()` makes requests under a path prefix fail the way real downloads fail: a body with
bytes changed (`checksum`), a body cut short under the full Content-Length (`truncate`), `404`, or a
late answer (`slow`). Every request is logged (`Mirror.requests`). It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import re
import shutil
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import HeaderParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

FaultKind = Literal["checksum", "truncate", "404", "slow"]
FAULT_KINDS: tuple[FaultKind, ...] = ("checksum", "truncate", "404", "slow")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    seconds: float


@dataclass(frozen=True)
class RequestRecord:
    """One request the mirror answered: method, path (without query), status, fault applied (or None)."""

    method: str
    path: str
    status: int
    fault: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mirror: Mirror


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "gpulab-lab-mirror/1"

    def log_message(self, format: str, *args: object) -> None:
        """Requests go to Mirror.requests, not to stderr."""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        mirror = self.server.mirror
        path = unquote(urlsplit(self.path).path)
        fault = mirror.fault_for(path)
        fault_name = fault.kind if fault else None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "404":
            self._status_only(HTTPStatus.NOT_FOUND, path, fault_name)
            return
        target = mirror.resolve(path)
        if target is None:
            self._status_only(HTTPStatus.NOT_FOUND, path, fault_name)
            return
        if target.is_dir():
            if not path.endswith("/"):
                mirror.record(self.command, path, HTTPStatus.MOVED_PERMANENTLY, fault_name)
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", path + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            target = target / "index.html"
            if not target.is_file():
                self._status_only(HTTPStatus.NOT_FOUND, path, fault_name)
                return
        data = target.read_bytes()
        if fault is not None and fault.kind == "checksum":
            data = _corrupt(data)
        mirror.record(self.command, path, HTTPStatus.OK, fault_name)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", CONTENT_TYPES.get(target.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not body:
            return
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def _status_only(self, status: HTTPStatus, path: str, fault: str | None) -> None:
        self.server.mirror.record(self.command, path, status, fault)
        message = f"{status.value} {status.phrase}: {path}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(message)


def _corrupt(data: bytes) -> bytes:
    """Same length, different bytes (a bit flipped at the start, middle and end)."""
    if not data:
        return data
    out = bytearray(data)
    for i in {0, len(out) // 2, len(out) - 1}:
        out[i] ^= 0x01
    return bytes(out)


# What the mirror holds (`populate()`): listings, installers, their .sha256 files, wheels.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".sha256": "text/plain; charset=utf-8",
    ".sh": "application/x-sh",
}


class Mirror:
    """An HTTP server on 127.0.0.1 serving `root`, with faults on demand; usable as a context manager."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = Path(root).resolve()
        self._port = port
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._requests: list[RequestRecord] = []

    # Life cycle.
    def start(self) -> str:
        """Start serving in a background thread; returns the base URL `http://127.0.0.1:<port>`."""
        if self._server is not None:
            return self.url
        server = _Server((HOST, self._port), _Handler)
        server.mirror = self
        self._server = server
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name="gpulab-lab-mirror", daemon=True
        ).start()
        return self.url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> Mirror:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the mirror is not running; call start() first")
        return f"http://{HOST}:{self._server.server_address[1]}"

    # Faults.
    def inject_fault(self, path_prefix: str, kind: FaultKind, seconds: float = 2.0) -> None:
        """Make every request whose path starts with `path_prefix` fail as `kind` (longest prefix wins).

        `seconds` is the delay of a `slow` fault.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not path_prefix.startswith("/"):
            raise ValueError(f"path_prefix must start with '/': {path_prefix!r}")
        with self._lock:
            self._faults[path_prefix] = Fault(kind, float(seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def fault_for(self, path: str) -> Fault | None:
        with self._lock:
            matches = [p for p in self._faults if path.startswith(p)]
            return self._faults[max(matches, key=len)] if matches else None

    # Request log.
    def record(self, method: str, path: str, status: int, fault: str | None) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, path, int(status), fault))

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def resolve(self, path: str) -> Path | None:
        """The file or directory under root for a URL path, or None (missing, or outside root)."""
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        return candidate if candidate.exists() else None


# Layout.
def normalize_project(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, as the mirror publishes it."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _human_size(size: int) -> str:
    """Size as the Anaconda index prints it (e.g. `148.0M`)."""
    value = float(size)
    for unit in ("", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{int(value)}" if unit == "" else f"{value:.1f}{unit}"
        value /= 1024
    return str(size)


def _miniconda_index(directory: Path) -> str:
    rows = []
    for path in sorted(directory.glob("*.sh"), key=lambda p: p.stat().st_mtime, reverse=True):
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        name = html.escape(path.name)
        rows.append(
            "    <tr>\n"
            f'        <td><a href="{name}">{name}</a></td>\n'
            f'        <td class="s">{_human_size(stat.st_size)}</td>\n'
            f"        <td>{modified}</td>\n"
            f"        <td>{sha256_of(path)}</td>\n"
            "    </tr>\n"
        )
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n  <title>miniconda</title>\n</head>\n<body>\n"
        "<h2>miniconda (gpulab lab mirror)</h2>\n"
        "<table>\n"
        "    <tr>\n        <th>Filename</th>\n        <th>Size</th>\n        <th>Last Modified</th>\n"
        "        <th>SHA256</th>\n    </tr>\n" + "".join(rows) + "</table>\n</body>\n</html>\n"
    )


def _wheel_requires_python(wheel: Path) -> str | None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
            if not names:
                return None
            metadata = HeaderParser().parsestr(archive.read(names[0]).decode("utf-8", "replace"))
    except (OSError, zipfile.BadZipFile):
        return None
    value = metadata.get("Requires-Python")
    return str(value).strip() if value else None


def _simple_page(title: str, links: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n    <h1>{html.escape(title)}</h1>\n"
        + "".join(f"    {link}<br>\n" for link in links)
        + "  </body>\n</html>\n"
    )


def populate(root: Path, installers: list[Path], wheelhouse: Path | None = None) -> None:
    """Lay out `root` for the mirror: installers under /miniconda or /miniforge, the wheelhouse under /pypi.

    Installers are recognised by name (`Miniconda3-*.sh`, `Miniforge3-*.sh`). Calling it again adds to
    and rewrites the listings.
    """
    miniconda, miniforge = root / "miniconda", root / "miniforge"
    for directory in (miniconda, miniforge):
        directory.mkdir(parents=True, exist_ok=True)
    for installer in installers:
        if installer.suffix != ".sh" or not installer.name.startswith(("Miniconda", "Miniforge")):
            raise ValueError(f"not a Miniconda3-*.sh or Miniforge3-*.sh installer: {installer}")
        dest = (miniconda if installer.name.startswith("Miniconda") else miniforge) / installer.name
        shutil.copyfile(installer, dest)
        if dest.parent == miniforge:
            (miniforge / (installer.name + ".sha256")).write_text(f"{sha256_of(dest)}  ./{installer.name}\n")
    (miniconda / "index.html").write_text(_miniconda_index(miniconda), encoding="utf-8")

    if wheelhouse is None:
        return
    packages, simple = root / "pypi" / "packages", root / "pypi" / "simple"
    for directory in (packages, simple):
        directory.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(wheelhouse.glob("*.whl")):
        shutil.copyfile(wheel, packages / wheel.name)
    projects: dict[str, list[Path]] = {}
    for wheel in sorted(packages.glob("*.whl")):
        projects.setdefault(normalize_project(wheel.name.split("-", 1)[0]), []).append(wheel)
    for project, wheels in sorted(projects.items()):
        links = []
        for wheel in wheels:
            href = html.escape(f"../../packages/{wheel.name}#sha256={sha256_of(wheel)}")
            requires = _wheel_requires_python(wheel)
            attr = f' data-requires-python="{html.escape(requires)}"' if requires else ""
            links.append(f'<a href="{href}"{attr}>{html.escape(wheel.name)}</a>')
        (simple / project).mkdir(exist_ok=True)
        (simple / project / "index.html").write_text(
            _simple_page(f"Links for {project}", links), encoding="utf-8"
        )
    root_links = [f'<a href="{html.escape(p)}/">{html.escape(p)}</a>' for p in sorted(projects)]
    (simple / "index.html").write_text(_simple_page("Simple index", root_links), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpulab.lab.mirror",
        description="gpulab lab stand-in download mirror on 127.0.0.1 (installers, pip wheels).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve DIR until interrupted")
    serve.add_argument("--root", required=True, type=Path)
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 1
    mirror = Mirror(args.root, port=args.port)
    try:
        url = mirror.start()
    except OSError as exc:
        print(f"error: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"gpulab lab mirror serving {mirror.root} at {url}/ (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt), mirror:
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
