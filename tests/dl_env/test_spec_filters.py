"""BYO rewriting, list layering, schema checks and failure parsing of the dl_env filters."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ._load import FIXTURES, dl_env_filters

F = dl_env_filters()


def rewrite(fixture: str, cuda: str) -> dict[str, Any]:
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    out = F._filter_rewrite(text, fixture, cuda)
    return F.check_spec(out, "rewritten " + fixture)


def deps(data: dict[str, Any]) -> list[str]:
    return [d for d in data["dependencies"] if isinstance(d, str)]


def pip(data: dict[str, Any]) -> list[str]:
    return [p for d in data["dependencies"] if isinstance(d, dict) for p in d["pip"]]


def original(fixture: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / fixture).read_text(encoding="utf-8"))


# -- bring-your-own rewriting, one fixture style at a time ------------------------------------------
def test_pytorch_channel_gpu_host_gets_its_cuda_line() -> None:
    data = rewrite("pytorch-channel-cu118.yml", "12.9")
    assert "pytorch-cuda=12.9" in deps(data)
    assert not any("11.8" in d for d in deps(data))
    # everything else is kept, in order, with the channels and the nested pip list
    assert deps(data) == [
        "python=3.10",
        "pytorch==2.1.0",
        "torchvision==0.16.0",
        "torchaudio==2.1.0",
        "pytorch-cuda=12.9",
        "numpy<2",
        "pip",
    ]
    assert data["channels"] == ["pytorch", "nvidia", "conda-forge"]
    assert pip(data) == original("pytorch-channel-cu118.yml")["dependencies"][-1]["pip"]
    assert data["name"] == "detectron"


def test_pytorch_channel_cpu_host_gets_cpuonly() -> None:
    data = rewrite("pytorch-channel-cu118.yml", "")
    assert "cpuonly" in deps(data)
    assert not any("cuda" in d for d in deps(data))


def test_cudatoolkit_and_prefix_style() -> None:
    gpu = rewrite("cudatoolkit-legacy.yml", "12.9")
    assert "cudatoolkit=12.9" in deps(gpu)
    assert gpu["prefix"] == "/home/alice/miniconda3/envs/legacy-seg"  # kept: conda ignores it (facts §3)
    cpu = rewrite("cudatoolkit-legacy.yml", "")
    assert [d for d in deps(cpu) if d.startswith("cudatoolkit")] == []
    assert "cpuonly" not in deps(cpu)  # cudatoolkit alone does not select the pytorch channel's CPU build
    assert deps(cpu) == ["python=3.9", "pytorch=1.12.1", "torchvision=0.13.1", "scikit-image"]


def test_conda_forge_build_strings_follow_the_host() -> None:
    gpu = rewrite("conda-forge-build-strings.yml", "13.0")
    assert deps(gpu) == [
        "python=3.11",
        "conda-forge::pytorch=2.5.1=*cuda130*",  # an exact build cannot exist for another CUDA line
        "libtorch=2.5.1=*cuda130*",
        "torchvision=*=cuda*",  # any CUDA build: the cuda-version pin decides the line
        "cuda-version=13.0",
        "conda-forge::lightning>=2.2",
    ]
    assert gpu["variables"] == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "OMP_NUM_THREADS": "8"}
    cpu = rewrite("conda-forge-build-strings.yml", "")
    assert deps(cpu) == [
        "python=3.11",
        "conda-forge::pytorch=2.5.1=*cpu*",
        "libtorch=2.5.1=*cpu*",
        "torchvision=*=*cpu*",
        "conda-forge::lightning>=2.2",
    ]


def test_pip_cuda_index_and_local_versions() -> None:
    gpu = rewrite("pip-cuda-index.yml", "12.6")
    assert pip(gpu) == [
        "--index-url https://download.pytorch.org/whl/cu126",
        "--extra-index-url https://pypi.org/simple",
        "torch==2.1.0+cu126",
        "torchvision==0.16.0+cu126",
        "transformers>=4.40",
    ]
    cpu = rewrite("pip-cuda-index.yml", "")
    assert pip(cpu)[0] == "--index-url https://download.pytorch.org/whl/cpu"
    assert "torch==2.1.0+cpu" in pip(cpu)


def test_exported_file_with_exact_builds() -> None:
    gpu = rewrite("exported-full.yml", "12.9")
    d = deps(gpu)
    assert "cuda-version=12.9" in d
    assert "pytorch=2.5.1=*cuda129*" in d and "libtorch=2.5.1=*cuda129*" in d
    assert "pytorch-gpu=2.5.1=*cuda129*" in d
    # packages that do not pin CUDA keep their exact builds
    assert "numpy=2.1.3=py312h58c1407_0" in d and "_openmp_mutex=4.5=2_gnu" in d
    assert gpu["prefix"] == "/opt/conda/envs/exported"
    cpu = rewrite("exported-full.yml", "")
    d = deps(cpu)
    assert not any(x.startswith("cuda-version") for x in d)
    assert "pytorch-cpu=2.5.1=*cpu*" in d and "pytorch=2.5.1=*cpu*" in d
    assert pip(cpu) == ["tensorboard==2.18.0"]


def test_space_separated_and_bracket_specs() -> None:
    gpu = rewrite("space-separated-and-brackets.yml", "12.9")
    assert deps(gpu) == [
        "python 3.11.*",
        "pytorch 2.4.* cuda129*",
        "libtorch[build=*cuda129*]",
        "cuda-version 12.9",
        "pytorch-gpu",
    ]
    cpu = rewrite("space-separated-and-brackets.yml", "")
    assert deps(cpu) == ["python 3.11.*", "pytorch 2.4.* *cpu*", "libtorch[build=*cpu*]", "pytorch-cpu"]


def test_cpu_file_on_gpu_host_turns_to_cuda() -> None:
    gpu = rewrite("cpu-only.yml", "12.4")
    assert deps(gpu) == ["python=3.11", "pytorch=2.3.1=*cuda124*", "pytorch-cuda=12.4", "jupyterlab"]
    cpu = rewrite("cpu-only.yml", "")
    assert deps(cpu) == deps(F.check_spec((FIXTURES / "cpu-only.yml").read_text(), "x"))


@pytest.mark.parametrize(
    "fixture", sorted(p.name for p in FIXTURES.glob("*.yml") if not p.name.startswith("not-"))
)
@pytest.mark.parametrize("cuda", ["", "12.9", "13.0"])
def test_rewrite_keeps_non_cuda_content(fixture: str, cuda: str) -> None:
    before = original(fixture)
    after = rewrite(fixture, cuda)
    for key in ("name", "channels", "variables", "prefix"):
        assert after.get(key) == before.get(key)
    cuda_words = ("cuda", "cpu", "gpu", "cu1")
    kept_before = [
        d for d in before["dependencies"] if isinstance(d, str) and not any(w in d for w in cuda_words)
    ]
    kept_after = [d for d in deps(after) if not any(w in d for w in cuda_words)]
    assert kept_after == kept_before
    # idempotent: rewriting the result again changes nothing
    again = F.check_spec(F._filter_rewrite(F.dump_spec(after), "again", cuda), "again")
    assert again == after


def test_extra_packages_are_added_to_a_byo_file() -> None:
    text = (FIXTURES / "cudatoolkit-legacy.yml").read_text()
    out = F.check_spec(F._filter_rewrite(text, "x", "12.9", ["scikit-image=0.22", "numpy"], ["einops"]), "x")
    assert deps(out)[-3:] == ["scikit-image=0.22", "numpy", "pip"]
    assert pip(out) == ["einops"]


# -- rejecting files that are not environment specs ------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "why"),
    [
        ("not-an-env-workflow.yml", "'dependencies' is missing (top-level keys: name, True, jobs)"),
        ("not-an-env-list.yml", "the top level must be a mapping"),
    ],
)
def test_non_env_files_are_rejected_naming_the_file(fixture: str, why: str) -> None:
    with pytest.raises(F.SpecError) as err:
        F._filter_rewrite((FIXTURES / fixture).read_text(), f"/ctl/{fixture}", "12.9")
    assert f"/ctl/{fixture} is not a conda environment spec" in str(err.value)
    assert why in str(err.value)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("name: x\ndependencies: [python=3.11, numpy\n", "not valid YAML"),
        ("dependencies: numpy\n", "'dependencies' must be a list"),
        ("dependencies:\n  - {conda: [x]}\n", "must be 'pip:' with a list"),
        ("dependencies:\n  - 3.11\n", "is not a string"),
        ("channels: conda-forge\ndependencies: []\n", "'channels' must be a list"),
        ("", "found NoneType"),
    ],
)
def test_schema_errors(text: str, why: str) -> None:
    with pytest.raises(F.SpecError, match=r"bad\.yml is not a conda environment spec") as err:
        F.check_spec(text, "bad.yml")
    assert why in str(err.value)


def test_bad_cuda_version_is_refused() -> None:
    with pytest.raises(F.SpecError, match=r"X\.Y"):
        F.rewrite_spec("dependencies: [python]\n", "x", "12")


# -- layering --------------------------------------------------------------------------------------
def test_merge_all_group_host() -> None:
    merged = F.merge_specs(
        [
            ["numpy", "scipy>=1.10", "pandas"],
            ["numpy=2.1", "!pandas", "conda-forge::polars"],
            ["scipy=1.14", "!missing"],
        ]
    )
    assert merged == ["numpy=2.1", "scipy=1.14", "conda-forge::polars"]


def test_merge_keeps_pip_options_once_and_rejects_strings() -> None:
    assert F.merge_specs(
        [["--extra-index-url https://x/simple", "a"], ["--extra-index-url https://x/simple", "A==1"], None]
    ) == ["--extra-index-url https://x/simple", "A==1"]
    with pytest.raises(F.SpecError):
        F.merge_specs(["numpy"])


# -- digests ---------------------------------------------------------------------------------------
def test_digest_ignores_comments_and_layout_but_not_content() -> None:
    a = "# host facts A\nname: e\ndependencies:\n  - python=3.11\n  - numpy\n"
    b = "# host facts B, other driver\nname: e\ndependencies: [python=3.11, numpy]\n"
    c = "name: e\ndependencies:\n  - python=3.11\n"
    assert F.spec_digest(a) == F.spec_digest(b)
    assert F.spec_digest(a) != F.spec_digest(c)
    assert len(F.spec_digest(a)) == 64


# -- failures and the check result -----------------------------------------------------------------
def test_failure_text_prefers_conda_json_error() -> None:
    stdout = (
        '{\n  "caused_by": "None",\n  "error": "PackagesNotFoundError: '
        'The following packages are not available from current channels:\\n\\n  - nosuchpkg",\n'
        '  "exception_name": "PackagesNotFoundError"\n}\n'
    )
    text = F.failure_text({"rc": 1, "stdout": stdout, "stderr": "", "cmd": ["conda"]})
    assert text.startswith("PackagesNotFoundError: The following packages are not available")
    assert "nosuchpkg" in text and "(rc 1)" in text


def test_failure_text_falls_back_to_stderr_and_msg() -> None:
    assert "Pip failed" in F.failure_text(
        {"rc": 1, "stdout": "Collecting x\n", "stderr": "CondaEnvException: Pip failed"}
    )
    assert F.failure_text({"msg": "The MLP check failed"}) == "The MLP check failed"


def test_parse_check_summarizes_tasks_and_handles_garbage() -> None:
    out = F.parse_check(
        '{"passed": true, "backend": "numpy", "device": "cpu", "tasks": ['
        '{"name": "xor", "loss": 0.01, "accuracy": 1.0, "seconds": 0.5},'
        '{"name": "spirals", "loss": 0.05, "accuracy": 0.995, "seconds": 1.25}]}',
        "",
        0,
    )
    assert (
        out["passed"] is True and out["loss"] == 0.05 and out["accuracy"] == 0.995 and out["seconds"] == 1.75
    )
    failed = F.parse_check('{"passed": true}', "", 1)
    assert failed["passed"] is False and "rc 1" in failed["reason"]
    broken = F.parse_check("Traceback ...", "ImportError: numpy", 4)
    assert broken["passed"] is False and "ImportError: numpy" in broken["reason"]


def test_failure_text_quotes_pip_reason_from_text_mode() -> None:
    stdout = (
        "Installing pip dependencies: ...working... Ran pip subprocess with arguments:\n"
        "['python', '-m', 'pip']\n"
        "Pip subprocess output:\nLooking in indexes: http://127.0.0.1:1/pypi/simple\n\n"
        "Pip subprocess error:\nERROR: Could not find a version that satisfies the requirement nosuch-pkg\n"
        "ERROR: No matching distribution found for nosuch-pkg\n\nfailed\n"
    )
    text = F.failure_text({"rc": 1, "stdout": stdout, "stderr": "\nCondaEnvException: Pip failed\n"})
    assert text.startswith("CondaEnvException: Pip failed")
    assert "pip: ERROR: Could not find a version that satisfies the requirement nosuch-pkg" in text
    assert "No matching distribution found for nosuch-pkg" in text


# -- merging by the real package name (issue 12) ---------------------------------------------------
def test_pip_merge_never_folds_urls_paths_or_files_together() -> None:
    base = [
        "git+https://github.com/facebookincubator/submitit",
        "git+https://github.com/NVIDIA/dllogger.git",
        "https://example.org/whl/a-1.0-py3-none-any.whl",
        "https://example.org/whl/b-2.0-py3-none-any.whl",
        "submodules/diff-gaussian-rasterization",
        "submodules/simple-knn",
        "./pkg",
        "-e .",
        "-r requirements.txt",
        "-r requirements-dev.txt",
        "--extra-index-url https://pypi.nvidia.com",
    ]
    assert F.merge_specs([base], "pip") == base
    assert F.merge_specs([base, base], "pip") == base  # the very same line twice is one line


def test_pip_merge_identifies_packages_by_their_real_name() -> None:
    merged = F.merge_specs(
        [
            [
                "Flask_SocketIO==5.3.0",
                "-e git+https://github.com/openai/CLIP.git@main#egg=clip",
                "https://example.org/whl/torch-2.1.0-cp310-cp310-linux_x86_64.whl",
                'pywin32>=300; sys_platform == "win32"',
                "black[jupyter]>=21.8",
            ],
            [
                "flask-socketio==5.4",  # PEP 503: the same project
                "clip @ git+https://github.com/openai/CLIP.git@v1.0",
                "torch==2.4.0",  # the wheel URL named torch
                "!pywin32",
                "black==24.1",
            ],
        ],
        "pip",
    )
    assert merged == [
        "flask-socketio==5.4",
        "clip @ git+https://github.com/openai/CLIP.git@v1.0",
        "torch==2.4.0",
        "black==24.1",
    ]


def test_merge_keeps_same_name_entries_of_one_layer_and_replaces_them_from_a_later_one() -> None:
    # a file may list a package twice (a pin and a constraint): both stay unless a later layer replaces it
    assert F.merge_specs([["numpy>=1.20", "scipy", "numpy<2"]], "conda") == [
        "numpy>=1.20",
        "scipy",
        "numpy<2",
    ]
    assert F.merge_specs([["numpy>=1.20", "scipy", "numpy<2"], ["numpy=2.1"]], "conda") == [
        "numpy=2.1",
        "scipy",
    ]


def test_conda_merge_by_matchspec_name() -> None:
    merged = F.merge_specs(
        [
            [
                "conda-forge::pytorch=2.5.1=cuda118_h1",
                "bioconda::hmmer==3.3.2",
                "python 3.11.*",
                "numpy[version='>=1.20']",
            ],
            ["pytorch::pytorch>=2.5", "hmmer", "python=3.12", "!numpy"],
        ],
        "conda",
    )
    assert merged == ["pytorch::pytorch>=2.5", "hmmer", "python=3.12"]
    # conda keeps `_` and `-` apart: typing_extensions and typing-extensions are two packages
    assert F.merge_specs([["typing_extensions"], ["typing-extensions=4.8"]], "conda") == [
        "typing_extensions",
        "typing-extensions=4.8",
    ]


def test_removal_of_an_unnamed_entry_by_its_exact_line() -> None:
    layers = [["git+https://github.com/a/x", "git+https://github.com/a/y"], ["!git+https://github.com/a/x"]]
    assert F.merge_specs(layers, "pip") == ["git+https://github.com/a/y"]


def test_merge_refuses_an_unknown_kind() -> None:
    with pytest.raises(F.SpecError, match="conda or pip"):
        F.merge_specs([["numpy"]], "npm")


def test_byo_extra_packages_merge_by_name_and_keep_git_urls() -> None:
    text = (
        "dependencies:\n  - python=3.10\n  - pip\n  - pip:\n"
        "    - git+https://github.com/a/one.git\n    - git+https://github.com/a/two.git\n"
        "    - torch==2.1.0+cu118\n"
    )
    out = F.rewrite_result(
        text, "byo.yml", "12.4", ["python=3.11"], ["git+https://github.com/a/three.git", "torch==2.4.0"]
    )
    assert out["spec"]["dependencies"] == [
        "python=3.11",
        "pip",
        {"pip": ["git+https://github.com/a/one.git", "git+https://github.com/a/two.git", "torch==2.4.0",
                 "git+https://github.com/a/three.git"]},
    ]  # fmt: skip
    assert out["pin_changes"] == [{"name": "torch", "from": "torch==2.1.0+cu118", "to": "torch==2.1.0+cu124"}]


# -- pin changes (the run report's `pin_changes`) --------------------------------------------------
def test_pin_changes_list_each_change_with_from_and_to() -> None:
    text = (FIXTURES / "pytorch-channel-cu118.yml").read_text(encoding="utf-8")
    gpu = F.rewrite_result(text, "x", "12.9")["pin_changes"]
    assert gpu == [{"name": "pytorch-cuda", "from": "pytorch-cuda=11.8", "to": "pytorch-cuda=12.9"}]
    cpu = F.rewrite_result(text, "x", "")["pin_changes"]
    assert cpu == [{"name": "pytorch-cuda", "from": "pytorch-cuda=11.8", "to": "cpuonly"}]
    legacy = F.rewrite_result((FIXTURES / "cudatoolkit-legacy.yml").read_text(encoding="utf-8"), "x", "")
    assert legacy["pin_changes"] == [{"name": "cudatoolkit", "from": "cudatoolkit=11.3", "to": ""}]


def test_pin_changes_record_pip_added_for_a_pip_list() -> None:
    out = F.rewrite_result("dependencies:\n  - python=3.10\n  - pip:\n    - einops\n", "x", "12.4")
    assert out["pin_changes"] == [{"name": "pip", "from": "", "to": "pip"}]


def test_an_entry_already_right_for_the_host_is_no_change() -> None:
    out = F.rewrite_result("dependencies:\n  - cuda-version=12.4\n  - pytorch-gpu\n", "x", "12.4")
    assert out["pin_changes"] == []
    assert out["spec"]["dependencies"] == ["cuda-version=12.4", "pytorch-gpu"]


def test_cpu_builds_of_non_torch_packages_are_not_touched() -> None:
    # pyarrow's *_cpu build is no PyTorch variant: a GPU host must not get it rewritten
    text = (
        "dependencies:\n  - pyarrow=12.0.1=py39hca4e8af_5_cpu\n  - pytorch=2.3.1=*cpu*\n"
        "  - jaxlib=0.4.23=cuda118*\n"
    )
    out = F.rewrite_result(text, "x", "12.4")
    assert out["spec"]["dependencies"] == [
        "pyarrow=12.0.1=py39hca4e8af_5_cpu",
        "pytorch=2.3.1=*cuda124*",
        "jaxlib=0.4.23=cuda124*",
    ]
    assert [c["name"] for c in out["pin_changes"]] == ["pytorch", "jaxlib"]


def test_local_pip_paths_are_reported() -> None:
    text = (
        "dependencies:\n  - pip\n  - pip:\n    - -r requirements.txt\n    - -e .\n"
        "    - submodules/simple-knn\n    - numpy\n"
    )
    assert F.rewrite_result(text, "x", "")["local_paths"] == [
        "-r requirements.txt",
        "-e .",
        "submodules/simple-knn",
    ]
