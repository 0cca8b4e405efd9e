"""The entry parsers of the dl_env filters: conda MatchSpec and pip requirement lines.

The conda cases are the inputs of conda's own MatchSpec tests (conda/conda, tests/models/test_match_spec.py
at commit 0011c966c790a5643bf76009ba95921a89068948: test_parse_spec_str_no_brackets, _with_brackets,
test_star_name, test_parse_equal_equal, test_parse_hard, test_parse_channel_subdir, test_parse_parens,
test_parse_build_number_brackets, test_parse_spec_str_tarball_url, test_matchspec_errors,
test_parse_errors); the expected values are what conda's `_parse_spec_str` gives for them (version as
conda reads it: `=1.8` means `1.8*`). Channels are kept as written (conda would shorten
`https://repo.anaconda.com/pkgs/free` to `pkgs/free`).
"""

from __future__ import annotations

import pytest

from ._load import dl_env_filters

F = dl_env_filters()
P = F.P

CONDA_CASES: list[tuple[str, dict[str, str]]] = [
    # test_parse_spec_str_no_brackets
    ("numpy", {"name": "numpy"}),
    ("numpy=", {"name": "numpy"}),
    ("defaults::numpy", {"channel": "defaults", "name": "numpy"}),
    (
        "https://repo.anaconda.com/pkgs/free::numpy",
        {"channel": "https://repo.anaconda.com/pkgs/free", "name": "numpy"},
    ),
    ("defaults::numpy=1.8", {"channel": "defaults", "name": "numpy", "version": "1.8*"}),
    ("defaults::numpy =1.8", {"channel": "defaults", "name": "numpy", "version": "1.8*"}),
    (
        "defaults::numpy=1.8=py27_0",
        {"channel": "defaults", "name": "numpy", "version": "1.8", "build": "py27_0"},
    ),
    (
        "defaults::numpy 1.8 py27_0",
        {"channel": "defaults", "name": "numpy", "version": "1.8", "build": "py27_0"},
    ),
    # test_parse_spec_str_with_brackets
    ("defaults::numpy[channel=anaconda]", {"channel": "anaconda", "name": "numpy"}),
    (
        "defaults::numpy 1.8 py27_0[channel=anaconda]",
        {"channel": "anaconda", "name": "numpy", "version": "1.8", "build": "py27_0"},
    ),
    (
        "defaults::numpy=1.8=py27_0 [channel=anaconda,version=1.9, build=3]",
        {"channel": "anaconda", "name": "numpy", "version": "1.9", "build": "3"},
    ),
    (
        "defaults::numpy=1.8=py27_0 [channel='anaconda',version=\">=1.8,<2|1.9\", build='3']",
        {"channel": "anaconda", "name": "numpy", "version": ">=1.8,<2|1.9", "build": "3"},
    ),
    (
        "tensorflow[name=* version=* md5=253b922ecdb5a30884875948b8904983]",
        {"name": "tensorflow", "version": "*"},
    ),
    ("tensorflow[name=pytorch]", {"name": "tensorflow"}),
    # test_star_name
    ("* 2.7.4", {"name": "*", "version": "2.7.4"}),
    ("* >=1.3 2", {"name": "*", "version": ">=1.3", "build": "2"}),
    # test_parse_equal_equal
    ("numpy==1.7", {"name": "numpy", "version": "1.7"}),
    ("numpy ==1.7", {"name": "numpy", "version": "1.7"}),
    ("numpy=1.7", {"name": "numpy", "version": "1.7*"}),
    ("numpy =1.7", {"name": "numpy", "version": "1.7*"}),
    ("numpy !=1.7", {"name": "numpy", "version": "!=1.7"}),
    # test_parse_hard
    ("numpy~=1.7.1", {"name": "numpy", "version": "~=1.7.1"}),
    ("numpy>1.8,<2|==1.7", {"name": "numpy", "version": ">1.8,<2|==1.7"}),
    (
        "numpy >1.8,<2|==1.7,!=1.9,~=1.7.1 py34_0",
        {"name": "numpy", "version": ">1.8,<2|==1.7,!=1.9,~=1.7.1", "build": "py34_0"},
    ),
    ("*>1.8,<2|==1.7", {"name": "*", "version": ">1.8,<2|==1.7"}),
    ("* 1 *", {"name": "*", "version": "1", "build": "*"}),
    ("* * openblas_0", {"name": "*", "version": "*", "build": "openblas_0"}),
    # test_parse_channel_subdir
    ("conda-forge::foo>=1.0", {"channel": "conda-forge", "name": "foo", "version": ">=1.0"}),
    (
        "conda-forge/linux-32::foo>=1.0",
        {"channel": "conda-forge", "subdir": "linux-32", "name": "foo", "version": ">=1.0"},
    ),
    ("*/linux-32::foo>=1.0", {"channel": "*", "subdir": "linux-32", "name": "foo", "version": ">=1.0"}),
    # test_parse_parens
    (
        "conda-forge::foo[build=3](target=blarg,optional)",
        {"channel": "conda-forge", "name": "foo", "build": "3"},
    ),
    # test_parse_build_number_brackets (the name is all this project needs from them)
    ("python[build_number=3]", {"name": "python"}),
    ("python[build_number='>=3']", {"name": "python"}),
    # test_canonical_string_forms inputs
    ("numpy=1.7=py3*_2", {"name": "numpy", "version": "1.7", "build": "py3*_2"}),
    ("numpy!=1.10 py38_0", {"name": "numpy", "version": "!=1.10", "build": "py38_0"}),
    ("numpy!=1.10=py38_0", {"name": "numpy", "version": "!=1.10", "build": "py38_0"}),
    ("numpy=1.10.*,!=1.10.2", {"name": "numpy", "version": "=1.10.*,!=1.10.2"}),
    ("zope.int>=1.3,<3.0", {"name": "zope.int", "version": ">=1.3,<3.0"}),
    ("openssl=1.1.1_", {"name": "openssl", "version": "1.1.1_*"}),
    ("numpy[version=1.10 build=py38_0]", {"name": "numpy", "version": "1.10", "build": "py38_0"}),
    # written apart, as in conda's spec_from_line cases ("foo >= 1.0", "foo >=1.0 , < 2.0")
    ("foo >= 1.0", {"name": "foo", "version": ">=1.0"}),
    ("foo >=1.0 , < 2.0", {"name": "foo", "version": ">=1.0,<2.0"}),
    # test_comment
    ("foo # comment", {"name": "foo"}),
    # test_parse_spec_str_tarball_url
    (
        "https://repo.anaconda.com/pkgs/main/linux-64/_license-1.1-py27_1.tar.bz2",
        {"name": "_license", "version": "1.1", "build": "py27_1", "subdir": "linux-64"},
    ),
    (
        "https://conda.anaconda.org/conda-canary/linux-64/conda-4.3.21.post699+1dab973-py36h4a561cd_0.conda",
        {
            "subdir": "linux-64",
            "name": "conda",
            "version": "4.3.21.post699+1dab973",
            "build": "py36h4a561cd_0",
        },
    ),
    # test_tarball_match_specs / test_matchspec_errors: no subdir in the path -> conda keeps only the url
    (
        "https://conda.anaconda.org/conda-canary/conda-4.3.21.post699+1dab973-py36h4a561cd_0.tar.bz2",
        {"name": ""},
    ),
    ("/some/file/on/disk/package-1.2.3-2.tar.bz2", {"name": ""}),
]


