"""Build the gpulab execution environment offline: ``python -m gpulab.ee build [--tag TAG]`` (docs/ee.md).

``execution-environment.yml`` (ansible-builder v3, at the collection root) names two staged inputs under
``.cache/ee/``: the gpulab.gpulab collection tarball and a pip wheelhouse for the base image's Python. This
module builds the tarball (``ansible-galaxy collection build``), downloads the wheels on the host
(``pip download``: PyPI is reachable from the host, not from inside a build), copies the definition and
both inputs into a temporary directory and runs ``ansible-builder build`` with podman there.

The image is labelled with the hash of its recipe (definition, collection files, wheel names, base
image id) and not rebuilt while the label matches, as the lab images are (:mod:`gpulab.lab.images`).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gpulab import collection
from gpulab.errors import ExitCode, GpulabError
from gpulab.lab import images, wheelhouse
from gpulab.podman import PodmanError, podman, podman_env, require_podman

DEFINITION = "execution-environment.yml"
DEFAULT_TAG = "localhost/gpulab-ee:latest"
STAGE = Path(".cache") / "ee"  # the definition's additional_build_files, relative to it
TARBALL = "gpulab-gpulab.tar.gz"
# What ansible-builder's generated Containerfile installs with pip besides the definition's packages:
# pip itself (the definition bootstraps it from its wheel) and the builder stage's bindep, pyyaml, packaging.
BUILDER_PACKAGES = ("pip", "bindep", "pyyaml", "packaging")


class EEBuildError(GpulabError):
    """The execution environment could not be built; the message says which step and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.ERROR)


def definition_path(project: Path | None = None) -> Path:
    path = (project or collection.root()) / DEFINITION
    if not path.is_file():
        raise EEBuildError(f"{path} is missing (build the execution environment from a gpulab checkout)")
    return path


def load_definition(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("version") != 3:
        raise EEBuildError(f"{path}: not an ansible-builder version 3 definition")
    return data


def pip_requirements(definition: dict[str, Any]) -> list[str]:
    """Every pip requirement the build installs: the definition's and ansible-builder's own."""
    deps = definition.get("dependencies") or {}
    specs = [
        str(deps[key]["package_pip"])
        for key in ("ansible_core", "ansible_runner")
        if isinstance(deps.get(key), dict) and deps[key].get("package_pip")
    ]
    python = deps.get("python") or []
    specs += [str(line) for line in python] if isinstance(python, list) else []
    init = ((definition.get("options") or {}).get("container_init") or {}).get("package_pip")
    specs.append(str(init or "dumb-init==1.2.5"))  # ansible-builder's default container_init
    return [*specs, *BUILDER_PACKAGES]


def base_python(base_image: str) -> str:
    """The base image's python3 version as X.Y (the wheels must match it)."""
    try:
        out = podman(
            "run", "--rm", "--network", "none", base_image, "/usr/bin/python3", "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        )  # fmt: skip
    except PodmanError as exc:
        raise EEBuildError(f"cannot run python3 in the base image {base_image}: {exc}") from exc
    return out.strip()


def download_wheels(dest: Path, requirements: list[str], python: str) -> list[str]:
    """``pip download`` binary wheels for ``python`` into ``dest`` unless the same request was satisfied
    there before; returns the wheel file names."""
    stamp = dest / ".request"
    request = "\n".join([python, *requirements])
    if not (stamp.is_file() and stamp.read_text(encoding="utf-8") == request):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        try:
            wheelhouse.download(dest, requirements, python)
        except wheelhouse.WheelhouseError as exc:
            raise EEBuildError(f"the execution environment's wheels: {exc}") from None
        stamp.write_text(request, encoding="utf-8")
    return sorted(p.name for p in dest.glob("*.whl"))


def build_tarball(project: Path, dest: Path) -> Path:
    """``ansible-galaxy collection build`` of ``project`` as ``dest/gpulab-gpulab.tar.gz``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpulab-ee-galaxy-") as tmp:
        galaxy = Path(sys.executable).with_name("ansible-galaxy")
        argv = [str(galaxy) if galaxy.exists() else "ansible-galaxy", "collection", "build"]
        proc = subprocess.run(
            [*argv, "--output-path", tmp, str(project)], capture_output=True, text=True, check=False
        )
        built = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or len(built) != 1:
            raise EEBuildError(
                f"ansible-galaxy collection build failed: {(proc.stderr or proc.stdout).strip()}"
            )
        target = dest / TARBALL
        shutil.move(built[0], target)
    return target


def tarball_digest(path: Path) -> str:
    """A hash of the tarball's member names and contents (the archive itself carries build times)."""
    digest = hashlib.sha256()
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            digest.update(member.name.encode())
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def image_id(tag: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", tag).strip()


def recipe_digest(definition_text: str, tarball: Path, wheels: list[str], base_id: str) -> str:
    text = "\n".join([definition_text, tarball_digest(tarball), *wheels, base_id])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _builder() -> str:
    found = Path(sys.executable).with_name("ansible-builder")
    if found.exists():
        return str(found)
    which = shutil.which("ansible-builder")
    if which is None:
        raise EEBuildError("ansible-builder is not installed (pip install ansible-builder, or gpulab[test])")
    return which


def build(
    tag: str = DEFAULT_TAG, *, project: Path | None = None, force: bool = False, log: bool = True
) -> str:
    """Build the execution environment as ``tag`` unless an image of its recipe exists; return the tag."""
    project = project or collection.root()
    # One build of a tag at a time on this machine (test workers, checkouts sharing podman's storage).
    with images.build_lock("ee-" + re.sub(r"[^A-Za-z0-9_.-]", "_", tag)):
        return _build(tag, project, force=force, log=log)


def _build(tag: str, project: Path, *, force: bool, log: bool) -> str:
    path = definition_path(project)
    definition = load_definition(path)
    require_podman()
    base = str(definition["images"]["base_image"]["name"])
    if base.startswith(f"{images.IMAGE_REPO}:"):
        images.ensure_image(base.split(":", 1)[1], log=log)
    cache = collection.work_dir(project) / STAGE
    wheels = download_wheels(cache / "wheels", pip_requirements(definition), base_python(base))
    tarball = build_tarball(project, cache / "collections")
    text = path.read_text(encoding="utf-8")
    digest = recipe_digest(text, tarball, wheels, image_id(base))
    if not force and images.current_digest(tag) == digest:
        return tag
    if log:
        print(f"gpulab: building {tag} with ansible-builder (from {base}, offline)", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpulab-ee-build-") as tmp:
        work = Path(tmp)
        shutil.copy2(path, work / DEFINITION)
        shutil.copytree(cache, work / STAGE)
        argv = [
            _builder(), "build", "--file", str(work / DEFINITION), "--context", str(work / "context"),
            "--tag", tag, "--container-runtime", "podman",
            "--extra-build-cli-args", f"--label {images.RECIPE_LABEL}={digest}",
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=podman_env())
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise EEBuildError(f"ansible-builder build failed (rc {proc.returncode}):\n{tail}")
    if log:
        print(f"gpulab: built {tag} in {time.monotonic() - started:.0f} s", flush=True)
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulab.ee", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build the execution environment image (offline, podman)")
    cmd.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    cmd.add_argument("--force", action="store_true", help="rebuild even when the recipe is unchanged")
    args = parser.parse_args(argv)
    try:
        print(build(args.tag, force=args.force))
    except (GpulabError, PodmanError, images.ImageBuildError) as exc:
        print(f"gpulab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
