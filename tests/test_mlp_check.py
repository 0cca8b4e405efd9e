"""Tests of roles/dl_env/files/mlp_check.py: real training with numpy and (when it imports) torch on CPU.

Nothing here mocks numpy or torch. The script is run as the roles run it (a subprocess, `--json`), and a
few checks load it as a module to test its parts directly (backpropagation against finite differences,
agreement between the numpy and torch implementations).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "roles" / "dl_env" / "files" / "mlp_check.py"

TOP_LEVEL_KEYS = {
    "schema_version",
    "passed",
    "exit_code",
    "reason",
    "backend",
    "device",
    "gpu_name",
    "requested",
    "seed",
    "limits",
    "tasks",
    "agreement",
    "peak_gpu_memory_bytes",
    "versions",
    "python_executable",
    "notes",
}
TASK_KEYS = {
    "passed",
    "criterion",
    "stopped",
    "loss",
    "accuracy",
    "epochs",
    "seconds",
    "tensor_device",
    "loss_history",
}
XOR_KEYS = TASK_KEYS | {"restarts"}
SPIRALS_KEYS = TASK_KEYS | {"test_accuracy"}


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    rc, out, err = run_script(*args, "--json", env=env)
    assert "Traceback" not in err, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"--json must print one JSON object on one line, got: {out!r}"
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert report["exit_code"] == rc
    return rc, report, err


def numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The training results of a report without the timings."""
    return {
        name: {key: value for key, value in task.items() if key != "seconds"}
        for name, task in report["tasks"].items()
    }


@functools.cache
def _torch_import_error() -> str | None:
    proc = subprocess.run(
        [sys.executable, "-c", "import torch"], capture_output=True, text=True, check=False, timeout=300
    )
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture
def torch_required() -> None:
    error = _torch_import_error()
    if error is not None:
        pytest.skip(f"torch is not importable by {sys.executable}: {error} (pip install torch to run this)")


def load_mlp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlp_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mlp_check"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mlp() -> ModuleType:
    return load_mlp()


@pytest.fixture(scope="module")
def numpy_default() -> tuple[int, dict[str, Any]]:
    rc, report, _ = run_json("--backend", "numpy")
    return rc, report


def without_torch_env(tmp_path: Path, error: str) -> dict[str, str]:
    """An environment in which `import torch` fails the way a missing or broken install does."""
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise {error}\n")
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shadow.parent)}


# ------------------------------------------------------------------------------------------------
# numpy backend
# ------------------------------------------------------------------------------------------------


def test_numpy_backend_converges_and_reports_the_schema(
    numpy_default: tuple[int, dict[str, Any]],
) -> None:
    rc, report = numpy_default
    assert rc == 0, report["reason"]
    assert set(report) == TOP_LEVEL_KEYS
    assert report["schema_version"] == 2
    assert report["passed"] is True and report["reason"] is None
    assert (report["backend"], report["device"], report["gpu_name"]) == ("numpy", "cpu", None)
    assert report["requested"] == {"backend": "numpy", "device": "auto"}
    assert report["seed"] == 0
    assert report["limits"] == {"max_epochs": 20000, "max_seconds": 300.0}
    assert report["versions"] == {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None,
        "cuda_runtime": None,
    }
    assert report["agreement"] is None and report["peak_gpu_memory_bytes"] is None

    xor, spirals = report["tasks"]["xor"], report["tasks"]["spirals"]
    assert set(xor) == XOR_KEYS and set(spirals) == SPIRALS_KEYS
    for task in (xor, spirals):
        assert task["passed"] is True and task["stopped"] == "converged"
        assert isinstance(task["epochs"], int) and 0 < task["epochs"] < 20000
        assert task["seconds"] >= 0 and task["tensor_device"] == "cpu"
        # The loss curve `gpulab report --html` draws: [epoch, loss] from epoch 1 to the last evaluation,
        # at most 100 points plus the last, falling overall.
        curve = task["loss_history"]
        assert curve[0][0] == 1 and curve[-1][0] == task["epochs"] + 1 and len(curve) <= 101
        assert [e for e, _ in curve] == sorted({e for e, _ in curve})
        assert curve[-1][1] == round(task["loss"], 6) < curve[0][1]
    assert xor["accuracy"] == 1.0 and xor["restarts"] == 0
    # Spirals: the stated criterion, and it generalises to held-out points of the same spirals.
    assert spirals["accuracy"] >= 0.97 and spirals["loss"] <= 0.10
    assert spirals["test_accuracy"] >= 0.9


def test_numpy_training_is_fast(numpy_default: tuple[int, dict[str, Any]]) -> None:
    # About 0.05 s on an idle 2-core CPU; the margin absorbs a machine loaded by other test suites.
    _, report = numpy_default
    training = report["tasks"]["xor"]["seconds"] + report["tasks"]["spirals"]["seconds"]
    assert training < 3.0, f"numpy training took {training:.2f} s"


def test_same_seed_gives_the_same_numbers(numpy_default: tuple[int, dict[str, Any]]) -> None:
    _, first = numpy_default
    rc, second, _ = run_json("--backend", "numpy", "--seed", "0")
    assert rc == 0
    assert numbers(second) == numbers(first)


