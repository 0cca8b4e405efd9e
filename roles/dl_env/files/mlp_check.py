#!/usr/bin/env python3
"""gpulab MLP training check: prove that this Python environment can really train a model.

Runs two small, fully synthetic training tasks and reports whether each met its stated criterion:

* ``xor``: a 2-3-1 sigmoid MLP trained by full-batch gradient descent (binary cross-entropy, hand-written
  backpropagation in the numpy backend) until all four XOR points are classified correctly; the output for
  the probe input ``[0.5, 0.5]`` is reported.
* ``spirals``: two interleaved spirals (2 turns, 200 points, generated here) fitted by a 2-32-32-1 ReLU MLP
  with Adam until train accuracy >= 0.97 and loss <= 0.10.

Backends: ``numpy`` (always; CPU, float64) and ``torch`` (float32, on ``cpu`` or ``cuda``). On CUDA the run
proves the GPU trained: the tensors' device, the GPU's name, agreement with a CPU run of the same seed,
throughput and peak GPU memory. Deterministic for a seed. Bounded by ``--max-epochs`` and ``--max-seconds``.

Exit codes: 0 all criteria passed, 1 a criterion failed, 2 usage error, 3 backend or device unavailable,
4 internal error, 130 interrupted. ``--json`` prints exactly one JSON object (see docs/mlp-check.md).

Shipped by the gpulab ``dl_env`` role; runs on Python 3.10+ with numpy >= 1.22; torch is optional.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130

DEFAULT_SEED = 0
DEFAULT_MAX_EPOCHS = 20000
DEFAULT_MAX_SECONDS = 300.0

# XOR task: the seed program's 2-3-1 sigmoid network, trained correctly.
XOR_HIDDEN = 3
XOR_LEARNING_RATE = 4.0
XOR_INIT_SCALE = 1.0
XOR_EPOCHS_PER_ATTEMPT = 1000  # a 2-3-1 sigmoid net can stall in a plateau: re-draw the weights after this
XOR_PROBE = (0.5, 0.5)

# Spirals task.
SPIRALS_POINTS = 200
SPIRALS_TEST_POINTS = 200
SPIRALS_TURNS = 2.0
SPIRALS_NOISE = 0.02
SPIRALS_HIDDEN = 32
SPIRALS_LEARNING_RATE = 0.02
SPIRALS_MIN_ACCURACY = 0.97
SPIRALS_MAX_LOSS = 0.10
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8

# Agreement between a CUDA run and a CPU run (torch, same seed).
AGREEMENT_MIN_PREDICTION = 0.95
AGREEMENT_LOSS_TOLERANCE = {"xor": 0.01, "spirals": 0.1}
AGREEMENT_PROBE_TOLERANCE = 0.05

# The JSON's loss curve (drawn by `gpulab report --html`): at most this many [epoch, loss] points.
LOSS_CURVE_POINTS = 100

# Throughput: training steps of the spirals network on one large batch.
THROUGHPUT_BATCH = 16384
THROUGHPUT_WARMUP_STEPS = 3
THROUGHPUT_STEPS = 20

TASKS = ("xor", "spirals")
REASON_MAX_CHARS = 600


class UsageError(Exception):
    """Bad command line."""


class Unavailable(Exception):
    """The requested backend or device cannot be used here."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit
        raise UsageError(message)


def _one_line(text: str, limit: int = REASON_MAX_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _quote(exc: BaseException) -> str:
    message = _one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlp_check.py",
        allow_abbrev=False,
        description="Train two small MLPs (XOR, two spirals) and check that they learn; exit 0 only if "
        "every criterion passed. Exit codes: 0 passed, 1 a criterion failed, 2 usage error, "
        "3 backend or device unavailable, 4 internal error, 130 interrupted.",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: cuda when torch can use it, else cpu (default: auto)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "numpy", "torch"),
        default="auto",
        help="auto: torch when it imports, else numpy (default: auto)",
    )
    parser.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=DEFAULT_SEED,
        help=f"seed for data and weights (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--max-epochs",
        type=_int_at_least(1),
        default=DEFAULT_MAX_EPOCHS,
        help=f"epoch limit per task (default: {DEFAULT_MAX_EPOCHS})",
    )
    parser.add_argument(
        "--max-seconds",
        type=_positive_seconds,
        default=DEFAULT_MAX_SECONDS,
        help=f"wall-clock limit for all training, in seconds (default: {DEFAULT_MAX_SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    name: str
    criterion: str
    passed: bool = False
    stopped: str = "not-run"  # converged | max-epochs | max-seconds
    loss: float | None = None
    accuracy: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    tensor_device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # For the agreement check, not in the JSON: class predictions (train points, then held-out points)
    # and the loss before every update.
    predictions: list[int] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": self.passed,
            "criterion": self.criterion,
            "stopped": self.stopped,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 6),
            "tensor_device": self.tensor_device,
            "loss_history": loss_curve(self.loss_history),
        }
        out.update(self.extra)
        return out


