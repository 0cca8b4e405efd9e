"""The list form: dl_env_envs / dl_env_group_envs / dl_env_host_envs merged by name, defaults from the
single-env variables, errors naming the variable; and URL userinfo redaction in messages."""

from __future__ import annotations

from typing import Any

import pytest

from ._load import dl_env_filters

F = dl_env_filters()
REDACT = F.FilterModule().filters()["dl_env_redact"]
DEFAULTS: dict[str, Any] = {
    "name": "gpulab",
    "template": "/t/environment.yml.j2",
    "base_file": "",
    "python_version": "3.12",
    "framework": "pytorch",
    "framework_version": "",
    "channels": ["conda-forge", "nodefaults"],
    "variables": {},
}


def test_no_list_is_the_one_env_of_the_single_variables() -> None:
    envs = F.merge_envs([[], [], []], DEFAULTS, [["numpy"], [], ["scipy"]], [[], ["rich"], []])
    assert envs == [
        {
            **DEFAULTS,
            "state": "present",
            "cpu_only": False,
            "conda_packages": ["numpy", "scipy"],
            "pip_packages": ["rich"],
        }
    ]


def test_layers_merge_by_name_keys_replace_and_package_lists_merge() -> None:
    all_envs = [
        {"name": "torch", "conda_packages": ["pandas", "nccl"]},
        {"name": "data", "framework": "none", "python_version": 3.11},
        {"name": "old", "state": "absent"},
    ]
    group = [{"name": "torch", "python_version": "3.11", "conda_packages": ["!nccl", "pandas=2.2"]}]
    host = [{"name": "tf", "framework": "tensorflow", "cpu_only": True}, {"name": "data", "state": "absent"}]
    envs = {e["name"]: e for e in F.merge_envs([all_envs, group, host], DEFAULTS, [["numpy"]], [])}
    assert list(envs) == ["torch", "data", "old", "tf"]
    assert envs["torch"]["python_version"] == "3.11" and envs["torch"]["framework"] == "pytorch"
    assert envs["torch"]["conda_packages"] == ["numpy", "pandas=2.2"]
    assert envs["data"] == {
        **DEFAULTS,
        "name": "data",
        "framework": "none",
        "python_version": "3.11",
        "state": "absent",
        "cpu_only": False,
        "conda_packages": ["numpy"],
        "pip_packages": [],
    }
    assert envs["tf"]["cpu_only"] is True and envs["tf"]["template"] == DEFAULTS["template"]


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{"name": "x"}, [], []], r"dl_env_envs must be a list"),
        ([[], ["x"], []], r"dl_env_group_envs\[0\] must be a mapping"),
        ([[], [], [{"framework": "none"}]], r"dl_env_host_envs\[0\]: name None"),
        ([[{"name": "base"}], [], []], r"name 'base' must be"),
        ([[{"name": "a b"}], [], []], r"name 'a b' must be"),
        (
            [[{"name": "a", "state": "gone"}], [], []],
            r"dl_env_envs\[0\] \(a\): state must be present or absent",
        ),
        (
            [[{"name": "a", "framework": "jax"}], [], []],
            r"framework must be one of pytorch, tensorflow, none",
        ),
        ([[{"name": "a", "packages": []}], [], []], r"unknown key\(s\) packages"),
        ([[{"name": "a", "cpu_only": "yes"}], [], []], r"cpu_only has the wrong type"),
        ([[{"name": "a", "conda_packages": "numpy"}], [], []], r"conda_packages has the wrong type"),
    ],
)
def test_bad_entries_fail_naming_the_variable(layers: list[Any], message: str) -> None:
    with pytest.raises(F.SpecError, match=message):
        F.merge_envs(layers, DEFAULTS, [], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pip: https://user:s3cret@pypi.example/simple/ 404", "pip: https://***@pypi.example/simple/ 404"),
        ("--extra-index-url=http://tok@h:8080/x", "--extra-index-url=http://***@h:8080/x"),
        (
            "proxy socks5://a:b@127.0.0.1:1080 and https://ok.example/",
            "proxy socks5://***@127.0.0.1:1080 and https://ok.example/",
        ),
        ("no url: user@example.org", "no url: user@example.org"),
        (  # a conda channel token in a failed build's message (missed before the one secrets module)
            "CondaHTTPError: HTTP 403 FORBIDDEN for url <https://conda.anaconda.org/t/ab-12_3/lab/noarch>",
            "CondaHTTPError: HTTP 403 FORBIDDEN for url <https://conda.anaconda.org/t/***/lab/noarch>",
        ),
        ("a path, not a URL: /tmp/t/build-1/x", "a path, not a URL: /tmp/t/build-1/x"),
    ],
)
def test_messages_lose_url_userinfo(text: str, expected: str) -> None:
    assert REDACT(text) == expected
    assert "s3cret" not in F.FilterModule().filters()["dl_env_failure_text"]({"stderr": text, "rc": 1})


def test_pin_changes_lose_url_userinfo_in_every_string() -> None:
    changes = [
        {
            "name": "--extra-index-url",
            "from": "--extra-index-url https://u:t0k@download.pytorch.org/whl/cu118",
            "to": "--extra-index-url https://u:t0k@download.pytorch.org/whl/cu126",
        }
    ]
    out = REDACT(changes)
    assert out == [
        {
            "name": "--extra-index-url",
            "from": "--extra-index-url https://***@download.pytorch.org/whl/cu118",
            "to": "--extra-index-url https://***@download.pytorch.org/whl/cu126",
        }
    ]
    assert REDACT(None) is None and REDACT(3) == 3
