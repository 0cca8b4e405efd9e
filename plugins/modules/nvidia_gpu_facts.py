#!/usr/bin/python
# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Ansible module: read the NVIDIA driver and GPUs of a host with nvidia-smi (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Report the NVIDIA driver, the newest CUDA it supports and the GPUs of a host
description:
  - Reads nvidia-smi's machine-readable interfaces first. The GPUs (index, name, UUID, PCI bus id,
    framebuffer memory, MIG mode, compute capability) and the driver version come from
    C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits); the newest CUDA the driver supports
    (which no C(--query-gpu) field gives) and the number of MIG devices from C(nvidia-smi -q -x).
  - The C(-q) text is read only for what neither of them gave (e.g. the CUDA version when C(-q -x) fails),
    and it is read tolerantly; lines, sections, units and indentation it does not know are ignored,
    and C(WARNING ...) lines nvidia-smi prints are returned in C(nvidia_smi_warnings).
  - A C(--query-gpu) field the driver does not know (C(compute_cap) before R510) is dropped and the query
    retried; the compute capability then comes from a GPU name to compute capability table (source
    U(https://developer.nvidia.com/cuda-gpus) as tabulated in huggingface/huggingface.js#2010);
    C(compute_capability_source) says which was used.
  - Handles the states a real node can be in. No C(nvidia-smi) anywhere is C(absent) (not a failure).
  - "The NVML message C(Driver/library version mismatch) (a driver upgraded without reboot) is
    C(reboot_required): the version of the loaded kernel module (from O(proc_version_path)) and of the new
    user-space library are reported and the module succeeds, so the caller decides."
  - Fails, saying what happened and what usually causes it, when the driver does not answer
    (C(driver_broken)), on C(No devices were found) (C(no_devices)), on a GPU that fell off the bus
    (C(gpu_lost)), when nvidia-smi does not answer within O(timeout) (C(timeout)), when no interface gave a
    field the role needs (C(missing_field), naming the field and the command) and when every interface
    failed with output gpulab does not know (C(unknown_error)).
  - Makes no change; supports check mode.
options:
  nvidia_smi_path:
    description:
      - Path of C(nvidia-smi). Empty (the default) searches C(PATH), then C(/usr/bin),
        C(/usr/local/nvidia/bin),
        C(/usr/local/bin), C(/usr/lib/wsl/lib), C(/opt/nvidia/bin).
      - A path that is given but does not exist is an error (a typo should not look like a host without GPU).
    type: path
    default: ""
  proc_version_path:
    description:
      - File that describes the loaded kernel module (C(/proc/driver/nvidia/version) on a real host).
    type: path
    default: /proc/driver/nvidia/version
  timeout:
    description:
      - Seconds one nvidia-smi call may take (a hung GPU can block it). Then nvidia-smi and every process it
        started are killed and the module fails with state C(timeout), naming the command that hung.
    type: int
    default: 60
author: gpulab contributors
"""

EXAMPLES = r"""
- name: Read GPU facts
  nvidia_gpu_facts:

- name: Read GPU facts with an explicit nvidia-smi
  nvidia_gpu_facts:
    nvidia_smi_path: /usr/local/nvidia/bin/nvidia-smi
"""

RETURN = r"""
nvidia_smi_state:
  description: The same value as C(ansible_facts.nvidia_smi_state); on failure one of the failure states.
  returned: always
  type: str
ansible_facts:
  description: Facts about the driver and GPUs.
  returned: success
  type: dict
  contains:
    nvidia_gpu_present:
      description: Whether a working NVIDIA driver with at least one GPU was found.
      type: bool
    nvidia_smi_state:
      description:
        - ok, absent, reboot_required.
        - Failures carry driver_broken, no_devices, gpu_lost, timeout, missing_field or unknown_error in
          C(nvidia_smi_state) (absent when an explicit O(nvidia_smi_path) does not exist).
      type: str
    nvidia_smi_path:
      description: The nvidia-smi used, or null.
      type: str
    nvidia_driver_version:
      description: Driver version, e.g. 580.95.05 (the KMD Version from R610 on); null when absent.
      type: str
    nvidia_cuda_driver_version:
      description:
        - Newest CUDA the driver supports as nvidia-smi prints it (CUDA UMD Version from R610 on).
        - null when nvidia-smi does not show it (e.g. C(Not Found) on a vGPU host).
      type: str
    nvidia_kernel_module_version:
      description: Version of the loaded kernel module from proc_version_path, or null.
      type: str
    nvidia_library_version:
      description: In state reboot_required, the NVML (user-space) library version when nvidia-smi prints it.
      type: str
    nvidia_smi_sources:
      description: Which nvidia-smi interface gave each part (C(query-gpu), C(xml) or C(text)).
      type: dict
      sample: {gpus: query-gpu, driver: query-gpu, cuda: xml}
    nvidia_smi_warnings:
      description:
        - What nvidia-smi warned about (e.g. C(WARNING - infoROM is corrupted ...)) and what the module
          ignored or could not read; also returned as module warnings.
      type: list
      elements: str
    nvidia_gpus:
      description:
        - One dict per GPU, in nvidia-smi's index order.
        - A value no interface gave is null (e.g. C(mig_devices) when neither C(-q -x) nor C(-q) answered).
      type: list
      elements: dict
      sample:
        - index: 0
          name: NVIDIA H100 80GB HBM3
          uuid: GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1
          pci_bus_id: "00000000:18:00.0"
          memory_total_mib: 81559
          compute_capability: "9.0"
          compute_capability_source: nvidia-smi
          mig_mode: disabled
          mig_devices: 0
"""


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    from ansible_collections.gpulab.gpulab.plugins.module_utils.nvidia_smi import (
        OPTIONS,
        NvidiaSmiError,
        read_host,
    )

    module = AnsibleModule(argument_spec=OPTIONS, supports_check_mode=True)
    params = module.params
    try:
        facts = read_host(params["nvidia_smi_path"], params["proc_version_path"], params["timeout"])
    except NvidiaSmiError as exc:
        module.fail_json(msg=exc.msg, nvidia_smi_state=exc.state)
    except Exception as exc:  # never a traceback for the user
        module.fail_json(
            msg=f"nvidia_gpu_facts failed unexpectedly: {type(exc).__name__}: {exc}",
            nvidia_smi_state="unknown_error",
        )
    for warning in facts["nvidia_smi_warnings"]:
        module.warn(f"nvidia-smi: {warning}")
    module.exit_json(changed=False, ansible_facts=facts, nvidia_smi_state=facts["nvidia_smi_state"])


if __name__ == "__main__":
    main()