def loss_curve(history: list[float]) -> list[list[float]]:
    """[epoch, loss] pairs for a plot: every k-th epoch (<= LOSS_CURVE_POINTS of them) and the last one."""
    step = max(1, -(-len(history) // LOSS_CURVE_POINTS))
    picked = list(range(0, len(history), step))
    if history and picked[-1] != len(history) - 1:
        picked.append(len(history) - 1)
    return [[index + 1, round(history[index], 6)] for index in picked]


@dataclass
class RunResult:
    tasks: dict[str, TaskResult]
    throughput_samples_per_s: float | None = None
    peak_gpu_memory_bytes: int | None = None


@dataclass
class Limits:
    max_epochs: int
    deadline: float  # time.perf_counter() value


def _sigmoid(logit: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * logit))


def _classes(logits: Any) -> list[int]:
    return [int(v > 0) for v in logits.reshape(-1).tolist()]


# --------------------------------------------------------------------------------------------------
# Data and initial weights (numpy, float64, identical for every backend)
# --------------------------------------------------------------------------------------------------


def _xor_data(np: Any) -> tuple[Any, Any]:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    return x, y


def _xor_init(np: Any, rng: Any) -> list[Any]:
    s = XOR_INIT_SCALE
    return [
        rng.uniform(-s, s, (2, XOR_HIDDEN)),
        rng.uniform(-s, s, XOR_HIDDEN),
        rng.uniform(-s, s, (XOR_HIDDEN, 1)),
        rng.uniform(-s, s, 1),
    ]


def _spirals(np: Any, rng: Any, n: int) -> tuple[Any, Any]:
    """Two interleaved spirals of SPIRALS_TURNS turns in [-1, 1]^2; labels alternate 0/1."""
    radius = 0.15 + 0.85 * np.sqrt(rng.uniform(0.0, 1.0, n))
    label = np.arange(n) % 2
    angle = radius * SPIRALS_TURNS * 2.0 * math.pi + label * math.pi
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    x = x + rng.normal(0.0, SPIRALS_NOISE, (n, 2))
    return x, label.reshape(-1, 1).astype(np.float64)


def _spirals_init(np: Any, rng: Any) -> list[Any]:
    sizes = [2, SPIRALS_HIDDEN, SPIRALS_HIDDEN, 1]
    params: list[Any] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        params.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        params.append(np.zeros(fan_out))
    return params


@dataclass
class Problem:
    """Everything a backend needs, drawn once from the seed."""

    seed: int
    xor_x: Any
    xor_y: Any
    xor_rng_seed: Any  # numpy SeedSequence for the stream of XOR initial weights (restarts draw more)
    spirals_x: Any
    spirals_y: Any
    spirals_test_x: Any
    spirals_test_y: Any
    spirals_init: list[Any]
    bench_x: Any
    bench_y: Any


def make_problem(np: Any, seed: int) -> Problem:
    xor_seq, spirals_seq, test_seq, bench_seq = np.random.SeedSequence(seed).spawn(4)
    xor_x, xor_y = _xor_data(np)
    spirals_rng = np.random.default_rng(spirals_seq)
    sx, sy = _spirals(np, spirals_rng, SPIRALS_POINTS)
    init = _spirals_init(np, spirals_rng)
    tx, ty = _spirals(np, np.random.default_rng(test_seq), SPIRALS_TEST_POINTS)
    bx, by = _spirals(np, np.random.default_rng(bench_seq), THROUGHPUT_BATCH)
    return Problem(
        seed=seed,
        xor_x=xor_x,
        xor_y=xor_y,
        xor_rng_seed=xor_seq,
        spirals_x=sx,
        spirals_y=sy,
        spirals_test_x=tx,
        spirals_test_y=ty,
        spirals_init=init,
        bench_x=bx,
        bench_y=by,
    )


# --------------------------------------------------------------------------------------------------
# numpy backend (float64, hand-written backpropagation)
# --------------------------------------------------------------------------------------------------


def _np_sigmoid(np: Any, z: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow warnings


def _np_bce_with_logits(np: Any, z: Any, y: Any) -> float:
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


class NumpyXorModel:
    """2-3-1 MLP, sigmoid hidden and output, binary cross-entropy, plain gradient descent."""

    def __init__(self, np: Any, x: Any, y: Any, params: list[Any]) -> None:
        self.np = np
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.device = "cpu"
        self._cache: tuple[Any, Any] | None = None

    def _forward(self, x: Any) -> tuple[Any, Any]:
        w1, b1, w2, b2 = self.params
        hidden = _np_sigmoid(self.np, x @ w1 + b1)
        return hidden, hidden @ w2 + b2

    def evaluate(self) -> tuple[float, float]:
        hidden, z = self._forward(self.x)
        self._cache = (hidden, z)
        accuracy = float(self.np.mean((z > 0) == (self.y > 0.5)))
        return _np_bce_with_logits(self.np, z, self.y), accuracy

    def gradients(self) -> list[Any]:
        """d loss / d params at the last evaluate() (mean binary cross-entropy)."""
        if self._cache is None:
            self.evaluate()
        assert self._cache is not None
        hidden, z = self._cache
        _, _, w2, _ = self.params
        dz = (_np_sigmoid(self.np, z) - self.y) / len(self.x)  # d BCE / d logit
        dw2 = hidden.T @ dz
        db2 = dz.sum(axis=0)
        dpre = (dz @ w2.T) * hidden * (1.0 - hidden)  # sigmoid'(a) = s(a) (1 - s(a))
        dw1 = self.x.T @ dpre
        db1 = dpre.sum(axis=0)
        return [dw1, db1, dw2, db2]

    def step(self) -> None:
        for param, grad in zip(self.params, self.gradients(), strict=True):
            param -= XOR_LEARNING_RATE * grad
        self._cache = None

    def fast_step(self) -> None:
        self.evaluate()
        self.step()

    def logits(self, x: Any) -> list[float]:
        return [float(v) for v in self._forward(self.np.asarray(x, dtype=self.np.float64))[1].reshape(-1)]


class NumpySpiralsModel:
    """2-32-32-1 MLP, ReLU hidden layers, logit output, binary cross-entropy, Adam (torch's formula)."""

    def __init__(self, np: Any, x: Any, y: Any, params: list[Any]) -> None:
        self.np = np
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        self.device = "cpu"
        self._cache: tuple[Any, ...] | None = None

    def _forward(self, x: Any) -> tuple[Any, ...]:
        w1, b1, w2, b2, w3, b3 = self.params
        a1 = x @ w1 + b1
        h1 = self.np.maximum(a1, 0.0)
        a2 = h1 @ w2 + b2
        h2 = self.np.maximum(a2, 0.0)
        return a1, h1, a2, h2, h2 @ w3 + b3

    def evaluate(self) -> tuple[float, float]:
        self._cache = self._forward(self.x)
        z = self._cache[-1]
        accuracy = float(self.np.mean((z > 0) == (self.y > 0.5)))
        return _np_bce_with_logits(self.np, z, self.y), accuracy

    def gradients(self) -> list[Any]:
        if self._cache is None:
            self.evaluate()
        assert self._cache is not None
        a1, h1, a2, h2, z = self._cache
        _, _, w2, _, w3, _ = self.params
        dz = (_np_sigmoid(self.np, z) - self.y) / len(self.x)
        dw3 = h2.T @ dz
        db3 = dz.sum(axis=0)
        da2 = (dz @ w3.T) * (a2 > 0)
        dw2 = h1.T @ da2
        db2 = da2.sum(axis=0)
        da1 = (da2 @ w2.T) * (a1 > 0)
        dw1 = self.x.T @ da1
        db1 = da1.sum(axis=0)
        return [dw1, db1, dw2, db2, dw3, db3]

    def step(self) -> None:
        np = self.np
        self.t += 1
        correction1 = 1.0 - ADAM_BETA1**self.t
        correction2 = 1.0 - ADAM_BETA2**self.t
        for i, grad in enumerate(self.gradients()):
            self.m[i] = ADAM_BETA1 * self.m[i] + (1.0 - ADAM_BETA1) * grad
            self.v[i] = ADAM_BETA2 * self.v[i] + (1.0 - ADAM_BETA2) * grad * grad
            denom = np.sqrt(self.v[i]) / math.sqrt(correction2) + ADAM_EPS
            self.params[i] -= (SPIRALS_LEARNING_RATE / correction1) * self.m[i] / denom
        self._cache = None

    def fast_step(self) -> None:
        self.evaluate()
        self.step()

    def logits(self, x: Any) -> list[float]:
        return [float(v) for v in self._forward(self.np.asarray(x, dtype=self.np.float64))[-1].reshape(-1)]


class NumpyBackend:
    name = "numpy"

    def __init__(self, np: Any) -> None:
        self.np = np
        self.device = "cpu"

    def xor_model(self, x: Any, y: Any, params: list[Any]) -> Any:
        return NumpyXorModel(self.np, x, y, params)

    def spirals_model(self, x: Any, y: Any, params: list[Any]) -> Any:
        return NumpySpiralsModel(self.np, x, y, params)

    def synchronize(self) -> None:
        return None

    def reset_peak_memory(self) -> None:
        return None

    def peak_memory(self) -> int | None:
        return None


# --------------------------------------------------------------------------------------------------
# torch backend (float32, autograd, torch.optim)
# --------------------------------------------------------------------------------------------------


class TorchXorModel:
    def __init__(self, torch: Any, device: str, x: Any, y: Any, params: list[Any]) -> None:
        self.torch = torch
        self.params = [
            torch.tensor(p, dtype=torch.float32, device=device).requires_grad_(True) for p in params
        ]
        self.x = torch.tensor(x, dtype=torch.float32, device=device)
        self.y = torch.tensor(y, dtype=torch.float32, device=device)
        self.optimizer = torch.optim.SGD(self.params, lr=XOR_LEARNING_RATE)
        self.device = str(self.params[0].device)
        self._loss: Any = None

    def _forward(self, x: Any) -> Any:
        w1, b1, w2, b2 = self.params
        return self.torch.sigmoid(x @ w1 + b1) @ w2 + b2

    def _loss_of(self, z: Any) -> Any:
        return self.torch.nn.functional.binary_cross_entropy_with_logits(z, self.y)

    def evaluate(self) -> tuple[float, float]:
        z = self._forward(self.x)
        self._loss = self._loss_of(z)
        correct = ((z > 0) == (self.y > 0.5)).sum().to(self._loss.dtype)
        loss, count = self.torch.stack([self._loss.detach(), correct]).tolist()
        return float(loss), int(count) / int(self.y.shape[0])

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._loss.backward()
        self.optimizer.step()
        self._loss = None

    def fast_step(self) -> None:
        self._loss = self._loss_of(self._forward(self.x))
        self.step()

    def logits(self, x: Any) -> list[float]:
        torch = self.torch
        with torch.no_grad():
            out = self._forward(torch.tensor(x, dtype=torch.float32, device=self.x.device))
        return [float(v) for v in out.reshape(-1).tolist()]


class TorchSpiralsModel(TorchXorModel):
    def __init__(self, torch: Any, device: str, x: Any, y: Any, params: list[Any]) -> None:
        self.torch = torch
        nn = torch.nn
        sizes = [2, SPIRALS_HIDDEN, SPIRALS_HIDDEN, 1]
        layers: list[Any] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])
        linears = [layer for layer in self.net if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for layer, weight, bias in zip(linears, params[0::2], params[1::2], strict=True):
                layer.weight.copy_(torch.tensor(weight.T, dtype=torch.float32))
                layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        self.net.to(device)
        self.params = list(self.net.parameters())
        self.x = torch.tensor(x, dtype=torch.float32, device=device)
        self.y = torch.tensor(y, dtype=torch.float32, device=device)
        self.optimizer = torch.optim.Adam(
            self.params, lr=SPIRALS_LEARNING_RATE, betas=(ADAM_BETA1, ADAM_BETA2), eps=ADAM_EPS
        )
        self.device = str(self.params[0].device)
        self._loss = None

    def _forward(self, x: Any) -> Any:
        return self.net(x)


class TorchBackend:
    name = "torch"

    def __init__(self, torch: Any, device: str) -> None:
        self.torch = torch
        self.device = device
        # The first optimizer and backward pass import and set up much of torch (seconds): do it here so
        # that the tasks' seconds measure training.
        probe = torch.zeros(2, device=device, requires_grad=True)
        for optimizer in (torch.optim.SGD([probe], lr=0.0), torch.optim.Adam([probe], lr=0.0)):
            optimizer.zero_grad(set_to_none=True)
            (probe * probe).sum().backward()
            optimizer.step()
        self.synchronize()

    def xor_model(self, x: Any, y: Any, params: list[Any]) -> Any:
        return TorchXorModel(self.torch, self.device, x, y, params)

    def spirals_model(self, x: Any, y: Any, params: list[Any]) -> Any:
        return TorchSpiralsModel(self.torch, self.device, x, y, params)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peak_memory(self) -> int | None:
        if self.device == "cuda":
            return int(self.torch.cuda.max_memory_allocated())
        return None


# --------------------------------------------------------------------------------------------------
# Training drivers (shared by both backends)
# --------------------------------------------------------------------------------------------------

XOR_CRITERION = "all 4 XOR points classified correctly"
SPIRALS_CRITERION = f"train accuracy >= {SPIRALS_MIN_ACCURACY} and loss <= {SPIRALS_MAX_LOSS}"


def _stop_reason(epochs: int, limits: Limits) -> str | None:
    if epochs >= limits.max_epochs:
        return "max-epochs"
    if time.perf_counter() >= limits.deadline:
        return "max-seconds"
    return None


def train_xor(np: Any, backend: Any, problem: Problem, limits: Limits) -> TaskResult:
    result = TaskResult("xor", XOR_CRITERION)
    rng = np.random.default_rng(problem.xor_rng_seed)
    start = time.perf_counter()
    epochs = 0
    attempts = 0
    attempt_epochs = 0
    model: Any = None
    while True:
        if model is None or attempt_epochs >= XOR_EPOCHS_PER_ATTEMPT:
            model = backend.xor_model(problem.xor_x, problem.xor_y, _xor_init(np, rng))
            attempts += 1
            attempt_epochs = 0
        loss, accuracy = model.evaluate()
        result.loss_history.append(loss)
        if accuracy >= 1.0:
            result.stopped = "converged"
            break
        stop = _stop_reason(epochs, limits)
        if stop is not None:
            result.stopped = stop
            break
        model.step()
        epochs += 1
        attempt_epochs += 1
    backend.synchronize()
    result.seconds = time.perf_counter() - start
    result.passed = result.stopped == "converged"
    result.loss, result.accuracy, result.epochs = loss, accuracy, epochs
    result.tensor_device = model.device
    outputs = model.logits(problem.xor_x)
    probe_logit = model.logits(np.array([XOR_PROBE]))[0]
    result.predictions = _classes(np.array(outputs))
    result.extra = {
        "restarts": attempts - 1,
        "outputs": [round(_sigmoid(v), 6) for v in outputs],
        "probe_input": list(XOR_PROBE),
        "probe": _sigmoid(probe_logit),
    }
    return result


def train_spirals(np: Any, backend: Any, problem: Problem, limits: Limits) -> TaskResult:
    result = TaskResult("spirals", SPIRALS_CRITERION)
    start = time.perf_counter()
    model = backend.spirals_model(problem.spirals_x, problem.spirals_y, problem.spirals_init)
    epochs = 0
    while True:
        loss, accuracy = model.evaluate()
        result.loss_history.append(loss)
        if accuracy >= SPIRALS_MIN_ACCURACY and loss <= SPIRALS_MAX_LOSS:
            result.stopped = "converged"
            break
        stop = _stop_reason(epochs, limits)
        if stop is not None:
            result.stopped = stop
            break
        model.step()
        epochs += 1
    backend.synchronize()
    result.seconds = time.perf_counter() - start
    result.passed = result.stopped == "converged"
    result.loss, result.accuracy, result.epochs = loss, accuracy, epochs
    result.tensor_device = model.device
    train_classes = _classes(np.array(model.logits(problem.spirals_x)))
    test_classes = _classes(np.array(model.logits(problem.spirals_test_x)))
    labels = [int(v) for v in problem.spirals_test_y.reshape(-1)]
    result.predictions = train_classes + test_classes
    result.extra = {
        "points": SPIRALS_POINTS,
        "architecture": f"2-{SPIRALS_HIDDEN}-{SPIRALS_HIDDEN}-1 relu, adam lr {SPIRALS_LEARNING_RATE}",
        "test_accuracy": sum(int(a == b) for a, b in zip(test_classes, labels, strict=True)) / len(labels),
    }
    return result


def measure_throughput(backend: Any, problem: Problem, limits: Limits) -> float | None:
    """Training samples per second: forward, backward and Adam step on one large batch."""
    model = backend.spirals_model(problem.bench_x, problem.bench_y, problem.spirals_init)
    for _ in range(THROUGHPUT_WARMUP_STEPS):
        model.fast_step()
    backend.synchronize()
    start = time.perf_counter()
    for _ in range(THROUGHPUT_STEPS):
        if time.perf_counter() >= limits.deadline:
            return None
        model.fast_step()
    backend.synchronize()
    seconds = time.perf_counter() - start
    return THROUGHPUT_BATCH * THROUGHPUT_STEPS / seconds if seconds > 0 else None


def run_tasks(np: Any, backend: Any, problem: Problem, limits: Limits, throughput: bool = True) -> RunResult:
    backend.reset_peak_memory()
    tasks = {
        "xor": train_xor(np, backend, problem, limits),
        "spirals": train_spirals(np, backend, problem, limits),
    }
    run = RunResult(tasks=tasks)
    if throughput and time.perf_counter() < limits.deadline:
        run.throughput_samples_per_s = measure_throughput(backend, problem, limits)
    run.peak_gpu_memory_bytes = backend.peak_memory()
    return run


def compare_runs(primary: RunResult, reference: RunResult, reference_name: str) -> dict[str, Any]:
    """Agreement of two runs of the same seed: the reference met every criterion, the losses after each
    update (over the epochs both did) are within AGREEMENT_LOSS_TOLERANCE, the XOR probes within
    AGREEMENT_PROBE_TOLERANCE, and the class predictions at the end (XOR: the 4 points; spirals: 200 train +
    200 held-out points) agree on >= AGREEMENT_MIN_PREDICTION."""
    tasks: dict[str, Any] = {}
    failures: list[str] = []
    for name in TASKS:
        a, b = primary.tasks[name], reference.tasks[name]
        same = sum(int(p == q) for p, q in zip(a.predictions, b.predictions, strict=False))
        total = max(len(a.predictions), len(b.predictions))
        agreement = same / total if total else 0.0
        # Same seed, same data, same initial weights: the losses after the same number of updates must
        # match. Compared over the epochs both runs did (they may stop a few epochs apart).
        common = min(len(a.loss_history), len(b.loss_history))
        pairs = zip(a.loss_history[:common], b.loss_history[:common], strict=True)
        loss_diff = max((abs(x - y) for x, y in pairs), default=None)
        tolerance = AGREEMENT_LOSS_TOLERANCE[name]
        entry: dict[str, Any] = {
            "reference_passed": b.passed,
            "reference_loss": b.loss,
            "reference_epochs": b.epochs,
            "reference_loss_history": loss_curve(b.loss_history),
            "compared_epochs": common,
            "loss_diff": loss_diff,
            "loss_tolerance": tolerance,
            "prediction_agreement": agreement,
        }
        problems: list[str] = []
        if not b.passed:
            problems.append(f"the {reference_name} run did not meet the criterion")
        if loss_diff is None or loss_diff > tolerance:
            problems.append(
                f"losses over the first {common} epochs differ by up to {loss_diff} (tolerance {tolerance})"
            )
        if agreement < AGREEMENT_MIN_PREDICTION:
            problems.append(f"predictions agree on {agreement:.1%} (< {AGREEMENT_MIN_PREDICTION:.0%})")
        if name == "xor":
            pa, pb = a.extra.get("probe"), b.extra.get("probe")
            probe_diff = abs(pa - pb) if pa is not None and pb is not None else None
            entry.update(reference_probe=pb, probe_diff=probe_diff, probe_tolerance=AGREEMENT_PROBE_TOLERANCE)
            if probe_diff is None or probe_diff > AGREEMENT_PROBE_TOLERANCE:
                problems.append(f"probe differs by {probe_diff} (tolerance {AGREEMENT_PROBE_TOLERANCE})")
        entry["passed"] = not problems
        tasks[name] = entry
        failures += [f"{name}: {p}" for p in problems]
    return {
        "reference": reference_name,
        "passed": not failures,
        "min_prediction_agreement": AGREEMENT_MIN_PREDICTION,
        "tasks": tasks,
        "failures": failures,
    }


def task_failure(task: TaskResult, args: argparse.Namespace) -> str | None:
    if task.passed:
        return None
    state = f"loss {task.loss:.4g}, accuracy {task.accuracy:.3f}" if task.loss is not None else "no result"
    if task.stopped == "max-seconds":
        return (
            f"{task.name}: stopped by --max-seconds {args.max_seconds:g} after {task.epochs} epochs "
            f"before {task.criterion} ({state})"
        )
    return f"{task.name}: {task.criterion} not reached within --max-epochs {args.max_epochs} ({state})"


# --------------------------------------------------------------------------------------------------
# Backend and device selection
# --------------------------------------------------------------------------------------------------


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
    said = [_one_line(str(w.message)) for w in caught]
    built_cuda = getattr(torch.version, "cuda", None)
    built_hip = getattr(torch.version, "hip", None)
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
    if built_cuda is None and built_hip is None:
        head = f"torch {version} is a CPU-only build (torch.version.cuda is None)"
    else:
        runtime = f"CUDA {built_cuda}" if built_cuda else f"HIP {built_hip}"
        head = f"torch {version} (built for {runtime}) cannot use CUDA"
    parts = [f"{head}: {quoted}"]
    parts += [f"torch warned: {text}" for text in said if text and text not in quoted]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        parts.append(f"CUDA_VISIBLE_DEVICES={visible!r}")
    return _one_line("; ".join(parts))


@dataclass
class Selection:
    backend: str
    device: str
    torch: Any = None
    notes: list[str] = field(default_factory=list)


def select(backend: str, device: str, torch: Any, import_error: str | None) -> Selection:
    """Resolve --backend/--device given the result of import_torch(); raises Unavailable with the reason."""
    if backend == "numpy":
        if device == "cuda":
            raise Unavailable(
                "--device cuda needs the torch backend: the numpy backend runs on the CPU only "
                "(use --backend torch or --backend auto)"
            )
        return Selection("numpy", "cpu")
    if torch is None:
        if backend == "torch":
            raise Unavailable(f"--backend torch: torch is not importable ({import_error})")
        if device == "cuda":
            raise Unavailable(f"--device cuda needs torch, and torch is not importable ({import_error})")
        return Selection("numpy", "cpu", notes=[f"torch is not importable ({import_error}); used numpy"])
    if device == "cpu":
        return Selection("torch", "cpu", torch)
    reason = cuda_unusable_reason(torch)
    if reason is None:
        return Selection("torch", "cuda", torch)
    if device == "cuda":
        raise Unavailable(f"--device cuda: {reason}")
    return Selection("torch", "cpu", torch, notes=[f"CUDA not used: {reason}"])


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


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
        "tasks": {name: None for name in TASKS},
        "agreement": None,
        "throughput_samples_per_s": None,
        "peak_gpu_memory_bytes": None,
        "versions": {
            "python": platform.python_version(),
            "numpy": None,
            "torch": None,
            "cuda_runtime": None,
        },
        "python_executable": sys.executable,
        "notes": [],
    }


