"""gpulab MLP training check: prove that this Python environment can really train a model, on the GPU
when there is one.

Two synthetic tasks, each trained until its criterion holds (bounded by --max-epochs / --max-seconds):

* ``xor``: 2-3-1 sigmoid MLP, full-batch gradient descent (lr 4), until the 4 XOR points are classified
  correctly. A 2-3-1 net can stall on a plateau: after 1000 epochs it re-draws its weights (``restarts``).
* ``spirals``: two interleaved spirals (200 points, generated from the seed), 2-32-32-1 ReLU MLP, Adam,
  until train accuracy >= 0.97 and loss <= 0.10; ``test_accuracy`` on 200 held-out points.

Backends: ``numpy`` (float64, hand-written backpropagation and Adam, CPU) and ``torch`` (float32, autograd,
torch.optim, on ``cpu`` or ``cuda``); data and initial weights come from numpy and the seed, so every backend
starts from the same point. On CUDA the check proves the GPU trained: the trained tensors must be on the GPU
and a torch-on-CPU run of the same seed must agree (losses per epoch, final predictions).

Exit codes: 0 passed, 1 a criterion failed, 2 usage error, 3 backend or device unavailable, 4 internal
error, 130 interrupted. ``--json`` prints exactly one JSON object (docs/mlp-check.md).
Shipped by the gpulab ``dl_env`` role; Python 3.10+ with numpy >= 1.22; torch is optional.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2
EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

XOR_EPOCHS_PER_ATTEMPT = 1000
SPIRALS_POINTS, SPIRALS_TURNS, SPIRALS_NOISE = 200, 2.0, 0.02
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


@dataclass(frozen=True)
class Task:
    sizes: tuple[int, ...]
    activation: str  # of the hidden layers; the output is a logit (binary cross-entropy)
    optimizer: str  # sgd | adam
    lr: float
    min_accuracy: float  # the criterion: train accuracy >= min_accuracy and loss <= max_loss
    max_loss: float = math.inf

    @property
    def criterion(self) -> str:
        if self.max_loss == math.inf:
            return f"all {2 ** self.sizes[0]} XOR points classified correctly"
        return f"train accuracy >= {self.min_accuracy} and loss <= {self.max_loss}"


TASKS = {
    "xor": Task((2, 3, 1), "sigmoid", "sgd", 4.0, min_accuracy=1.0),
    "spirals": Task((2, 32, 32, 1), "relu", "adam", 0.02, min_accuracy=0.97, max_loss=0.10),
}
# Agreement of a CUDA run with the CPU run of the same seed (tolerances measured, docs/mlp-check.md).
AGREEMENT_MIN_PREDICTION = 0.95
AGREEMENT_LOSS_TOLERANCE = {"xor": 0.01, "spirals": 0.1}
LOSS_CURVE_POINTS = 100  # [epoch, loss] points in the JSON (`gpulab report --html` draws them)


class UsageError(Exception):
    """Bad command line."""


class Unavailable(Exception):
    """The requested backend or device cannot be used here."""


def _one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _quote(exc: BaseException) -> str:
    message = _one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# -- command line ----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit
        raise UsageError(message)


def _number(kind: type, minimum: float, strict: bool = False) -> Any:
    """An argparse type: a finite `kind` >= minimum (> when strict)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not {'an integer' if kind is int else 'a number'}: {text!r}"
            ) from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            what = f"a finite number > {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlp_check.py",
        allow_abbrev=False,
        description="Train two small MLPs (XOR, two spirals) and check that they learn. Exit: 0 passed, "
        "1 failed, 2 usage error, 3 backend or device unavailable, 4 internal error, 130 interrupted.",
    )
    add = parser.add_argument
    add("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when usable")
    add("--backend", choices=("auto", "numpy", "torch"), default="auto", help="auto: torch if it imports")
    add("--seed", type=_number(int, 0), default=0, help="seed for data and weights (default 0)")
    add("--max-epochs", type=_number(int, 1), default=20000, help="epoch limit per task (default 20000)")
    add("--max-seconds", type=_number(float, 0, strict=True), default=300.0, help="time limit (default 300)")
    add("--json", action="store_true", help="print one JSON object instead of text")
    return parser


