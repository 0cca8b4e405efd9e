"""The offline mirror (gpulab lab stand-in): layout in the real sites' forms, real HTTP, faults on demand."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpulab.lab.mirror import Mirror, normalize_project, populate

TINY = "gpulab_lab_tiny"
TINY_VERSION = "1.0"


def build_tiny_wheel(dest: Path) -> Path:
    """A real, installable one-module wheel (PEP 427), built without any network or build backend."""
    dist_info = f"{TINY}-{TINY_VERSION}.dist-info"
    files = {
        f"{TINY}.py": b"VALUE = 42\n",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: gpulab-lab-tiny\nVersion: {TINY_VERSION}\nRequires-Python: >=3.8\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: gpulab-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / f"{TINY}-{TINY_VERSION}-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def fake_installer(directory: Path, name: str, size: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(
        b"#!/bin/sh\n# not a real installer: mirror test data\n" + bytes(range(256)) * (size // 256)
    )
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    installers = [
        fake_installer(src, "Miniconda3-py313_25.11.1-1-Linux-x86_64.sh", 300_000),
        fake_installer(src, "Miniconda3-py312_24.9.2-0-Linux-x86_64.sh", 200_000),
        fake_installer(src, "Miniforge3-25.11.0-1-Linux-x86_64.sh", 100_000),
    ]
    wheel = build_tiny_wheel(src / "wheelhouse")
    root = tmp_path_factory.mktemp("mirror")
    populate(root, installers, src / "wheelhouse")
    return {"root": root, "wheel": wheel, **{p.name: p for p in installers}}


@pytest.fixture()
def mirror(site: dict[str, Path]) -> Iterator[Mirror]:
    with Mirror(site["root"]) as running:
        yield running


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# Layout.


def test_miniconda_index_lists_each_installer_with_its_real_sha256(site: dict[str, Path]) -> None:
    index = (site["root"] / "miniconda" / "index.html").read_text()
    assert re.search(r"<th>Filename</th>\s*<th>Size</th>\s*<th>Last Modified</th>\s*<th>SHA256</th>", index)
    lines = index.splitlines()
    for name in ("Miniconda3-py313_25.11.1-1-Linux-x86_64.sh", "Miniconda3-py312_24.9.2-0-Linux-x86_64.sh"):
        # The community scrapers' reading: `grep -A3 FILE | sed -n 4p` is the SHA256 cell.
        at = next(i for i, line in enumerate(lines) if name in line)
        cell = re.fullmatch(r"\s*<td>([0-9a-f]{64})</td>", lines[at + 3])
        assert cell, lines[at : at + 4]
        assert cell.group(1) == sha256(site[name].read_bytes())
        assert re.fullmatch(r'\s*<td class="s">[0-9.]+[KMG]?</td>', lines[at + 1])
        assert re.fullmatch(r"\s*<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", lines[at + 2])
        assert (site["root"] / "miniconda" / name).read_bytes() == site[name].read_bytes()
    assert "Miniforge3" not in index


def test_miniforge_sha256_file_is_sha256sum_output(site: dict[str, Path]) -> None:
    name = "Miniforge3-25.11.0-1-Linux-x86_64.sh"
    text = (site["root"] / "miniforge" / f"{name}.sha256").read_text()
    assert text == f"{sha256(site[name].read_bytes())}  ./{name}\n"
    assert (site["root"] / "miniforge" / name).read_bytes() == site[name].read_bytes()


def test_pypi_simple_index_is_pep503(site: dict[str, Path]) -> None:
    root_index = (site["root"] / "pypi" / "simple" / "index.html").read_text()
    assert '<a href="gpulab-lab-tiny/">gpulab-lab-tiny</a>' in root_index
    page = (site["root"] / "pypi" / "simple" / "gpulab-lab-tiny" / "index.html").read_text()
    wheel = site["wheel"]
    digest = sha256(wheel.read_bytes())
    assert f'href="../../packages/{wheel.name}#sha256={digest}"' in page
    assert 'data-requires-python="&gt;=3.8"' in page
    assert (site["root"] / "pypi" / "packages" / wheel.name).read_bytes() == wheel.read_bytes()


def test_normalize_project() -> None:
    assert normalize_project("Foo.Bar__baz-Qux") == "foo-bar-baz-qux"
    assert normalize_project("gpulab_lab_tiny") == "gpulab-lab-tiny"


def test_populate_rejects_an_unknown_installer(tmp_path: Path) -> None:
    other = fake_installer(tmp_path / "src", "Anaconda3-2024.10-1-Linux-x86_64.sh", 10)
    with pytest.raises(ValueError, match="not a Miniconda3"):
        populate(tmp_path / "root", [other], None)


# Serving.


def test_serves_files_on_loopback_with_get_and_head(mirror: Mirror, site: dict[str, Path]) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", mirror.url)
    name = "Miniconda3-py313_25.11.1-1-Linux-x86_64.sh"
    status, headers, body = get(f"{mirror.url}/miniconda/{name}")
    assert status == 200 and body == site[name].read_bytes()
    assert headers["Content-Length"] == str(len(body))
    status, headers, body = get(f"{mirror.url}/miniconda/{name}", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(site[name].stat().st_size)
    status, headers, body = get(f"{mirror.url}/miniconda/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"SHA256" in body


def test_missing_files_and_escapes_are_404(mirror: Mirror) -> None:
    assert get(f"{mirror.url}/miniconda/Miniconda3-nope.sh")[0] == 404
    connection = http.client.HTTPConnection("127.0.0.1", int(mirror.url.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", "/../../../../etc/passwd")
    assert connection.getresponse().status == 404
    connection.close()


def test_request_log(mirror: Mirror) -> None:
    get(f"{mirror.url}/miniforge/")
    get(f"{mirror.url}/missing", method="HEAD")
    assert [(r.method, r.path, r.status) for r in mirror.requests] == [
        ("GET", "/miniforge/", 404),
        ("HEAD", "/missing", 404),
    ]
    mirror.clear_requests()
    assert mirror.requests == []


def test_stop_releases_the_port(site: dict[str, Path]) -> None:
    running = Mirror(site["root"])
    url = running.start()
    assert get(f"{url}/miniconda/")[0] == 200
    running.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/miniconda/", timeout=5)
    with pytest.raises(RuntimeError, match="not running"):
        _ = running.url


# Faults.


def test_fault_checksum_changes_bytes_not_length(mirror: Mirror, site: dict[str, Path]) -> None:
    name = "Miniforge3-25.11.0-1-Linux-x86_64.sh"
    good = site[name].read_bytes()
    published = get(f"{mirror.url}/miniforge/{name}.sha256")[2].decode().split()[0]
    mirror.inject_fault("/miniforge/Miniforge3-", "checksum")
    status, headers, body = get(f"{mirror.url}/miniforge/{name}")
    assert status == 200 and len(body) == len(good) and headers["Content-Length"] == str(len(good))
    assert sha256(body) != published == sha256(good)
    assert mirror.requests[-1].fault == "checksum"
    mirror.clear_faults()
    assert get(f"{mirror.url}/miniforge/{name}")[2] == good


def test_fault_truncate_closes_before_content_length(mirror: Mirror, site: dict[str, Path]) -> None:
    name = "Miniconda3-py312_24.9.2-0-Linux-x86_64.sh"
    full = site[name].stat().st_size
    mirror.inject_fault("/miniconda/", "truncate")
    connection = http.client.HTTPConnection("127.0.0.1", int(mirror.url.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", f"/miniconda/{name}")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(full)
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert 0 < len(caught.value.partial) < full
    connection.close()


def test_fault_404_and_longest_prefix_wins(mirror: Mirror) -> None:
    mirror.inject_fault("/miniconda/", "404")
    mirror.inject_fault("/miniconda/index", "slow", seconds=0)
    assert get(f"{mirror.url}/miniconda/Miniconda3-py312_24.9.2-0-Linux-x86_64.sh")[0] == 404
    assert get(f"{mirror.url}/miniconda/index.html")[0] == 200
    assert get(f"{mirror.url}/miniforge/Miniforge3-25.11.0-1-Linux-x86_64.sh")[0] == 200


def test_fault_slow_delays_only_its_prefix(mirror: Mirror) -> None:
    mirror.inject_fault("/miniforge/", "slow", seconds=1.0)
    start = time.monotonic()
    assert get(f"{mirror.url}/miniforge/Miniforge3-25.11.0-1-Linux-x86_64.sh.sha256")[0] == 200
    assert time.monotonic() - start >= 1.0
    start = time.monotonic()
    assert get(f"{mirror.url}/miniconda/index.html")[0] == 200
    assert time.monotonic() - start < 0.9


def test_inject_fault_rejects_bad_input(mirror: Mirror) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        mirror.inject_fault("/x", "boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must start with '/'"):
        mirror.inject_fault("x", "404")


# pip through the mirror.


def pip_install(url: str, target: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIP_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    env.update(PIP_CONFIG_FILE=os.devnull, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-deps",
            "--index-url",
            f"{url}/pypi/simple",
            "--target",
            str(target),
            "gpulab-lab-tiny",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_pip_installs_a_wheel_through_the_simple_index(mirror: Mirror, tmp_path: Path) -> None:
    result = pip_install(mirror.url, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    module = (tmp_path / "site" / f"{TINY}.py").read_text()
    assert module == "VALUE = 42\n"
    paths = [r.path for r in mirror.requests]
    assert "/pypi/simple/gpulab-lab-tiny/" in paths
    assert f"/pypi/packages/{TINY}-{TINY_VERSION}-py3-none-any.whl" in paths


def test_pip_refuses_a_corrupted_wheel(mirror: Mirror, tmp_path: Path) -> None:
    mirror.inject_fault("/pypi/packages/", "checksum")
    result = pip_install(mirror.url, tmp_path / "site")
    assert result.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stdout + result.stderr
    assert not (tmp_path / "site" / f"{TINY}.py").exists()


# CLI.


def test_cli_serve(site: dict[str, Path]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gpulab.lab.mirror", "serve", "--root", str(site["root"])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert url, line
        assert get(f"{url.group(1)}/miniconda/")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