def run_check(args: argparse.Namespace, report: dict[str, Any]) -> int:
    report["requested"] = {"backend": args.backend, "device": args.device}
    report["seed"] = args.seed
    report["limits"] = {"max_epochs": args.max_epochs, "max_seconds": args.max_seconds}
    try:
        import numpy as np
    except Exception as exc:
        raise Unavailable(f"numpy is not importable ({_quote(exc)})") from None
    report["versions"]["numpy"] = np.__version__
    torch: Any = None
    import_error: str | None = None
    if args.backend != "numpy":
        torch, import_error = import_torch()
    if torch is not None:
        report["versions"]["torch"] = torch.__version__
        report["versions"]["cuda_runtime"] = getattr(torch.version, "cuda", None)
        report["backend"] = "torch" if args.backend == "torch" else None
    selection = select(args.backend, args.device, torch, import_error)
    report["notes"] += selection.notes
    report["backend"], report["device"] = selection.backend, selection.device
    if selection.torch is not None:
        torch.manual_seed(args.seed)
        backend: Any = TorchBackend(torch, selection.device)
        if selection.device == "cuda":
            report["gpu_name"] = torch.cuda.get_device_name(torch.cuda.current_device())
    else:
        backend = NumpyBackend(np)

    problem = make_problem(np, args.seed)
    limits = Limits(max_epochs=args.max_epochs, deadline=time.perf_counter() + args.max_seconds)
    run = run_tasks(np, backend, problem, limits)
    report["tasks"] = {name: task.to_json() for name, task in run.tasks.items()}
    report["throughput_samples_per_s"] = run.throughput_samples_per_s
    report["peak_gpu_memory_bytes"] = run.peak_gpu_memory_bytes
    failures = [text for text in (task_failure(t, args) for t in run.tasks.values()) if text]

    if selection.device == "cuda":
        reference = run_tasks(np, TorchBackend(selection.torch, "cpu"), problem, limits, throughput=False)
        agreement = compare_runs(run, reference, "torch on cpu, same seed")
        report["agreement"] = agreement
        failures += [f"agreement with the CPU run: {text}" for text in agreement["failures"]]
        devices = {task.tensor_device for task in run.tasks.values()}
        if not all(str(d).startswith("cuda") for d in devices):
            failures.append(f"tensors were not on the GPU: {sorted(map(str, devices))}")
    if failures:
        report["reason"] = "; ".join(failures)
        return EXIT_FAILED
    return EXIT_PASSED


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_text(report: dict[str, Any]) -> str:
    lines = [f"gpulab MLP check: {'PASSED' if report['passed'] else 'FAILED'} (exit {report['exit_code']})"]
    versions = report["versions"]
    if report["backend"]:
        where = report["device"] + (f" ({report['gpu_name']})" if report["gpu_name"] else "")
        lines.append(f"  backend {report['backend']} on {where}, seed {report['seed']}")
    for name in TASKS:
        task = report["tasks"].get(name)
        if not task:
            continue
        line = (
            f"  {name:<8} {'ok  ' if task['passed'] else 'FAIL'}  loss {_fmt(task['loss'], '.4f')}"
            f"  accuracy {_fmt(task['accuracy'], '.3f')}  epochs {task['epochs']}"
            f"  {task['seconds']:.3f} s  on {task['tensor_device']}"
        )
        if name == "xor":
            line += f"  restarts {task['restarts']}  probe [0.5, 0.5] -> {task['probe']:.4f}"
        else:
            line += f"  test accuracy {task['test_accuracy']:.3f}"
        lines.append(line)
        lines.append(f"           criterion: {task['criterion']} ({task['stopped']})")
    if report["throughput_samples_per_s"] is not None:
        lines.append(
            f"  throughput {report['throughput_samples_per_s']:.4g} training samples/s"
            f" (batch {THROUGHPUT_BATCH})"
        )
    if report["peak_gpu_memory_bytes"] is not None:
        lines.append(f"  peak GPU memory {report['peak_gpu_memory_bytes'] / 2**20:.1f} MiB")
    agreement = report["agreement"]
    if agreement:
        diffs = ", ".join(
            f"{name} loss diff {_fmt(entry['loss_diff'], '.2g')}"
            f" predictions {entry['prediction_agreement']:.1%}"
            for name, entry in agreement["tasks"].items()
        )
        lines.append(
            f"  agreement with {agreement['reference']}: {'ok' if agreement['passed'] else 'FAIL'} ({diffs})"
        )
    lines.append(
        f"  versions: python {versions['python']}, numpy {versions['numpy'] or '-'}, "
        f"torch {versions['torch'] or '-'}, CUDA runtime {versions['cuda_runtime'] or '-'}"
    )
    lines += [f"  note: {note}" for note in report["notes"]]
    if report["reason"]:
        lines.append(f"reason: {report['reason']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    report = base_report()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code = run_check(args, report)
    except UsageError as exc:
        code, report["reason"] = EXIT_USAGE, f"usage error: {exc}"
        if not want_json:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return code
    except Unavailable as exc:
        code, report["reason"] = EXIT_UNAVAILABLE, str(exc)
    except KeyboardInterrupt:
        code, report["reason"] = EXIT_INTERRUPTED, "interrupted"
    except Exception as exc:  # never a traceback: one line an admin can act on
        code, report["reason"] = EXIT_INTERNAL, f"internal error: {_quote(exc)}"
    report["exit_code"] = code
    report["passed"] = code == EXIT_PASSED
    if want_json:
        print(json.dumps(report, sort_keys=False))
    else:
        print(render_text(report))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
