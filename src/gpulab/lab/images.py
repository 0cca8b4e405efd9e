"""Base images for test hosts and lab nodes, built locally (no registry is reachable).

Each image is a Debian `debootstrap --variant=minbase` root with python3 and sudo, plus the first user
`admin` (passwordless sudo) that a server installer leaves behind. It is imported with `podman import`
and labelled with the hash of its recipe, so it is rebuilt only when the recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpulab.lab.podman import PodmanError, podman

IMAGE_REPO = "localhost/gpulab-test"
RECIPE_LABEL = "io.gpulab.recipe"
DEBIAN_MIRROR = os.environ.get("GPULAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# What runs inside the new root before it is imported (as root, via chroot).
_POST_INSTALL = """\
set -eu
useradd --create-home --uid 1000 --shell /bin/bash admin
printf 'admin ALL=(ALL) NOPASSWD:ALL\\n' > /etc/sudoers.d/90-admin
chmod 0440 /etc/sudoers.d/90-admin
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
"""


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    packages: tuple[str, ...] = ("python3", "sudo")

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.name}"

    @property
    def digest(self) -> str:
        text = json.dumps(
            {"suite": self.suite, "packages": self.packages, "post": _POST_INSTALL, "variant": "minbase"},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


RECIPES: dict[str, Recipe] = {
    "debian12": Recipe("debian12", "bookworm"),
    "debian13": Recipe("debian13", "trixie"),
}


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says which step failed and how to fix it."""


def current_digest(tag: str) -> str | None:
    """The recipe label of an existing image, or None when the image does not exist."""
    try:
        out = podman("image", "inspect", "--format", "{{json .Labels}}", tag)
    except PodmanError:
        return None
    labels = json.loads(out.strip() or "null") or {}
    value = labels.get(RECIPE_LABEL)
    return str(value) if value else None


def ensure_image(name: str, *, force: bool = False, log: bool = True) -> str:
    """Build `localhost/gpulab-test:<name>` unless an image from the same recipe exists. Returns the tag."""
    try:
        recipe = RECIPES[name]
    except KeyError as exc:
        raise ImageBuildError(f"unknown image {name!r}; known: {', '.join(sorted(RECIPES))}") from exc
    if not force and current_digest(recipe.tag) == recipe.digest:
        return recipe.tag
    for tool in ("debootstrap", "tar"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} is not installed (apt-get install -y debootstrap)")
    if os.geteuid() != 0:
        raise ImageBuildError("building base images needs root (debootstrap and chroot)")
    if log:
        print(
            f"gpulab: building {recipe.tag} (debootstrap {recipe.suite}, minbase; about a minute)", flush=True
        )
    with tempfile.TemporaryDirectory(prefix=f"gpulab-image-{name}-") as tmp:
        root = Path(tmp) / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(root),
                DEBIAN_MIRROR,
            ],
            "debootstrap",
        )
        _run(["chroot", str(root), "/bin/sh", "-c", _POST_INSTALL], "post-install")
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."], "tar")
        podman(
            "import",
            "--change",
            f"LABEL {RECIPE_LABEL}={recipe.digest}",
            "--change",
            'CMD ["sleep", "infinity"]',
            str(tarball),
            recipe.tag,
        )
    return recipe.tag


def _run(argv: list[str], step: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ImageBuildError(f"image build step {step!r} failed (rc {proc.returncode}):\n{tail}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gpulab.lab.images", description=__doc__)
    parser.add_argument("names", nargs="*", default=sorted(RECIPES), help="images to ensure")
    parser.add_argument("--force", action="store_true", help="rebuild even when the recipe is unchanged")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            print(ensure_image(name, force=args.force))
    except (ImageBuildError, PodmanError) as exc:
        print(f"gpulab: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