# -- data and initial weights (numpy, float64, the same for every backend) ---------------------------
def _spirals(np: Any, rng: Any, n: int) -> tuple[Any, Any]:
    """Two interleaved spirals of SPIRALS_TURNS turns in [-1, 1]^2; labels alternate 0/1."""
    radius = 0.15 + 0.85 * np.sqrt(rng.uniform(0.0, 1.0, n))
    label = np.arange(n) % 2
    angle = radius * SPIRALS_TURNS * 2.0 * math.pi + label * math.pi
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) + rng.normal(
        0.0, SPIRALS_NOISE, (n, 2)
    )
    return x, label.reshape(-1, 1).astype(np.float64)


@dataclass
class Problem:
    """Everything a run needs, drawn once from the seed."""

    data: dict[str, tuple[Any, Any]]
    held_out: dict[str, Any]  # extra points whose predictions are compared (and scored for spirals)
    xor_seed: Any  # SeedSequence of the stream of XOR weights (restarts draw more)
    spirals_init: list[Any]


def make_problem(np: Any, seed: int) -> Problem:
    xor_seq, spirals_seq, test_seq = np.random.SeedSequence(seed).spawn(3)
    xor = (np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), np.array([[0.0], [1.0], [1.0], [0.0]]))
    rng = np.random.default_rng(spirals_seq)
    spirals = _spirals(np, rng, SPIRALS_POINTS)
    init: list[Any] = []
    sizes = TASKS["spirals"].sizes
    for fan_in, fan_out in itertools.pairwise(sizes):  # Glorot-uniform weights, zero biases
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        init += [rng.uniform(-bound, bound, (fan_in, fan_out)), np.zeros(fan_out)]
    test = _spirals(np, np.random.default_rng(test_seq), SPIRALS_POINTS)
    return Problem({"xor": xor, "spirals": spirals}, {"spirals": test}, xor_seq, init)


def xor_weights(rng: Any) -> list[Any]:
    sizes = TASKS["xor"].sizes
    return [rng.uniform(-1.0, 1.0, shape) for a, b in itertools.pairwise(sizes) for shape in ((a, b), b)]


