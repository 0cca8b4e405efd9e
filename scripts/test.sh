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
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/src/gpulab/lab/data/containers.conf}"
.venv/bin/python -m gpulab.lab.images debian12 debian13
exec .venv/bin/pytest "$@"
