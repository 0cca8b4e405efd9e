"""Base images: debootstrap minbase + python3 + sudo, rebuilt only when the recipe changes."""

from __future__ import annotations

import dataclasses

import pytest

from gpulab.lab import images
from gpulab.lab.podman import podman
from tests.conftest import require_containers


def test_recipe_digest_follows_the_recipe() -> None:
    base = images.RECIPES["debian12"]
    assert base.digest == images.Recipe("debian12", "bookworm").digest
    assert dataclasses.replace(base, packages=("python3", "sudo", "curl")).digest != base.digest
    assert images.RECIPES["debian13"].digest != base.digest


def test_unknown_image_is_a_clear_error() -> None:
    with pytest.raises(images.ImageBuildError, match="unknown image 'centos7'"):
        images.ensure_image("centos7")


@pytest.mark.containers
@pytest.mark.parametrize("name", sorted(images.RECIPES))
def test_image_is_labelled_and_not_rebuilt(name: str) -> None:
    require_containers()
    tag = images.ensure_image(name)
    first = podman("image", "inspect", "--format", "{{.Id}}", tag).strip()
    assert images.current_digest(tag) == images.RECIPES[name].digest
    assert images.ensure_image(name) == tag
    assert podman("image", "inspect", "--format", "{{.Id}}", tag).strip() == first
    # What a fresh minimal server has, plus the first user with sudo.
    out = podman(
        "run",
        "--rm",
        "--user",
        "admin",
        tag,
        "sh",
        "-c",
        "sudo -n id -un; python3 -c 'import sys; print(sys.version_info[0])'; "
        "command -v curl || echo no-curl",
    )
    assert out.split() == ["root", "3", "no-curl"]
