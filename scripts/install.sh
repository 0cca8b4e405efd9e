#!/usr/bin/env bash
# Installs gpulab (system packages for the lab + .venv with gpulab) on a fresh Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "gpulab: installed; run .venv/bin/gpulab --help"
