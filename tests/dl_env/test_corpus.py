"""Real environment.yml files from public repositories (tests/corpus/environment-yml, sources in its
SOURCES.md) rendered as bring-your-own specs for a GPU host and a CPU host: no entry is lost, and every
entry that differs is listed in the pin changes.

The in-process test runs the role's filter code (the same function the `dl_env_spec_rewrite_result`
filter wraps); the end-to-end test renders a few of the files with the role's render tasks through
`ansible-playbook` and reads the pin changes back from the run's set_stats data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._load import REPO, dl_env_filters, local_render_vars, run_role_entry

F = dl_env_filters()
CORPUS = REPO / "tests" / "corpus" / "environment-yml"
FILES = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".yml", ".yaml"))
HOSTS = {"gpu": "12.4", "cpu": ""}


def conda_deps(data: dict[str, Any]) -> list[str]:
    return [d for d in data["dependencies"] if isinstance(d, str)]


def pip_deps(data: dict[str, Any]) -> list[str]:
    return [p for d in data["dependencies"] if isinstance(d, dict) for p in d["pip"]]


def test_the_corpus_is_big_enough_and_has_its_sources() -> None:
    assert len(FILES) >= 40
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for name in FILES:
        assert f"`{name}`" in sources, name


@pytest.mark.parametrize("host", sorted(HOSTS))
@pytest.mark.parametrize("name", FILES)
def test_no_entry_is_lost_or_changed_without_a_record(name: str, host: str) -> None:
    text = (CORPUS / name).read_text(encoding="utf-8")
    before = yaml.safe_load(text)
    result = F.rewrite_result(text, name, HOSTS[host])
    after = F.check_spec(result["text"], "rendered " + name)
    assert after == result["spec"]
    changes = result["pin_changes"]
    changed_from = {c["from"] for c in changes}
    changed_to = {c["to"] for c in changes}
    for c in changes:
        assert set(c) == {"name", "from", "to"} and c["from"] != c["to"], c
    for key in ("name", "channels", "variables", "prefix"):
        assert after.get(key) == before.get(key), key
    for kind, listed in (("conda", conda_deps), ("pip", pip_deps)):
        out = listed(after)
        for entry in listed(before):
            # every input entry is in the output as written, or its change is listed
            assert entry.strip() in out or entry in changed_from, f"{kind} entry {entry!r} was lost"
        for entry in out:
            # nothing appears that was neither in the input nor listed as a change
            assert entry in listed(before) or entry in changed_to, f"{kind} entry {entry!r} came from nowhere"
    if not HOSTS[host]:
        assert not any(
            "cuda" in d.lower() and F.package_key(d) in F.CUDA_PIN_NAMES for d in conda_deps(after)
        )
    # rendering the result again changes nothing more
    again = F.rewrite_result(result["text"], name, HOSTS[host])
    assert again["spec"] == result["spec"]
    assert [c for c in again["pin_changes"] if c["name"] != "pip"] == []


def test_the_corpus_exercises_the_hard_cases() -> None:
    """The shapes issue 12 names are really in the corpus (so the test above proves something)."""
    texts = {n: (CORPUS / n).read_text(encoding="utf-8") for n in FILES}
    every = "\n".join(texts.values())
    assert re.search(r"- -e git\+https://\S+#egg=", every)  # editable git URLs
    assert re.search(r"- git\+(https|git)://(?!\S+#egg=)", every)  # git URLs without a name
    assert "submodules/" in every and "- -e ." in every and "- -r " in every  # local paths, -r files
    assert "--extra-index-url" in every and "[jupyter]" in every  # option lines, extras
    assert re.search(r"- \w[\w-]*::", every)  # channel-prefixed specs
    assert "pytorch-cuda=" in every and "cudatoolkit=" in every and "cuda11.8" in every  # CUDA pins, builds
    assert re.search(r"^prefix: ", every, re.M)  # exported files
    assert re.search(r">=\S+, <", every)  # "python>=3.8, < 3.10"


# -- end to end through Ansible: a few files with the role's render tasks --------------------------
E2E = [
    "graphdeco-inria__gaussian-splatting__environment.yml",
    "facebookresearch__dinov2__conda.yaml",
    "CompVis__stable-diffusion__environment.yaml",
]


@pytest.mark.slow
def test_render_playbook_keeps_every_entry_and_reports_pin_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hosts: dict[str, Any] = {}
    for i, name in enumerate(E2E):
        for host, cuda in HOSTS.items():
            hosts[f"corpus{i}-{host}"] = {
                "cuda_check_cuda_version": cuda,
                "cuda_check_gpu_present": bool(cuda),
                "cuda_check_driver_version": "550.54.15" if cuda else "",
                "cuda_check_gpus": [{"name": "NVIDIA A100-SXM4-80GB"}] if cuda else [],
                "dl_env_base_file": str(CORPUS / name),
            }
    inventory = {
        "all": {
            "vars": local_render_vars(out),
            "hosts": hosts,
        }
    }
    proc = run_role_entry(
        tmp_path,
        inventory,
        "render",
        ANSIBLE_FORKS="6",
        ANSIBLE_SHOW_CUSTOM_STATS="true",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # the default callback prints the run-level custom stats as one "RUN: {json}" line
    run_line = re.search(r"^\s*RUN: (\{.*\})\s*$", proc.stdout.split("CUSTOM STATS:", 1)[1], re.M)
    assert run_line, proc.stdout[-3000:]
    stats = json.loads(run_line.group(1))
    gpulab = stats["gpulab"]
    for i, name in enumerate(E2E):
        for host, cuda in HOSTS.items():
            inventory_host = f"corpus{i}-{host}"
            expected = F.rewrite_result((CORPUS / name).read_text(encoding="utf-8"), name, cuda)
            rendered = F.check_spec(
                (out / inventory_host / "environment.yml").read_text(encoding="utf-8"), "r"
            )
            assert rendered == expected["spec"], inventory_host
            assert gpulab[inventory_host]["pin_changes"] == expected["pin_changes"], inventory_host
            assert gpulab[inventory_host]["env_action"] == "rendered"
    # the local pip paths of the gaussian-splatting file are named with where they must exist
    assert "submodules/diff-gaussian-rasterization, submodules/simple-knn" in proc.stdout
    assert "/etc/gpulab/envs/gpulab" in proc.stdout
