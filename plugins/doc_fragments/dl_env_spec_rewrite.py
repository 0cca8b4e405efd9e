# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""The arguments of the filters dl_env_spec_rewrite and dl_env_spec_rewrite_result (the same function)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  _input:
    description: The environment.yml text.
    type: str
    required: true
  source:
    description: The name of the file in error messages.
    type: str
    required: true
  cuda_version:
    description: The host's CUDA version (C(X.Y)); V('') for a CPU build.
    type: str
    required: true
  conda:
    description: Extra conda packages.
    type: list
    elements: str
    default: []
  pip:
    description: Extra pip packages.
    type: list
    elements: str
    default: []
"""