def _seen(ms: object) -> dict[str, str]:
    out = {
        "name": ms.name,  # type: ignore[attr-defined]
        # a package URL's channel is a URL path part here (conda maps it to its channel name)
        "channel": "" if ms.url else ms.match_channel,  # type: ignore[attr-defined]
        "subdir": ms.subdir,  # type: ignore[attr-defined]
        "version": ms.match_version if not ms.url else ms.version,  # type: ignore[attr-defined]
        "build": ms.match_build,  # type: ignore[attr-defined]
    }
    return {k: v for k, v in out.items() if v or k == "name"}


@pytest.mark.parametrize(("spec", "expected"), CONDA_CASES, ids=[c[0] for c in CONDA_CASES])
def test_conda_matchspec_as_conda_reads_it(spec: str, expected: dict[str, str]) -> None:
    assert _seen(P.parse_conda(spec)) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "blas [optional",  # test_matchspec_errors
        "blas [test=]",
        'blas[invalid="1"]',
        "!xyz 1.3",  # test_parse_errors / test_invalid_match_spec
        "=1.2",
        "",
        "numpy 1.7 py27 extra",
    ],
)
def test_conda_refuses_what_conda_refuses(spec: str) -> None:
    with pytest.raises(P.SpecSyntaxError):
        P.parse_conda(spec)


