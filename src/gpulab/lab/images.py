"""Images for test hosts and lab nodes, built locally (no registry is reachable), never stored in git.

A base image is a Debian `debootstrap --variant=minbase` root with python3, sudo and openssh-server, plus
the first user `admin` (passwordless sudo) that a server installer leaves behind, imported with `podman
import`. Its sshd is configured for key-only logins on loopback and has no host keys (each node makes its
own when `gpulab.lab.ssh` starts it): lab nodes and Molecule hosts are reached over SSH, like real nodes.
An EE base image is Debian 12 with python3, sudo and Debian's openssh-client: the controller that
`execution-environment.yml` builds on (the ssh connection needs the client; no registry image is reachable).
A conda image is a base image with the stand-in Miniforge already installed in /opt/miniconda3, made
with `podman commit`, for the scenarios that need conda but are not about installing it (installing
takes each such scenario a container start, a copy and an install per host).
Every image is labelled with the hash of its recipe and rebuilt only when the recipe changes; a conda
image's recipe includes the bytes of the stand-in installer, so editing the stand-in rebuilds it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gpulab.lab import installer
from gpulab.lab.services import IMAGE_MINIFORGE_RELEASE
from gpulab.podman import PodmanError, podman, podman_env, require_podman

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


# What a base image adds after _POST_INSTALL for its sshd. Host keys are removed (the package's postinst
# made them at build time, so every node would share them); `gpulab.lab.ssh` runs `ssh-keygen -A` in each.
# pam_loginuid cannot write /proc/self/loginuid in a container, so it is made optional for sshd only.
_SSH_POST_INSTALL = """\
set -eu
rm -f /etc/ssh/ssh_host_*
sed -i -E 's/^session\\s+required\\s+pam_loginuid\\.so/session optional pam_loginuid.so/' /etc/pam.d/sshd
cat > /etc/ssh/sshd_config.d/50-gpulab-lab.conf <<'CONF'
# gpulab lab node: keys only, loopback only (the port is given on sshd's command line)
ListenAddress 127.0.0.1
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
CONF
install -d -m 0700 -o admin -g admin /home/admin/.ssh
"""


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    packages: tuple[str, ...] = ("python3", "sudo", "openssh-server")
    extra_post: str = _SSH_POST_INSTALL  # run after _POST_INSTALL

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.name}"

    @property
    def post_install(self) -> str:
        return _POST_INSTALL + self.extra_post

    @property
    def digest(self) -> str:
        recipe: dict[str, object] = {
            "suite": self.suite,
            "packages": self.packages,
            "post": _POST_INSTALL,
            "variant": "minbase",
        }
        if self.extra_post:
            recipe["extra_post"] = self.extra_post
        text = json.dumps(recipe, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


RECIPES: dict[str, Recipe] = {
    "debian12": Recipe("debian12", "bookworm"),
    "debian13": Recipe("debian13", "trixie"),
}

# The base of the execution environment (docs/ee.md): Debian 12's python3 (the version the EE's wheelhouse
# is downloaded for) and the ssh client ansible's ssh connection runs.
EE_BASE_RECIPES: dict[str, Recipe] = {
    "debian12-ee-base": Recipe("debian12-ee-base", "bookworm", ("python3", "sudo", "openssh-client"), "")
}


@dataclass(frozen=True)
class CondaRecipe:
    """A base image with a stand-in installer run in it as an operator would: bash INSTALLER -b -p PREFIX."""

    name: str
    base: str
    flavor: installer.Flavor
    release: str
    prefix: str = "/opt/miniconda3"

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.name}"

    def install_argv(self, installer_path: str) -> list[str]:
        return ["bash", installer_path, "-b", "-p", self.prefix]

    def digest(self, installer_sha256: str) -> str:
        text = json.dumps(
            {
                "base": RECIPES[self.base].digest,
                "installer_sha256": installer_sha256,
                "install": self.install_argv("INSTALLER"),
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# The lab's Miniforge stand-in (no Anaconda ToS) on both Debian releases.
CONDA_RECIPES: dict[str, CondaRecipe] = {
    f"{base}-miniforge": CondaRecipe(f"{base}-miniforge", base, "miniforge", IMAGE_MINIFORGE_RELEASE)
    for base in RECIPES
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


@contextmanager
def build_lock(name: str) -> Iterator[None]:
    """One build of an image at a time on this machine (parallel test workers ask for the same images)."""
    with (Path(tempfile.gettempdir()) / f"gpulab-image-{name}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # (released when the file closes)
        yield


def ensure_image(name: str, *, force: bool = False, log: bool = True) -> str:
    """Build `localhost/gpulab-test:<name>` unless an image from the same recipe exists. Returns the tag."""
    base_recipes = RECIPES | EE_BASE_RECIPES
    if name not in base_recipes and name not in CONDA_RECIPES:
        known = ", ".join(sorted([*base_recipes, *CONDA_RECIPES]))
        raise ImageBuildError(f"unknown image {name!r}; known: {known}")
    with build_lock(name):
        if name in CONDA_RECIPES:
            return _ensure_conda_image(CONDA_RECIPES[name], force=force, log=log)
        return _ensure_base_image(base_recipes[name], force=force, log=log)


def _ensure_base_image(recipe: Recipe, *, force: bool, log: bool) -> str:
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
    with tempfile.TemporaryDirectory(prefix=f"gpulab-image-{recipe.name}-") as tmp:
        root = Path(tmp) / "root"
        include = f"--include={','.join(recipe.packages)}"
        _run(
            ["debootstrap", "--variant=minbase", include, recipe.suite, str(root), DEBIAN_MIRROR],
            "debootstrap",
        )
        _run(["chroot", str(root), "/bin/sh", "-c", recipe.post_install], "post-install")
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."], "tar")
        podman("import", *_changes(recipe.digest), str(tarball), recipe.tag)
    return recipe.tag


def _ensure_conda_image(recipe: CondaRecipe, *, force: bool, log: bool) -> str:
    base_tag = ensure_image(recipe.base, log=log)
    with tempfile.TemporaryDirectory(prefix=f"gpulab-image-{recipe.name}-") as tmp:
        # The installer is built byte-for-byte reproducibly, so its digest stands for the stand-in's sources.
        built = installer.build_installer(Path(tmp), recipe.release, recipe.flavor)
        digest = recipe.digest(hashlib.sha256(built.read_bytes()).hexdigest())
        if not force and current_digest(recipe.tag) == digest:
            return recipe.tag
        if log:
            print(f"gpulab: building {recipe.tag} ({built.name} installed in {base_tag})", flush=True)
        work = f"gpulab-image-build-{recipe.name}-{os.getpid()}"
        target = f"/var/tmp/{built.name}"
        podman("run", "-d", "--name", work, "--network", "host", base_tag, "sleep", "infinity")
        try:
            podman("cp", str(built), f"{work}:{target}")
            _run(
                [require_podman(), "exec", work, *recipe.install_argv(target)],
                f"install {built.name} for {recipe.tag}",
                env=podman_env(),
            )
            podman("exec", work, "rm", "-f", target)
            podman("commit", *_changes(digest), work, recipe.tag)
        finally:
            podman("rm", "-f", "-t", "0", work, check=False)
    return recipe.tag


def _changes(digest: str) -> list[str]:
    """`podman import`/`commit` options: the recipe label, and a container's default command."""
    return ["--change", f"LABEL {RECIPE_LABEL}={digest}", "--change", 'CMD ["sleep", "infinity"]']


def _run(argv: list[str], step: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ImageBuildError(f"image build step {step!r} failed (rc {proc.returncode}):\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulab.lab.images", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        default=[*sorted(RECIPES), *sorted(CONDA_RECIPES), *sorted(EE_BASE_RECIPES)],
        help="images to ensure",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the recipe is unchanged")
    args = parser.parse_args(argv)
    # All at once: a debootstrap waits on the mirror much of its time, so three together take about twice
    # one, not three times (a fresh machine's set-up, as CI's). The conda images come after every base image
    # asked for, so a --force rebuild of a base is done before a conda image is made from it.
    with ThreadPoolExecutor(max_workers=len(args.names)) as pool:
        bases = {
            n: pool.submit(ensure_image, n, force=args.force) for n in args.names if n not in CONDA_RECIPES
        }
        wait(bases.values())
        builds = bases | {
            n: pool.submit(ensure_image, n, force=args.force) for n in args.names if n not in bases
        }
        failed = False
        for name in args.names:
            try:
                print(builds[name].result())
            except (ImageBuildError, PodmanError, installer.InstallerBuildError) as exc:
                print(f"gpulab: {exc}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
