"""Issue 12 part 3: every value that goes into a rendered file is quoted.

Property tests render the REAL templates with Ansible's own Templar (and the filters
Ansible gives them) from generated hostile strings, parse the result the way its reader does (yaml.safe_load
for the YAML files, /bin/sh for the shell snippet) and require exactly the input back. The values reach the
Templar as plain (untrusted) strings, which is what an inventory `!unsafe` value is; how inventory values with
`{{` behave is tested end to end in tests/test_quoting_playbook.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ansible_loader

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO / "templates" / "environment.yml.j2"
DL_ENV = REPO / "roles" / "dl_env"
MINICONDA_TEMPLATES = REPO / "roles" / "miniconda" / "templates"
MANAGED = "Ansible managed"
HEADER = "# gpulab dl_env spec for host h, environment e"

# What breaks a naive `{{ x }}`: YAML indicators and scalars that resolve to booleans/numbers/null, shell
# expansions, Jinja delimiters, line breaks (incl. those only YAML 1.1 treats as breaks) and non-ASCII text.
PIECES = [
    "on",
    "off",
    "no",
    "yes",
    "y",
    "n",
    "true",
    "False",
    "null",
    "~",
    "1.10",
    "010",
    "0x1F",
    "1e3",
    ".inf",
    "-",
    ": ",
    ":",
    "#",
    " #",
    "'",
    '"',
    "\\",
    "*",
    "*cuda*",
    "&a",
    "!tag",
    "%",
    "@",
    "`",
    "|",
    ">",
    "[",
    "]",
    "{",
    "}",
    ",",
    "? ",
    "{{",
    "}}",
    "{{ x }}",
    "{% if %}",
    "{#",
    "$(",
    "$(id)",
    "${HOME}",
    "$",
    ";",
    "&&",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\x85",
    "\u2028",
    "\ufeff",
    "é",
    "日本",
    "\U0001f600",
    "\x00",
    "\x7f",
    "\x1b",
]
HOSTILE = st.one_of(
    st.sampled_from(PIECES),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=24),
)
NAME_LIKE = st.lists(HOSTILE, min_size=1, max_size=4)
# The collection loader, so `ansible.builtin.*` and `gpulab.gpulab.*` names resolve as in a playbook run.
ansible_loader()
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def render(template: Path, variables: dict[str, Any]) -> str:
    """Render a template file the way Ansible's template module/lookup does (Ansible's Jinja environment)."""
    templar = Templar(loader=DataLoader(), variables={"ansible_managed": MANAGED, **variables})
    result = templar.template(trust_as_template(template.read_text(encoding="utf-8")))
    assert isinstance(result, str)
    return result


def default_vars(**overrides: Any) -> dict[str, Any]:
    return {
        "dl_env_spec_header": HEADER,
        "dl_env_name": "gpulab",
        "dl_env_channels": ["conda-forge", "nodefaults"],
        "dl_env_python_version": "3.12",
        "dl_env_framework": "pytorch",
        "dl_env_framework_version": "",
        "dl_env_cuda_version": "12.9",
        "dl_env_conda_packages_merged": [],
        "dl_env_pip_packages_merged": [],
        "dl_env_variables": {},
        **overrides,
    }


@PROPERTY
@given(
    name=HOSTILE,
    channels=NAME_LIKE,
    version=HOSTILE,
    python=HOSTILE,
    conda=st.lists(HOSTILE, max_size=3),
    pip=st.lists(HOSTILE, max_size=3),
    variables=st.dictionaries(HOSTILE, HOSTILE, max_size=3),
    gpu=st.booleans(),
)
def test_default_template_gives_back_every_value(
    name: str,
    channels: list[str],
    version: str,
    python: str,
    conda: list[str],
    pip: list[str],
    variables: dict[str, str],
    gpu: bool,
) -> None:
    cuda = "12.9" if gpu else ""
    text = render(
        DEFAULT_TEMPLATE,
        default_vars(
            dl_env_name=name,
            dl_env_channels=channels,
            dl_env_framework_version=version,
            dl_env_python_version=python,
            dl_env_cuda_version=cuda,
            dl_env_conda_packages_merged=conda,
            dl_env_pip_packages_merged=pip,
            dl_env_variables=variables,
        ),
    )
    data = yaml.safe_load(text)
    pin = ("=" + version) if version else ""
    framework = ["pytorch-gpu" + pin, "cuda-version=" + cuda] if gpu else ["pytorch-cpu" + pin]
    expected: dict[str, Any] = {
        "name": name,
        "channels": channels,
        "dependencies": ["python=" + python, "pip", *framework, *conda, *([{"pip": pip}] if pip else [])],
    }
    if variables:
        expected["variables"] = variables
    assert data == expected, text
    assert text.startswith("#\n# " + MANAGED + "\n#\n" + HEADER + "\n")


def test_default_template_keeps_non_string_inventory_values_as_strings() -> None:
    # The template must not turn `on` into a YAML bool, and variable values (numbers in inventory) are
    # written as strings, the only type conda stores.
    text = render(
        DEFAULT_TEMPLATE,
        default_vars(dl_env_name="on", dl_env_variables={"OMP_NUM_THREADS": 4, "no": "1.10", "FLAG": False}),
    )
    data = yaml.safe_load(text)
    assert data["name"] == "on"
    assert data["variables"] == {"OMP_NUM_THREADS": "4", "no": "1.10", "FLAG": "False"}


def test_default_template_without_framework_or_extras() -> None:
    data = yaml.safe_load(render(DEFAULT_TEMPLATE, default_vars(dl_env_framework="none")))
    assert data == {
        "name": "gpulab",
        "channels": ["conda-forge", "nodefaults"],
        "dependencies": ["python=3.12", "pip"],
    }


def _byo_render(tmp: Path, source: dict[str, Any], conda: list[str], pip: list[str]) -> str:
    """The byo path as roles/dl_env/tasks/spec.yml runs it: rewrite filter, then byo_environment.yml.j2."""
    base = tmp / "environment.yml"
    # allow_unicode=False: PyYAML's own dumper does not round-trip a raw U+0085 (NEL) in a plain scalar.
    base.write_text(yaml.safe_dump(source), encoding="utf-8")
    templar = Templar(loader=DataLoader(), variables={"base": str(base), "conda": conda, "pip": pip})
    body = templar.template(
        trust_as_template(
            "{{ lookup('ansible.builtin.file', base)"
            " | gpulab.gpulab.dl_env_spec_rewrite(base, '12.9', conda, pip) }}"
        )
    )
    assert isinstance(body, str)
    return render(
        DL_ENV / "templates" / "byo_environment.yml.j2",
        {"dl_env_spec_header": HEADER, "dl_env_spec_body": body},
    )


@PROPERTY
@given(name=HOSTILE, channels=NAME_LIKE, variables=st.dictionaries(HOSTILE, HOSTILE, max_size=3))
def test_byo_template_gives_back_name_channels_and_variables(
    tmp_path_factory: pytest.TempPathFactory, name: str, channels: list[str], variables: dict[str, str]
) -> None:
    # Only the values gpulab copies through unchanged: package entries are the spec filter's (part 2).
    source: dict[str, Any] = {"name": name, "channels": channels, "dependencies": ["numpy"]}
    if variables:
        source["variables"] = variables
    text = _byo_render(tmp_path_factory.mktemp("byo"), source, [], [])
    data = yaml.safe_load(text)
    assert data["name"] == name, text
    assert data["channels"] == channels, text
    assert data.get("variables") == (variables or None), text
    assert text.startswith("#\n# " + MANAGED + "\n#\n" + HEADER + "\n")


# The .condarc: every value the role's variables put in it (channels, URLs, proxies, paths, extra keys).
@PROPERTY
@given(
    channels=NAME_LIKE,
    alias=HOSTILE,
    custom=st.dictionaries(HOSTILE, HOSTILE, max_size=2),
    dirs=st.lists(HOSTILE, max_size=2),
    proxies=st.dictionaries(HOSTILE, HOSTILE, max_size=2),
    ssl=st.one_of(st.booleans(), HOSTILE),
    extra_key=HOSTILE,
    extra_value=HOSTILE,
)
def test_condarc_gives_back_every_value(
    channels: list[str],
    alias: str,
    custom: dict[str, str],
    dirs: list[str],
    proxies: dict[str, str],
    ssl: bool | str,
    extra_key: str,
    extra_value: str,
) -> None:
    # preflight computes the managed keys and splits credentials off (miniconda_split_secrets, tested in
    # tests/miniconda/test_secrets_filter.py); the template writes the public part over what the host has.
    managed = yaml.safe_load((MINICONDA_TEMPLATES.parent / "vars" / "main.yml").read_text())[
        "__miniconda_condarc_managed_keys"
    ]
    public: dict[str, Any] = {"channels": channels, "channel_priority": "flexible", "ssl_verify": ssl}
    for key, value in (
        ("channel_alias", alias),
        ("custom_channels", custom),
        ("default_channels", dirs),
        ("pkgs_dirs", dirs),
        ("envs_dirs", dirs),
        ("proxy_servers", proxies),
    ):
        if value:
            public[key] = value
    existing = {"channels": ["replaced"], extra_key: extra_value}
    variables = {
        "__miniconda_prefix": "/opt/miniconda3",
        "__miniconda_condarc_managed_keys": managed,
        "__miniconda_condarc_existing": existing,
        "__miniconda_condarc_split": {"public": public, "secret": {}},
        "miniconda_condarc_extra": {},
    }
    text = render(MINICONDA_TEMPLATES / "condarc.j2", variables)
    data = yaml.safe_load(text)
    expected = {k: v for k, v in existing.items() if k not in managed} | public
    assert data == expected, text


# The shell snippet: any path (a file name may hold any byte but / and NUL) is read by sh as exactly it.
SEGMENT = st.lists(
    st.sampled_from([p for p in PIECES if "/" not in p and "\x00" not in p]), min_size=1, max_size=4
).map("".join) | st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
    min_size=1,
    max_size=16,
)


def _segment_ok(segment: str) -> bool:
    return segment not in (".", "..") and len(segment.encode()) < 200


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(segments=st.lists(SEGMENT.filter(_segment_ok), min_size=1, max_size=2))
def test_profile_script_sources_exactly_the_prefix(tmp_path: Path, segments: list[str]) -> None:
    base = Path(os.path.realpath(tmp_path))
    prefix = os.path.join(str(base), *segments)
    profile_d = Path(prefix, "etc", "profile.d")
    profile_d.mkdir(parents=True, exist_ok=True)
    marker = "gpulab-sourced"
    (profile_d / "conda.sh").write_text(f"printf '%s' {marker}\n")
    script = render(MINICONDA_TEMPLATES / "gpulab-conda.sh.j2", {"__miniconda_prefix": prefix})
    # A fresh empty cwd: a mis-quoted `$(...)`, glob or redirection would leave a file or print more.
    work = base / ".work"
    work.mkdir(exist_ok=True)
    proc = subprocess.run(
        ["/bin/sh", "-c", script], cwd=work, capture_output=True, text=True, timeout=10, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, marker, ""), script
    assert list(work.iterdir()) == []
    (profile_d / "conda.sh").unlink()


def test_profile_script_is_silent_without_conda_sh(tmp_path: Path) -> None:
    script = render(
        MINICONDA_TEMPLATES / "gpulab-conda.sh.j2",
        {"__miniconda_prefix": str(tmp_path / "$(touch x)")},
    )
    proc = subprocess.run(
        ["/bin/sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=10, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert list(tmp_path.iterdir()) == []