def test_conda_key_is_the_lower_case_name_and_star_is_unknown() -> None:
    assert P.parse_conda("conda-forge::PyYAML==5.4.1").key == "pyyaml"
    assert P.parse_conda("typing_extensions").key == "typing_extensions"  # conda keeps _ and - apart
    assert P.parse_conda("* 2.7.4").key is None
    assert P.parse_conda("https://conda.anaconda.org/c/x-1-0.tar.bz2").key is None


def test_conda_spec_written_back_in_the_users_form() -> None:
    assert P.parse_conda("pytorch 2.4.* cuda120*").with_parts(build="cuda129*") == "pytorch 2.4.* cuda129*"
    assert P.parse_conda("conda-forge::pytorch=2.5.1=cuda118_h1").with_parts(build="*cuda130*") == (
        "conda-forge::pytorch=2.5.1=*cuda130*"
    )
    assert P.parse_conda("torchvision=*=cuda*").with_parts(build="*cpu*") == "torchvision=*=*cpu*"
    ms = P.parse_conda("libtorch[build=*cuda120*]")
    assert ms.with_parts(brackets=(("build", "*cpu*"),)) == "libtorch[build=*cpu*]"


PIP_CASES: list[tuple[str, str, str | None, bool]] = [
    # line, kind, key, local
    ("numpy", "requirement", "numpy", False),
    ("torch==2.1.0+cu118", "requirement", "torch", False),
    ("black[jupyter]>=21.8", "requirement", "black", False),
    ("isort[colors]>=5.8", "requirement", "isort", False),
    ('pywin32>=300; sys_platform == "win32"', "requirement", "pywin32", False),
    ("flask_socketio==5.3.0", "requirement", "flask-socketio", False),
    ("Pillow <7.0 # bug in torchvision", "requirement", "pillow", False),
    ("clip @ git+https://github.com/openai/CLIP.git", "requirement", "clip", False),
    ("pkg @ file:///opt/wheels/pkg-1.0-py3-none-any.whl", "requirement", "pkg", True),
    (
        "requests==2.31.0 --hash=sha256:58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f",
        "requirement",
        "requests",
        False,
    ),
    ("git+https://github.com/facebookincubator/submitit", "url", None, False),
    ("git+https://github.com/rlworkgroup/metaworld.git@master#egg=metaworld", "url", "metaworld", False),
    ("git+git://github.com/facebookresearch/hydra@0.11_branch", "url", None, False),
    (
        "https://download.pytorch.org/whl/cu118/torch-2.1.0%2Bcu118-cp310-cp310-linux_x86_64.whl",
        "url",
        "torch",
        False,
    ),
    ("https://github.com/sowbug/tinyxmp/tarball/master", "url", None, False),
    ("./wheels/flash_attn-2.6.3-cp310-cp310-linux_x86_64.whl", "path", "flash-attn", True),
    ("submodules/diff-gaussian-rasterization", "path", None, True),
    ("../shared/pkg", "path", None, True),
    ("-e .", "editable", None, True),
    ("-e git+https://github.com/openai/CLIP.git@main#egg=clip", "editable", "clip", False),
    ("--editable=git+https://github.com/x/y#egg=Y_Pkg&subdirectory=python", "editable", "y-pkg", False),
    ("-r requirements.txt", "file", None, True),
    ("-r file:requirements.txt", "file", None, True),
    ("--requirement=reqs/base.txt", "file", None, True),
    ("-c constraints.txt", "file", None, True),
    ("--extra-index-url https://pypi.nvidia.com", "option", None, False),
    ("--index-url=https://download.pytorch.org/whl/cu121", "option", None, False),
    ("-f https://data.pyg.org/whl/torch-2.1.0+cu121.html", "option", None, False),
    ("--pre", "option", None, False),
    ("torch==${TORCH_VERSION}", "unknown", None, False),
]


@pytest.mark.parametrize(("line", "kind", "key", "local"), PIP_CASES, ids=[c[0][:60] for c in PIP_CASES])
def test_pip_line_kind_name_and_locality(line: str, kind: str, key: str | None, local: bool) -> None:
    entry = P.parse_pip(line)
    assert (entry.kind, entry.key, entry.local) == (kind, key, local)
    assert entry.text == line.strip()


def test_pip_requirement_keeps_markers_and_extras() -> None:
    req = P.parse_pip('Foo.Bar[extra1,extra2]>=1,<2; python_version >= "3.9"').requirement
    assert req is not None
    assert req.extras == {"extra1", "extra2"} and str(req.marker) == 'python_version >= "3.9"'
    assert P.parse_pip("Foo.Bar").key == "foo-bar"