def test_another_seed_gives_other_numbers(numpy_default: tuple[int, dict[str, Any]]) -> None:
    _, first = numpy_default
    rc, other, _ = run_json("--backend", "numpy", "--seed", "1")
    assert rc == 0 and other["seed"] == 1
    assert numbers(other)["spirals"]["loss"] != numbers(first)["spirals"]["loss"]


def test_text_output_without_json() -> None:
    rc, out, err = run_script("--backend", "numpy", "--seed", "3")
    assert rc == 0, out + err
    assert out.startswith("gpulab MLP check: PASSED (exit 0)")
    assert "criterion: all 4 XOR points classified correctly (converged)" in out
    assert "spirals" in out and "test accuracy 0.9" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_tiny_epoch_limit_fails_with_exit_1_and_a_reason() -> None:
    rc, report, _ = run_json("--backend", "numpy", "--max-epochs", "3")
    assert rc == 1 and report["passed"] is False
    for task in report["tasks"].values():
        assert (task["passed"], task["stopped"], task["epochs"]) == (False, "max-epochs", 3)
    assert "xor: all 4 XOR points classified correctly not reached within --max-epochs 3" in report["reason"]
    assert (
        "spirals: train accuracy >= 0.97 and loss <= 0.1 not reached within --max-epochs 3"
        in (report["reason"])
    )


def test_time_limit_fails_instead_of_running_on() -> None:
    start = time.perf_counter()
    rc, report, _ = run_json("--backend", "numpy", "--max-seconds", "0.0005", "--max-epochs", "1000000")
    assert time.perf_counter() - start < 60
    assert rc == 1 and report["passed"] is False
    assert report["limits"]["max_seconds"] == 0.0005
    for task in report["tasks"].values():
        assert task["stopped"] == "max-seconds" and task["passed"] is False
    assert "stopped by --max-seconds 0.0005" in report["reason"]


def test_xor_restarts_from_fresh_weights_when_stuck() -> None:
    # Seed 4 draws weights from which 1000 epochs of gradient descent do not separate XOR.
    rc, report, _ = run_json("--backend", "numpy", "--seed", "4")
    assert rc == 0, report["reason"]
    xor = report["tasks"]["xor"]
    assert xor["restarts"] == 1 and xor["epochs"] > 1000 and xor["accuracy"] == 1.0


