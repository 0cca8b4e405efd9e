"""The gpulab lab: offline STAND-INS for what our machines and CI do not have.

Everything in this package imitates something real (a GPU's nvidia-smi, the Miniconda installer and
conda, a download mirror, GPU nodes as containers). The test suite and the user-facing `gpulab lab`
share this one implementation. Nothing in roles/ or playbooks/ knows it exists.
"""
