"""Base images: debootstrap minbase + python3 + sudo + sshd, rebuilt only when the recipe changes."""

from __future__ import annotations

import dataclasses

import pytest

from gpulab.lab import images
from gpulab.podman import podman
from tests.conftest import require_containers


def test_recipe_digest_follows_the_recipe() -> None:
    base = images.RECIPES["debian12"]
    assert base.digest == images.Recipe("debian12", "bookworm").digest
    assert dataclasses.replace(base, packages=("python3", "sudo", "curl")).digest != base.digest
    assert images.RECIPES["debian13"].digest != base.digest


def test_base_images_have_sshd_without_shared_host_keys() -> None:
    for recipe in images.RECIPES.values():
        assert "openssh-server" in recipe.packages
        assert "rm -f /etc/ssh/ssh_host_*" in recipe.extra_post  # each node makes its own host keys
        assert "PasswordAuthentication no" in recipe.extra_post
        assert recipe.post_install.startswith("set -eu\nuseradd")  # the admin user and sudo rule first
    base12 = images.RECIPES["debian12"]
    assert dataclasses.replace(base12, extra_post=base12.extra_post + "true\n").digest != base12.digest
    ee = images.EE_BASE_RECIPES["debian12-ee-base"]
    assert "openssh-client" in ee.packages and "openssh-server" not in ee.packages and not ee.extra_post


def test_unknown_image_is_a_clear_error() -> None:
    with pytest.raises(images.ImageBuildError, match="unknown image 'centos7'"):
        images.ensure_image("centos7")


@pytest.mark.containers
def test_the_command_builds_all_at_once_and_says_which_one_failed(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m gpulab.lab.images` (scripts/test.sh) builds every image asked for in parallel: one that
    cannot be built fails the command with its reason, the others are still made, in the order asked."""
    require_containers()
    with pytest.raises(images.ImageBuildError) as unknown:
        images.ensure_image("centos7")
    assert images.main(["debian12-miniforge", "centos7", "debian12"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        images.CONDA_RECIPES["debian12-miniforge"].tag,
        f"gpulab: {unknown.value}",
        images.RECIPES["debian12"].tag,
    ]


@pytest.mark.containers
@pytest.mark.parametrize("name", sorted(images.RECIPES))
def test_image_is_labelled_and_not_rebuilt(name: str) -> None:
    require_containers()
    tag = images.ensure_image(name)
    first = podman("image", "inspect", "--format", "{{.Id}}", tag).strip()
    assert images.current_digest(tag) == images.RECIPES[name].digest
    assert images.ensure_image(name) == tag
    assert podman("image", "inspect", "--format", "{{.Id}}", tag).strip() == first
    # What a fresh minimal server has, plus the first user with sudo, and sshd.
    out = _run_as_admin(
        tag,
        "sudo -n id -un; python3 -c 'import sys; print(sys.version_info[0])'; "
        "command -v curl || echo no-curl; test -x /usr/sbin/sshd && echo sshd",
    )
    assert out == ["root", "3", "no-curl", "sshd"]


def _run_as_admin(tag: str, script: str) -> list[str]:
    return podman("run", "--rm", "--user", "admin", tag, "sh", "-c", script).split()


def test_conda_image_digest_follows_the_installer_and_the_base() -> None:
    recipe = images.CONDA_RECIPES["debian12-miniforge"]
    assert recipe.digest("a" * 64) == recipe.digest("a" * 64)
    # Editing the stand-in changes the installer's bytes, and so the image's recipe.
    assert recipe.digest("b" * 64) != recipe.digest("a" * 64)
    assert images.CONDA_RECIPES["debian13-miniforge"].digest("a" * 64) != recipe.digest("a" * 64)
    assert dataclasses.replace(recipe, prefix="/opt/other").digest("a" * 64) != recipe.digest("a" * 64)


def test_conda_images_install_a_release_the_lab_serves() -> None:
    from gpulab.lab.services import STANDIN_RELEASES

    for recipe in images.CONDA_RECIPES.values():
        assert (recipe.flavor, recipe.release) in STANDIN_RELEASES, recipe
        assert recipe.base in images.RECIPES, recipe


@pytest.mark.containers
def test_conda_image_has_the_stand_in_installed_and_is_not_rebuilt() -> None:
    require_containers()
    tag = images.ensure_image("debian13-miniforge")
    first = podman("image", "inspect", "--format", "{{.Id}}", tag).strip()
    assert images.ensure_image("debian13-miniforge") == tag
    assert podman("image", "inspect", "--format", "{{.Id}}", tag).strip() == first
    out = _run_as_admin(
        tag,
        "/opt/miniconda3/bin/conda --version; stat -c %U /opt/miniconda3; ls /var/tmp | grep -c Mini || true",
    )
    # Installed by root as the roles do, and the installer file is not left in the image.
    assert out == ["conda", "25.11.1", "root", "0"]