# -- numpy backend: float64, hand-written backpropagation, SGD / Adam (torch's formula) --------------
def _np_sigmoid(np: Any, z: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow warnings


class NumpyMLP:
    def __init__(self, np: Any, task: Task, x: Any, y: Any, params: list[Any]) -> None:
        self.np, self.task, self.device = np, task, "cpu"
        self.x, self.y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        self._cache: tuple[list[Any], list[Any], Any] | None = None

    def _forward(self, x: Any) -> tuple[list[Any], list[Any], Any]:
        """Pre-activations and outputs of the hidden layers (input first), and the output logits."""
        pre, out = [], [x]
        for w, b in zip(self.params[0:-2:2], self.params[1:-2:2], strict=True):
            pre.append(out[-1] @ w + b)
            out.append(
                _np_sigmoid(self.np, pre[-1])
                if self.task.activation == "sigmoid"
                else self.np.maximum(pre[-1], 0.0)
            )
        return pre, out, out[-1] @ self.params[-2] + self.params[-1]

    def evaluate(self) -> tuple[float, float]:
        self._cache = self._forward(self.x)
        z = self._cache[2]
        loss = float(self.np.mean(self.np.logaddexp(0.0, z) - self.y * z))  # mean BCE on logits
        return loss, float(self.np.mean((z > 0) == (self.y > 0.5)))

    def gradients(self) -> list[Any]:
        """d loss / d params at the last evaluate()."""
        if self._cache is None:
            self.evaluate()
        assert self._cache is not None
        pre, out, z = self._cache
        grad = (_np_sigmoid(self.np, z) - self.y) / len(self.x)  # d BCE / d logit
        grads: list[Any] = []
        for layer in range(len(out) - 1, -1, -1):
            grads[:0] = [out[layer].T @ grad, grad.sum(axis=0)]
            if layer:
                back = grad @ self.params[2 * layer].T
                h = out[layer]
                grad = (
                    back * h * (1.0 - h) if self.task.activation == "sigmoid" else back * (pre[layer - 1] > 0)
                )
        return grads

    def step(self) -> None:
        grads, lr = self.gradients(), self.task.lr
        if self.task.optimizer == "sgd":
            for param, grad in zip(self.params, grads, strict=True):
                param -= lr * grad
        else:
            (b1, b2), self.t = ADAM_BETAS, self.t + 1
            for i, grad in enumerate(grads):
                self.m[i] = b1 * self.m[i] + (1.0 - b1) * grad
                self.v[i] = b2 * self.v[i] + (1.0 - b2) * grad * grad
                denom = self.np.sqrt(self.v[i]) / math.sqrt(1.0 - b2**self.t) + ADAM_EPS
                self.params[i] -= (lr / (1.0 - b1**self.t)) * self.m[i] / denom
        self._cache = None

    def logits(self, x: Any) -> list[float]:
        return [float(v) for v in self._forward(self.np.asarray(x, dtype=self.np.float64))[2].reshape(-1)]


class NumpyBackend:
    name, device = "numpy", "cpu"

    def __init__(self, np: Any) -> None:
        self.np = np

    def model(self, task: Task, x: Any, y: Any, params: list[Any]) -> NumpyMLP:
        return NumpyMLP(self.np, task, x, y, params)

    def synchronize(self) -> None:
        return None


# -- torch backend: float32, autograd, torch.optim ---------------------------------------------------
class TorchMLP:
    def __init__(self, torch: Any, device: str, task: Task, x: Any, y: Any, params: list[Any]) -> None:
        self.torch, self.task = torch, task
        self.params = [
            torch.tensor(p, dtype=torch.float32, device=device).requires_grad_(True) for p in params
        ]
        self.x = torch.tensor(x, dtype=torch.float32, device=device)
        self.y = torch.tensor(y, dtype=torch.float32, device=device)
        if task.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.params, lr=task.lr)
        else:
            self.optimizer = torch.optim.Adam(self.params, lr=task.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        self.device = str(self.params[0].device)
        self._loss: Any = None

    def _forward(self, x: Any) -> Any:
        act = self.torch.sigmoid if self.task.activation == "sigmoid" else self.torch.relu
        for w, b in zip(self.params[0:-2:2], self.params[1:-2:2], strict=True):
            x = act(x @ w + b)
        return x @ self.params[-2] + self.params[-1]

    def evaluate(self) -> tuple[float, float]:
        z = self._forward(self.x)
        self._loss = self.torch.nn.functional.binary_cross_entropy_with_logits(z, self.y)
        correct = ((z > 0) == (self.y > 0.5)).sum().to(self._loss.dtype)
        loss, count = self.torch.stack([self._loss.detach(), correct]).tolist()  # one device sync
        return float(loss), int(count) / int(self.y.shape[0])

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._loss.backward()
        self.optimizer.step()

    def logits(self, x: Any) -> list[float]:
        with self.torch.no_grad():
            out = self._forward(self.torch.tensor(x, dtype=self.torch.float32, device=self.x.device))
        return [float(v) for v in out.reshape(-1).tolist()]


class TorchBackend:
    name = "torch"

    def __init__(self, torch: Any, device: str) -> None:
        self.torch, self.device = torch, device
        # The first backward pass and optimizer step set up much of torch (seconds): not the tasks' time.
        probe = torch.zeros(2, device=device, requires_grad=True)
        (probe * probe).sum().backward()
        torch.optim.Adam([probe], lr=0.0).step()
        self.synchronize()

    def model(self, task: Task, x: Any, y: Any, params: list[Any]) -> TorchMLP:
        return TorchMLP(self.torch, self.device, task, x, y, params)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()


# -- training and agreement --------------------------------------------------------------------------
@dataclass
class Limits:
    max_epochs: int
    deadline: float  # time.perf_counter() value


@dataclass
class TaskResult:
    name: str
    passed: bool = False
    stopped: str = "not-run"  # converged | max-epochs | max-seconds
    loss: float | None = None
    accuracy: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    tensor_device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    predictions: list[int] = field(default_factory=list)  # classes at the end (train, then held-out points)
    loss_history: list[float] = field(default_factory=list)  # the loss before every update

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "criterion": TASKS[self.name].criterion,
            "stopped": self.stopped,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 6),
            "tensor_device": self.tensor_device,
            "loss_history": loss_curve(self.loss_history),
            **self.extra,
        }

    def failure(self, args: argparse.Namespace) -> str | None:
        if self.passed:
            return None
        state = (
            f"loss {self.loss:.4g}, accuracy {self.accuracy:.3f}" if self.loss is not None else "no result"
        )
        criterion = TASKS[self.name].criterion
        if self.stopped == "max-seconds":
            return (
                f"{self.name}: stopped by --max-seconds {args.max_seconds:g} after {self.epochs} epochs "
                f"before {criterion} ({state})"
            )
        return f"{self.name}: {criterion} not reached within --max-epochs {args.max_epochs} ({state})"


