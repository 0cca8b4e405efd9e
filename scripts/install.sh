#!/usr/bin/env bash
# Installs gpulab (system packages for the lab + .venv with gpulab and its `lab` extra, which brings the
# containers.podman connection of `gpulab lab up --connection podman`) on a fresh Debian/Ubuntu machine,
# and fetches once what the simulated lab needs (the Debian 12 image with sshd its nodes run by default,
# the lab's pip wheelhouse), so that `gpulab demo` and `gpulab lab` then run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh lab
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/src/gpulab/data/containers.conf}"
.venv/bin/python -m gpulab.lab.images debian12
.venv/bin/python -m gpulab.lab.services prefetch --cache-dir .cache/gpulab-lab >/dev/null
echo "gpulab: installed; run .venv/bin/gpulab --help"
