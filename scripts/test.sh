#!/usr/bin/env bash
# Installs everything the tests need (system packages, pip extras, base images) and runs the WHOLE suite:
# unit tests, lint, and every Molecule scenario in real podman containers. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test

# torch on CPU for the MLP check's torch backend tests (on these machines this wheel lies on local disk).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "${GPULAB_TEST_TORCH:-torch==2.13.0}" \
    || echo "gpulab: torch could not be installed; the MLP check's torch tests will say they were skipped"
fi

export PATH="$PWD/.venv/bin:$PATH"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/src/gpulab/data/containers.conf}"
# Base images, and the ones with the Miniforge stand-in pre-installed (rebuilt when the stand-in changes),
# built while the execution environment (docs/ee.md) builds: its wheels are downloaded here, on the host (no
# index is reachable from inside a build); tests/test_ee.py then finds the image up to date by its recipe label.
.venv/bin/python -m gpulab.lab.images &
images=$!
.venv/bin/python -m gpulab.ee build
wait "$images"
# Two workers: the long container tests spread over both while the unit tests fill the gaps
# (tests/conftest.py orders and groups them). GPULAB_TEST_WORKERS=0 runs everything in one process.
exec .venv/bin/pytest -n "${GPULAB_TEST_WORKERS:-2}" --dist loadscope "$@"