def test_cuda_with_numpy_backend_is_unavailable() -> None:
    rc, report, _ = run_json("--backend", "numpy", "--device", "cuda")
    assert rc == 3 and report["passed"] is False
    assert "the numpy backend runs on the CPU only" in report["reason"]
    assert report["tasks"] == {"xor": None, "spirals": None}
    rc, out, err = run_script("--backend", "numpy", "--device", "cuda")
    assert rc == 3 and "Traceback" not in out + err
    assert "FAILED (exit 3)" in out and "numpy backend runs on the CPU only" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-epochs", "0"], "--max-epochs: must be >= 1"),
        (["--max-seconds", "-1"], "--max-seconds: must be a finite number > 0"),
        (["--max-seconds", "nan"], "--max-seconds: must be a finite number > 0"),
        (["--seed", "x"], "--seed: not an integer"),
        (["--device", "tpu"], "--device: invalid choice"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    rc, report, _ = run_json(*args)
    assert rc == 2 and report["passed"] is False
    assert report["reason"].startswith("usage error: ") and message in report["reason"]
    rc, out, err = run_script(*args)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert message in err and err.startswith("usage: mlp_check.py")


@pytest.mark.parametrize(
    "error",
    [
        "ModuleNotFoundError(\"No module named 'torch'\")",
        "OSError('libcudart.so.12: cannot open shared object')",
    ],
)
def test_without_torch_auto_uses_numpy_and_torch_requests_fail(tmp_path: Path, error: str) -> None:
    env = without_torch_env(tmp_path, error)
    rc, report, _ = run_json("--seed", "2", env=env)
    assert rc == 0, report["reason"]
    assert (report["backend"], report["device"]) == ("numpy", "cpu")
    assert report["versions"]["torch"] is None
    assert any(note.startswith("torch is not importable (") for note in report["notes"])

    rc, report, _ = run_json("--backend", "torch", env=env)
    assert rc == 3 and report["reason"].startswith("--backend torch: torch is not importable (")
    assert error.split("(")[0] in report["reason"]

    rc, report, _ = run_json("--device", "cuda", env=env)
    assert rc == 3 and report["reason"].startswith("--device cuda needs torch, and torch is not importable")


def test_backprop_matches_finite_differences(mlp: ModuleType) -> None:
    problem = mlp.make_problem(np, 5)
    rng = np.random.default_rng(11)
    models = [
        mlp.NumpyMLP(np, mlp.TASKS["xor"], *problem.data["xor"], mlp.xor_weights(rng)),
        mlp.NumpyMLP(np, mlp.TASKS["spirals"], *problem.data["spirals"], problem.spirals_init),
    ]
    for model in models:
        model.evaluate()
        analytic = model.gradients()
        for param, grad in zip(model.params, analytic, strict=True):
            flat, flat_grad = param.reshape(-1), grad.reshape(-1)
            for i in range(0, flat.size, max(1, flat.size // 12)):
                saved = flat[i]
                flat[i] = saved + 1e-6
                up = model.evaluate()[0]
                flat[i] = saved - 1e-6
                down = model.evaluate()[0]
                flat[i] = saved
                numeric = (up - down) / 2e-6
                assert abs(numeric - flat_grad[i]) <= 1e-6 + 1e-5 * abs(numeric), (model.task, i)


# ------------------------------------------------------------------------------------------------
# torch backend (CPU)
# ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("torch_required")
def test_torch_cpu_converges_and_is_deterministic() -> None:
    rc, first, _ = run_json("--backend", "torch", "--device", "cpu", "--seed", "3")
    assert rc == 0, first["reason"]
    assert (first["backend"], first["device"], first["gpu_name"]) == ("torch", "cpu", None)
    assert first["versions"]["torch"] and first["agreement"] is None
    for task in first["tasks"].values():
        assert task["passed"] is True and task["tensor_device"] == "cpu"
    assert first["tasks"]["xor"]["accuracy"] == 1.0 and first["tasks"]["spirals"]["accuracy"] >= 0.97
    rc, second, _ = run_json("--backend", "torch", "--device", "cpu", "--seed", "3")
    assert rc == 0 and numbers(second) == numbers(first)


@pytest.mark.usefixtures("torch_required")
def test_torch_cuda_unavailable_quotes_torch() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is usable here: the unavailable-CUDA path cannot be exercised")
    rc, report, _ = run_json("--backend", "torch", "--device", "cuda")
    assert rc == 3 and report["passed"] is False
    assert report["versions"]["torch"] == torch.__version__
    assert report["reason"].startswith("--device cuda: torch ")
    if torch.version.cuda is None:
        assert "is a CPU-only build (torch.version.cuda is None): " in report["reason"]
        # torch's own words, e.g. "AssertionError: Torch not compiled with CUDA enabled"
        assert "not compiled with CUDA" in report["reason"]
    else:
        assert f"(built for CUDA {torch.version.cuda}) cannot use CUDA: " in report["reason"]

    rc, auto, _ = run_json("--device", "auto", "--max-epochs", "2")
    assert (auto["backend"], auto["device"]) == ("torch", "cpu")
    assert any(note.startswith("CUDA not used: torch ") for note in auto["notes"])
    assert rc == 1


@pytest.mark.usefixtures("torch_required")
def test_torch_and_numpy_implementations_agree() -> None:
    # In a fresh interpreter: once other tests have imported ansible (which patches sys.intern), importing
    # torch in this process fails inside torch._dynamo ("substitute_in_graph expects a function").
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); import tests.test_mlp_check as t; "
    code += "t._implementations_agree(t.load_mlp()); print('agree-ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0 and "agree-ok" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def _implementations_agree(mlp: ModuleType) -> None:
    import torch

    limits = mlp.Limits(max_epochs=20000, deadline=time.perf_counter() + 120)
    problem = mlp.make_problem(np, 0)
    by_torch = mlp.run_tasks(np, mlp.TorchBackend(torch, "cpu"), problem, limits)
    by_numpy = mlp.run_tasks(np, mlp.NumpyBackend(np), problem, limits)
    agreement = mlp.compare_runs(by_torch, by_numpy, "numpy")
    assert agreement["passed"], agreement["failures"]
    assert agreement["tasks"]["xor"]["loss_diff"] < 1e-4
    assert agreement["tasks"]["xor"]["prediction_agreement"] == 1.0

    # A reference that stopped after 3 epochs did not train: the agreement check must say so. Its first
    # losses are those of the full run (same data, same weights), so only the outcome differs.
    short = mlp.Limits(max_epochs=3, deadline=time.perf_counter() + 120)
    untrained = mlp.run_tasks(np, mlp.NumpyBackend(np), problem, short)
    disagreement = mlp.compare_runs(by_torch, untrained, "numpy, 3 epochs")
    assert not disagreement["passed"]
    assert "spirals: the numpy, 3 epochs run did not meet the criterion" in disagreement["failures"]
    assert any(f.startswith("spirals: predictions agree on") for f in disagreement["failures"])
    spirals = disagreement["tasks"]["spirals"]
    assert spirals["compared_epochs"] == 4 and spirals["loss_diff"] < 1e-4

    # A loss trajectory that leaves the tolerance fails the check.
    by_numpy["spirals"].loss_history[10] += 0.2
    drifted = mlp.compare_runs(by_torch, by_numpy, "numpy")
    assert [f for f in drifted["failures"] if f.startswith("spirals: losses over the first")]
    assert not drifted["passed"] and drifted["tasks"]["xor"]["passed"]


def test_without_numpy_the_check_is_unavailable(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "numpy"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'numpy'\")\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shadow.parent)}
    rc, report, _ = run_json("--backend", "numpy", env=env)
    assert rc == 3 and report["versions"]["numpy"] is None
    assert report["reason"] == "numpy is not importable (ModuleNotFoundError: No module named 'numpy')"