def loss_curve(history: list[float]) -> list[list[float]]:
    """[epoch, loss] pairs for a plot: every k-th epoch (<= LOSS_CURVE_POINTS of them) and the last one."""
    picked = list(range(0, len(history), max(1, -(-len(history) // LOSS_CURVE_POINTS))))
    if history and picked[-1] != len(history) - 1:
        picked.append(len(history) - 1)
    return [[i + 1, round(history[i], 6)] for i in picked]


def train(np: Any, backend: Any, problem: Problem, name: str, limits: Limits) -> TaskResult:
    task, (x, y), result = TASKS[name], problem.data[name], TaskResult(name)
    xor_rng = np.random.default_rng(problem.xor_seed)
    start, restarts, attempt, model = time.perf_counter(), -1, 0, None
    while True:
        if model is None or (name == "xor" and attempt >= XOR_EPOCHS_PER_ATTEMPT):
            model = backend.model(task, x, y, xor_weights(xor_rng) if name == "xor" else problem.spirals_init)
            restarts, attempt = restarts + 1, 0
        loss, accuracy = model.evaluate()
        result.loss_history.append(loss)
        if accuracy >= task.min_accuracy and loss <= task.max_loss:
            result.stopped = "converged"
        elif result.epochs >= limits.max_epochs:
            result.stopped = "max-epochs"
        elif time.perf_counter() >= limits.deadline:
            result.stopped = "max-seconds"
        else:
            model.step()
            result.epochs, attempt = result.epochs + 1, attempt + 1
            continue
        break
    backend.synchronize()
    result.seconds = time.perf_counter() - start
    result.passed, result.loss, result.accuracy = result.stopped == "converged", loss, accuracy
    result.tensor_device = model.device
    result.predictions = [int(v > 0) for v in model.logits(x)]
    if name == "xor":
        result.extra = {"restarts": restarts}
    else:
        test_x, test_y = problem.held_out[name]
        held_out = [int(v > 0) for v in model.logits(test_x)]
        result.predictions += held_out
        hits = sum(int(p == t) for p, t in zip(held_out, test_y.reshape(-1).tolist(), strict=True))
        result.extra = {"test_accuracy": hits / len(held_out)}
    return result


def run_tasks(np: Any, backend: Any, problem: Problem, limits: Limits) -> dict[str, TaskResult]:
    return {name: train(np, backend, problem, name, limits) for name in TASKS}


def compare_runs(
    primary: dict[str, TaskResult], reference: dict[str, TaskResult], label: str
) -> dict[str, Any]:
    """Agreement of two runs of the same seed, per task: the reference met its criterion, the losses after
    the same number of updates (over the epochs both did) are within AGREEMENT_LOSS_TOLERANCE, and the final
    class predictions agree on >= AGREEMENT_MIN_PREDICTION of the points."""
    tasks: dict[str, Any] = {}
    failures: list[str] = []
    for name in TASKS:
        a, b = primary[name], reference[name]
        total = max(len(a.predictions), len(b.predictions))
        agreement = (
            sum(int(p == q) for p, q in zip(a.predictions, b.predictions, strict=False)) / total
            if total
            else 0.0
        )
        common = min(len(a.loss_history), len(b.loss_history))
        pairs = zip(a.loss_history[:common], b.loss_history[:common], strict=True)
        loss_diff = max((abs(p - q) for p, q in pairs), default=None)
        tolerance = AGREEMENT_LOSS_TOLERANCE[name]
        problems = [f"the {label} run did not meet the criterion"] if not b.passed else []
        if loss_diff is None or loss_diff > tolerance:
            problems.append(
                f"losses over the first {common} epochs differ by up to {loss_diff} (tolerance {tolerance})"
            )
        if agreement < AGREEMENT_MIN_PREDICTION:
            problems.append(f"predictions agree on {agreement:.1%} (< {AGREEMENT_MIN_PREDICTION:.0%})")
        tasks[name] = {
            "passed": not problems,
            "reference_passed": b.passed,
            "reference_loss": b.loss,
            "reference_epochs": b.epochs,
            "reference_loss_history": loss_curve(b.loss_history),
            "compared_epochs": common,
            "loss_diff": loss_diff,
            "loss_tolerance": tolerance,
            "prediction_agreement": agreement,
        }
        failures += [f"{name}: {p}" for p in problems]
    return {"reference": label, "passed": not failures, "min_prediction_agreement": AGREEMENT_MIN_PREDICTION,
            "tasks": tasks, "failures": failures}  # fmt: skip


# -- backend and device selection --------------------------------------------------------------------
def import_torch() -> tuple[Any, str | None]:
    """(torch, None) or (None, why it did not import)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]
    except Exception as exc:  # ImportError, or OSError for a broken native library
        return None, _quote(exc)
    return torch, None


def cuda_unusable_reason(torch: Any) -> str | None:
    """None when torch can run a kernel on CUDA, else the reason in torch's own words."""
    version = getattr(torch, "__version__", "?")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = bool(torch.cuda.is_available())
        except Exception as exc:
            return f"torch {version}: torch.cuda.is_available() raised {_quote(exc)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.cuda.init()
            torch.zeros(1, device="cuda")
            torch.cuda.synchronize()
    except Exception as exc:
        quoted = _quote(exc)
    else:
        if available:
            return None
        quoted = "torch.cuda.is_available() is False"
    built = getattr(torch.version, "cuda", None) and f"CUDA {torch.version.cuda}"
    built = built or (getattr(torch.version, "hip", None) and f"HIP {torch.version.hip}")
    head = f"torch {version} (built for {built}) cannot use CUDA" if built else (
        f"torch {version} is a CPU-only build (torch.version.cuda is None)"
    )  # fmt: skip
    parts = [f"{head}: {quoted}"] + [
        f"torch warned: {m}" for w in caught if (m := _one_line(str(w.message))) not in quoted
    ]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        parts.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}")
    return _one_line("; ".join(parts))


def select(backend: str, device: str, torch: Any, import_error: str | None) -> tuple[str, str, list[str]]:
    """(backend, device, notes) for --backend/--device given import_torch(); else Unavailable(reason)."""
    if backend == "numpy" and device == "cuda":
        raise Unavailable(
            "--device cuda needs the torch backend: the numpy backend runs on the CPU only "
            "(use --backend torch or --backend auto)"
        )
    if backend == "numpy":
        return "numpy", "cpu", []
    if torch is None:
        if backend == "torch":
            raise Unavailable(f"--backend torch: torch is not importable ({import_error})")
        if device == "cuda":
            raise Unavailable(f"--device cuda needs torch, and torch is not importable ({import_error})")
        return "numpy", "cpu", [f"torch is not importable ({import_error}); used numpy"]
    reason = None if device == "cpu" else cuda_unusable_reason(torch)
    if device == "cpu" or reason is None:
        return "torch", device if device == "cpu" else "cuda", []
    if device == "cuda":
        raise Unavailable(f"--device cuda: {reason}")
    return "torch", "cpu", [f"CUDA not used: {reason}"]


# -- the check and its report --------------------------------------------------------------------------
def base_report() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": False,
        "exit_code": EXIT_INTERNAL,
        "reason": None,
        "backend": None,
        "device": None,
        "gpu_name": None,
        "requested": {"backend": None, "device": None},
        "seed": None,
        "limits": {"max_epochs": None, "max_seconds": None},
        "tasks": dict.fromkeys(TASKS),
        "agreement": None,
        "peak_gpu_memory_bytes": None,
        "versions": {"python": platform.python_version(), "numpy": None, "torch": None, "cuda_runtime": None},
        "python_executable": sys.executable,
        "notes": [],
    }


def run_check(args: argparse.Namespace, report: dict[str, Any]) -> int:
    report.update(requested={"backend": args.backend, "device": args.device}, seed=args.seed)
    report["limits"] = {"max_epochs": args.max_epochs, "max_seconds": args.max_seconds}
    try:
        import numpy as np
    except Exception as exc:
        raise Unavailable(f"numpy is not importable ({_quote(exc)})") from None
    report["versions"]["numpy"] = np.__version__
    torch, import_error = import_torch() if args.backend != "numpy" else (None, None)
    if torch is not None:
        report["versions"].update(torch=torch.__version__, cuda_runtime=getattr(torch.version, "cuda", None))
    report["backend"], report["device"], notes = select(args.backend, args.device, torch, import_error)
    report["notes"] += notes
    cuda = report["device"] == "cuda"
    if report["backend"] == "torch":
        torch.manual_seed(args.seed)
        backend: Any = TorchBackend(torch, report["device"])
        if cuda:
            report["gpu_name"] = torch.cuda.get_device_name(torch.cuda.current_device())
            torch.cuda.reset_peak_memory_stats()
    else:
        backend = NumpyBackend(np)
    problem = make_problem(np, args.seed)
    limits = Limits(max_epochs=args.max_epochs, deadline=time.perf_counter() + args.max_seconds)
    run = run_tasks(np, backend, problem, limits)
    report["tasks"] = {name: task.to_json() for name, task in run.items()}
    failures = [text for text in (task.failure(args) for task in run.values()) if text]
    if cuda:
        report["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        reference = run_tasks(np, TorchBackend(torch, "cpu"), problem, limits)
        report["agreement"] = compare_runs(run, reference, "torch on cpu, same seed")
        failures += [f"agreement with the CPU run: {text}" for text in report["agreement"]["failures"]]
        devices = sorted({str(task.tensor_device) for task in run.values()})
        if not all(d.startswith("cuda") for d in devices):
            failures.append(f"tensors were not on the GPU: {devices}")
    report["reason"] = "; ".join(failures) or None
    return EXIT_FAILED if failures else EXIT_PASSED


def render_text(report: dict[str, Any]) -> str:
    lines = [f"gpulab MLP check: {'PASSED' if report['passed'] else 'FAILED'} (exit {report['exit_code']})"]
    if report["backend"]:
        where = report["device"] + (f" ({report['gpu_name']})" if report["gpu_name"] else "")
        lines.append(f"  backend {report['backend']} on {where}, seed {report['seed']}")
    for name, task in report["tasks"].items():
        if task:
            extra = ", ".join(
                f"{k.replace('_', ' ')} {v:g}" for k, v in task.items() if k in ("restarts", "test_accuracy")
            )
            lines.append(
                f"  {name:<8} {'ok  ' if task['passed'] else 'FAIL'}  loss {task['loss']:.4f}  accuracy "
                f"{task['accuracy']:.3f}  epochs {task['epochs']}  {task['seconds']:.3f} s"
                f"  on {task['tensor_device']}"
                f"  {extra}\n           criterion: {task['criterion']} ({task['stopped']})"
            )
    if report["peak_gpu_memory_bytes"] is not None:
        lines.append(f"  peak GPU memory {report['peak_gpu_memory_bytes'] / 2**20:.1f} MiB")
    if report["agreement"]:
        agreement = report["agreement"]
        diffs = ", ".join(f"{n} loss diff {e['loss_diff']:.2g} predictions {e['prediction_agreement']:.1%}"
                          for n, e in agreement["tasks"].items() if e["loss_diff"] is not None)  # fmt: skip
        lines.append(
            f"  agreement with {agreement['reference']}: {'ok' if agreement['passed'] else 'FAIL'} ({diffs})"
        )
    lines.append("  versions: " + ", ".join(f"{k} {v or '-'}" for k, v in report["versions"].items()))
    lines += [f"  note: {note}" for note in report["notes"]]
    if report["reason"]:
        lines.append(f"reason: {report['reason']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    report, parser = base_report(), build_parser()
    try:
        code = run_check(parser.parse_args(argv), report)
    except UsageError as exc:
        code, report["reason"] = EXIT_USAGE, f"usage error: {exc}"
        if "--json" not in argv:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return code
    except Unavailable as exc:
        code, report["reason"] = EXIT_UNAVAILABLE, str(exc)
    except KeyboardInterrupt:
        code, report["reason"] = EXIT_INTERRUPTED, "interrupted"
    except Exception as exc:  # never a traceback: one line an admin can act on
        code, report["reason"] = EXIT_INTERNAL, f"internal error: {_quote(exc)}"
    report.update(exit_code=code, passed=code == EXIT_PASSED)
    print(json.dumps(report) if "--json" in argv else render_text(report), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
