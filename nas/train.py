"""The trainer: whole datasets as tensors on the device, one-cycle SGD, one accuracy per epoch.

Every search trial trains a net, so this loop is built for speed on a small CPU as much as on a
GPU: no DataLoader and no per-sample Python; uint8 images are indexed, augmented (by
:mod:`nas.augment`) and normalised a batch at a time on the training device; the model runs
channels-last; the learning rate rises and falls once (one cycle) over a schedule fixed in advance;
before each test, BatchNorm statistics are re-measured on clean training images with dropout off
(see :func:`recalibrate_bn`); the test runs under ``inference_mode``. A fixed seed repeats a CPU run exactly (same thread count).

On a 2-core CPU most of a small net's step is memory traffic, not arithmetic: the measured wins
were channels-last (about 1.5x over NCHW), keeping glibc from unmapping freed activations
(10-15%), and small evaluation batches (the 10k MNIST test images in 2.2 s at 128 a batch, 5.0 s
at 2000; seed 001, 2 cores, 2026-11-25).

>>> import torch
>>> from torch import nn
>>> from nas.data import TensorData
>>> x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8); y = (x.float().mean((1, 2, 3)) > 127).long()
>>> toy = TensorData("toy", x, y, x, y, ["dark", "light"], (0.5,), (0.29,))
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
>>> r = train(net, toy, TrainConfig(epochs=2, batch_size=16, progress=False))
>>> len(r.accuracies), r.status
(2, 'complete')
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .analysis import Analysis, analyse
from .augment import augment_batch
from .build import build
from .data import DATASETS, TensorData
from .data import load as load_data
from .errors import NasError
from .files import save_torch
from .registry import load_design

OnEpoch = Callable[[int, float], "bool | None"]
OnRung = Callable[[int, float], "bool | None"]


@dataclass
class TrainConfig:
    """How to train. The defaults are the fixed schedule the benchmark measures on seed 001.

    ``augment_policy`` ``"auto"`` picks ``"shift"`` (small random shifts and rotations) for 1-channel
    images and ``"crop_flip"`` (random crop with padding, horizontal flip, optional cutout) otherwise.

    >>> from nas import TrainConfig
    >>> TrainConfig(epochs=15, lr=0.05).batch_size
    128
    """

    epochs: int = 6
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate of the one-cycle schedule
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup: float = 0.2  # fraction of all steps spent rising to the peak learning rate
    seed: int = 0
    reinit: bool = True  # re-initialise the weights from ``seed``, so the seed alone fixes the run
    device: str = "auto"
    target: float | None = None
    stop_at_target: bool = False
    augment: bool = True
    augment_policy: str = "auto"  # "auto", "shift", "crop_flip"
    shift: int = 2  # pixels, "shift" policy
    rotate: float = 7.0  # degrees, "shift" policy (0 turns the rotation off)
    crop_padding: int = 4  # pixels, "crop_flip" policy
    cutout: int = 0  # side of a square zeroed at a random place, "crop_flip" policy (0: off)
    channels_last: bool = True
    # "auto": bfloat16 autocast only where the hardware does it natively (AMX on a CPU, a bf16 GPU);
    # elsewhere it is emulated and slower (a seed 001 step 8.1x slower on a 2-core AVX2 AMD EPYC: bench/cpu_options.py).
    bf16: bool | str = "auto"
    compile: bool = False
    ema: float = 0.0  # decay of an average of the weights that is tested and kept (0: off)
    bn_recalibrate: int = 10000  # before each test, re-estimate BatchNorm statistics on this many clean training images
    # Large eval batches are slower on a CPU: their activations outgrow the cache and glibc's heap.
    eval_batch_size: int | None = None  # None: the training batch size
    # False: evaluate once, after the last epoch (a confirmation reads the test set only there)
    eval_each_epoch: bool = True
    progress: bool | None = None  # a progress bar; None: only when stderr is a terminal


# What each setting may be: (kind, lowest, highest, lowest excluded). Checked once, for every caller.
_RANGES = {
    # lr: above 1e30 the optimizer cannot even hold the step in float32 (a traceback, not a divergence)
    # Upper limits on counts: what a run could ever use (a seed fits every RNG, numpy's included);
    # above them a value is a typo that would run for ever or overflow deep inside torch.
    "epochs": (int, 1, 10_000, False), "batch_size": (int, 1, 1 << 20, False), "lr": (float, 0, 1e30, True),
    "momentum": (float, 0, 1, False), "weight_decay": (float, 0, 1, False), "label_smoothing": (float, 0, 1, False),
    "warmup": (float, 0, 1, False), "seed": (int, 0, 2**32 - 1, False), "shift": (int, 0, 16, False),
    "rotate": (float, 0, 180, False), "crop_padding": (int, 0, 16, False), "cutout": (int, 0, 1024, False),
    "ema": (float, 0, 1, False), "bn_recalibrate": (int, 0, 10**7, False), "eval_batch_size": (int, 1, 1 << 20, False),
    "target": (float, 0, 1, True),
}
_CHOICES = {"augment_policy": ("auto", "shift", "crop_flip"), "bf16": (True, False, "auto")}


def settings(options: dict | None = None, source: str = "trainer settings", **fixed) -> "TrainConfig":
    """A checked :class:`TrainConfig` from user ``options`` (a space's ``train:``, command-line
    flags, a benchmark's schedule) and the caller's ``fixed`` fields; the one builder all of them share.

    >>> settings({"lr": 0.05}, epochs=3).lr
    0.05
    >>> settings({"lr": "fast"}, source="space.yaml: train")
    Traceback (most recent call last):
    nas.errors.NasError: space.yaml: train: lr must be a number above 0 and at most 1e+30, got 'fast'
    """
    merged = {**(options or {}), **fixed}
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise NasError(f"{source}: unknown setting {unknown[0]!r}; use fields of nas.train.TrainConfig "
                       f"({', '.join(sorted(known))})")
    for name, value in merged.items():
        problem = _bad_setting(name, value)
        if problem:
            raise NasError(f"{source}: {name} must be {problem}, got {value!r}")
    return TrainConfig(**merged)


def _bad_setting(name: str, value) -> str:
    """What ``value`` should have been for setting ``name``, or '' if it is fine."""
    if name in _CHOICES:
        ok = any(value is c or (isinstance(c, str) and value == c) for c in _CHOICES[name])
        return "" if ok else "one of " + ", ".join(str(c).lower() for c in _CHOICES[name])
    if name not in _RANGES:
        kind = {f.name: f.type for f in fields(TrainConfig)}[name]
        return "true or false" if kind == "bool" and not isinstance(value, bool) else ""
    if value is None and name in ("eval_batch_size", "target"):
        return ""
    kind, low, high, open_low = _RANGES[name]
    what = ("a whole number" if kind is int else "a number") + (f" above {low}" if open_low else f" of at least {low}")
    what += f" and at most {high}" if high is not None else ""
    ok_type = isinstance(value, int) if kind is int else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok_type:
        return what
    too_low = value <= low if open_low else value < low
    return what if too_low or (high is not None and value > high) else ""


def images_per_epoch(n: int, batch_size: int) -> int:
    """The training images one epoch of ``n`` shows in batches of ``batch_size``: whole batches only
    (the ragged last batch is dropped; it would only add a noisy small step). Rungs count these.

    >>> images_per_epoch(55000, 128), images_per_epoch(100, 128)
    (54912, 100)
    """
    bs = min(batch_size, n)
    return n // bs * bs if bs else 0


STATUSES = ("complete", "target_met", "stopped", "nan")  # how a training run ends (TrainResult.status)


@dataclass
class TrainResult:
    accuracies: list[float] = field(default_factory=list)  # accuracy on the evaluation images after each evaluated epoch
    losses: list[float] = field(default_factory=list)  # mean training loss of each epoch
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's wall time, evaluation included
    seconds: float = 0.0
    rungs: dict[int, float] = field(default_factory=dict)  # images seen -> accuracy, at each rung passed
    target_epoch: int | None = None  # 1-based epoch where the target was first met
    status: str = "complete"  # "complete" | "target_met" | "stopped" | "nan"
    message: str = ""

    @property
    def final_accuracy(self) -> float:
        return self.accuracies[-1] if self.accuracies else 0.0


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a GPU that supports it, a CPU with AMX tiles.

    Without them bf16 measured slower than fp32: a seed 001 step 8.1x slower on a 2-core AVX2 AMD EPYC
    (``bench/cpu_options.py``, 2026-11-26), and issue 12 reports bf16 matmuls at half the fp32 rate on
    an AVX-512 Xeon without AMX.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def pick_device(name: str = "auto") -> torch.device:
    """``cuda`` when present for ``"auto"``, else ``cpu``; an error if a missing device is asked for.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NasError(f"unknown device {name!r}: use auto, cpu or cuda") from None
    if device.type not in ("cpu", "cuda", "mps"):  # torch names more (meta, xla, ipu, ...): none trains here
        raise NasError(f"device {name!r} cannot train nas models: use auto, cpu, cuda or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NasError(f"device {name!r} was asked for but CUDA is not available here: use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise NasError(f"device {name!r} was asked for but this machine has {torch.cuda.device_count()} CUDA "
                       f"device(s): use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NasError(f"device {name!r} was asked for but MPS is not available here: use --device auto or cpu")
    return device


# ---- the loop ----------------------------------------------------------------------------------------

class _Normalise:
    """Batches on the 0..255 scale (uint8 or float) to normalised float, in the model's memory format."""

    def __init__(self, data: TensorData, device: torch.device, channels_last: bool):
        c = data.x_train.shape[1]
        std = torch.tensor(data.std, dtype=torch.float32, device=device).view(1, c, 1, 1)
        mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.scale, self.shift = 1 / (255 * std), -mean / std
        self.format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: Tensor) -> Tensor:
        return (x.float() * self.scale + self.shift).contiguous(memory_format=self.format)


class NesterovSGD:
    """SGD with Nesterov momentum and L2 weight decay: ``torch.optim.SGD(nesterov=True)``'s update.

    Written out because the library optimizer's first use imports ``torch._dynamo``, which costs
    seconds per process on a small CPU; this one is a few ``_foreach`` calls per step.
    """

    def __init__(self, params, momentum: float = 0.9, weight_decay: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        live = [(p, b) for p, b in zip(self.params, self.buffers) if p.grad is not None]
        if not live:
            return
        params, bufs = [p for p, _ in live], [b for _, b in live]
        grads = [p.grad for p in params]
        if self.weight_decay:
            torch._foreach_add_(grads, params, alpha=self.weight_decay)
        torch._foreach_mul_(bufs, self.momentum)
        torch._foreach_add_(bufs, grads)
        torch._foreach_add_(grads, bufs, alpha=self.momentum)  # Nesterov: look ahead along the momentum
        torch._foreach_add_(params, grads, alpha=-lr)


class WeightAverage:
    """An exponential moving average of the weights, tested in place of the weights themselves.

    The decay ramps up from 0 (``(1 + step) / (10 + step)``) so early averages do not drag in the
    random initial weights. BatchNorm statistics are not averaged: recalibrate them for the average.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1 - d)

    @contextlib.contextmanager
    def swapped_in(self):
        with torch.no_grad():
            current = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, current)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        torch._foreach_copy_(self.params, self.average)


def _lr_at(step: int, total: int, config: TrainConfig) -> float:
    """One cycle: linear rise to the peak over ``warmup`` of the steps, then linear fall to zero."""
    rise = max(1, round(total * config.warmup))
    if step < rise:
        return config.lr * (step + 1) / rise
    return config.lr * max(0.0, (total - step) / max(1, total - rise))


def accuracy(model: nn.Module, x: Tensor, y: Tensor, norm: _Normalise, batch_size: int = 2000,
             bf16: bool = False) -> float:
    """Accuracy of ``model`` on uint8 images ``x`` with labels ``y`` (0..1)."""
    was_training = model.training
    model.eval()
    hits = torch.zeros((), dtype=torch.int64, device=y.device)
    with torch.inference_mode(), _autocast(x.device, bf16):
        for i in range(0, len(y), batch_size):
            hits += (model(norm(x[i:i + batch_size])).argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return hits.item() / max(1, len(y))


def recalibrate_bn(model: nn.Module, x: Tensor, norm: _Normalise, batch_size: int = 2000, bf16: bool = False) -> None:
    """Re-estimate every BatchNorm's running statistics on clean images, with dropout off.

    Training leaves running statistics that average the last few augmented batches, seen through
    dropout; at test time there is neither. A dropout layer before a BatchNorm (seed 001 has three)
    makes the variance it learnt too large for test time. A forward pass over clean training images,
    with BatchNorm averaging over all of them and dropout off, gives the statistics the test sees.
    Uses training images only; the weights do not change.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch of this pass
        m.train()
    try:
        with torch.no_grad(), _autocast(x.device, bf16):
            for i in range(0, len(x), batch_size):
                model(norm(x[i:i + batch_size]))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _reinit(model: nn.Module, seed: int) -> None:
    """Fresh weights from ``seed``. A net without BatchNorm gets He initialisation (normal, fan-in,
    for ReLU) of its convs and linear layers: PyTorch's default shrinks the signal layer by layer,
    and a plain stack of 9 ReLU convs then stays at chance (at peak lr 0.1, 0.01 and 0.001:
    bench/bn_free_start.py);
    BatchNorm rescales the signal anyway, so BN nets keep the default."""
    torch.manual_seed(seed)
    plain = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
        if plain and isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


_MALLOC_TUNED = False


def _keep_freed_memory() -> None:
    """Stop glibc from returning each freed activation to the OS.

    Every training step allocates activation tensors of tens of MB; by default glibc maps each with
    mmap and unmaps it on free, so every step pays page faults to zero fresh pages. Raising the mmap
    threshold to its maximum lets freed blocks be reused; measured 10-15% faster steps on CPU.

    Process-wide, on purpose and by necessity: ``mallopt`` sets the one allocator every thread and
    library of the process shares (there is no per-call or per-tensor setting), and memory it keeps
    stays with the process. So it runs once, at the first :func:`train`, is never undone, and also
    applies to whatever else the process allocates afterwards.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (glibc's maximum on 64-bit)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def train(model: nn.Module, data: TensorData, config: TrainConfig | None = None,
          on_epoch: OnEpoch | None = None, rungs: tuple[int, ...] = (), on_rung: OnRung | None = None,
          checkpoint: str | Path | None = None) -> TrainResult:
    """Train ``model`` on ``data.x_train`` for ``config.epochs`` epochs, evaluating on ``data.x_eval``
    after each one (or only after the last, with ``eval_each_epoch=False``). A search passes data
    whose evaluation part is a validation split (:meth:`TensorData.held_out`).

    ``on_epoch(epoch, accuracy)`` runs after each epoch (epoch counts from 1; ``accuracy`` is None
    for an epoch that was not evaluated); returning
    True stops training with status ``"stopped"``. With ``config.target`` set, the first epoch that
    reaches it is recorded, and ``stop_at_target`` ends the run there (status ``"target_met"``).
    A non-finite loss ends the run with status ``"nan"``. Ctrl-C propagates.

    ``rungs`` are numbers of training images seen (multi-fidelity checkpoints inside the schedule):
    once each is passed, the evaluation images are scored and ``on_rung(images, accuracy)`` runs;
    returning True stops training there with status ``"stopped"``. The schedule is not shortened:
    a run stopped at a rung is the beginning of the same run that would have gone on.

    ``checkpoint`` is a file that holds the run's state after each epoch but the last (weights, the
    optimizer's momentum, the weight average, the random generators, the scores so far), so a run
    ended by Ctrl-C or a killed process loses at most the epoch under way: called again with the same
    file, model, data and settings, it goes on where that epoch began, replaying the callbacks of the
    epochs already done (their figures, not their training), and on a CPU ends exactly as the whole
    run would have. A file written for another run is ignored and replaced. A run that completes its
    schedule, meets its target with ``stop_at_target`` or diverges removes its file; one stopped by a
    callback (Ctrl-C in a search: stop after this epoch) or by an exception keeps it, for its caller
    to resume or remove.

    >>> import torch
    >>> from nas import TrainConfig, build, load_design, train
    >>> from nas.data import TensorData
    >>> x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8); y = torch.arange(64) % 10
    >>> r = train(build(load_design("seed001")), TensorData("toy", x, y, x, y, list("0123456789"), (0.13,), (0.31,)),
    ...           TrainConfig(epochs=1, batch_size=32, progress=False))
    >>> r.status, len(r.accuracies)
    ('complete', 1)
    """
    started = time.perf_counter()
    env = _Environment.make(model, data, config or TrainConfig())
    config, data, net, norm = env.config, env.data, env.net, env.norm
    result = TrainResult()
    bar = _progress(env.total, config.progress)
    scored: dict[int, float] = {}  # steps done -> accuracy: a rung at an epoch's end is scored once

    def evaluate() -> float:
        if steps.done not in scored:
            with env.ema.swapped_in() if env.ema is not None else contextlib.nullcontext():
                if config.bn_recalibrate:
                    recalibrate_bn(net, data.x_train[env.recal_idx], norm, env.eval_bs, config.bf16)
                scored[steps.done] = accuracy(net, data.x_eval, data.y_eval, norm, env.eval_bs, config.bf16)
        return scored[steps.done]

    steps = _Steps(net, env.optimizer, env.ema, data, norm, config, env.gen, env.bs, env.total, bar)
    steps.checks = {-(-images // env.bs): images for images in rungs if 0 < images < env.total * env.bs}
    steps.score = lambda images: _rung(evaluate, on_rung, images, result)
    saved = _Checkpoint(Path(checkpoint), model, data, config) if checkpoint is not None else None
    done = saved.restore(model, env, steps, result, scored) if saved is not None else []
    try:
        ended = saved is not None and saved.replay(done, env, config, on_epoch, on_rung, result)
        for epoch in range(len(done) + 1, 0 if ended else config.epochs + 1):
            t0 = time.perf_counter()
            losses = steps.run_epoch(epoch, env.steps_per_epoch, config.augment)
            if steps.message:
                result.status, result.message = "nan", steps.message
                break
            if steps.stopped_at is not None:
                result.status = "stopped"
                result.message = f"stopped by the caller after {steps.stopped_at:,} images ({result.rungs[steps.stopped_at]:.4f})"
                break
            acc = evaluate() if config.eval_each_epoch or epoch == config.epochs else None
            if acc is not None:
                result.accuracies.append(acc)
                result.losses.append(losses.mean().item())
                bar.set_postfix_str(f"epoch {epoch} eval {acc:.4f}")
            result.epoch_seconds.append(time.perf_counter() - t0)
            done.append(acc)
            if saved is not None and epoch < config.epochs:  # before the callbacks: they may raise
                saved.save(model, env, steps, result, scored, done)
            if _stops_after(epoch, acc, config, on_epoch, result):
                break
    finally:
        bar.close()
    if saved is not None and result.status != "stopped":  # ended for good
        saved.path.unlink(missing_ok=True)
    if env.ema is not None and result.accuracies:
        env.ema.copy_to_model()  # the weights the last test measured (their BatchNorm statistics too)
    if result.status == "complete":
        result.message = f"{config.epochs} epochs, final accuracy {result.final_accuracy:.4f}"
    result.seconds += time.perf_counter() - started
    return result


class _Checkpoint:
    """One run's state at an epoch's end, in a file (see :func:`train`'s ``checkpoint``)."""

    def __init__(self, path: Path, model: nn.Module, data: TensorData, config: TrainConfig):
        self.path = path
        self.rungs: dict[int, float] = {}
        # What makes two runs the same run: a file written for another is ignored.
        options = {k: v for k, v in asdict(config).items() if k not in ("progress", "device")}
        shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        sample = [int(t[::max(1, len(t) // 64)].long().sum()) for t in (data.x_train, data.y_train, data.x_eval)]
        what = (options, pick_device(config.device).type, data.name, len(data.y_train), len(data.y_eval), sample,
                shapes)
        self.key = hashlib.sha256(repr(what).encode()).hexdigest()[:20]

    def save(self, model: nn.Module, env: "_Environment", steps: "_Steps", result: TrainResult,
             scored: dict[int, float], done: list[float | None]) -> None:
        cuda = env.gen.device.type == "cuda"
        state = {"key": self.key, "done": done, "steps": steps.done, "net": model.state_dict(),
                 "momentum": env.optimizer.buffers, "ema": env.ema.average if env.ema is not None else None,
                 "gen": env.gen.get_state(), "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(env.gen.device) if cuda else None,
                 "accuracies": result.accuracies, "losses": result.losses, "epoch_seconds": result.epoch_seconds,
                 "rungs": result.rungs, "scored": scored}
        save_torch(self.path, state, f"the checkpoint of this run ({self.path})",
                   "free some space, then run the same command to resume")

    def restore(self, model: nn.Module, env: "_Environment", steps: "_Steps", result: TrainResult,
                scored: dict[int, float]) -> list[float | None]:
        """Load the file's state into this run if it is this run's: the accuracies of the epochs done."""
        try:
            state = torch.load(self.path, map_location=env.gen.device, weights_only=True)
        except Exception:  # none yet, or a damaged one: the run starts afresh and replaces it
            return []
        if not isinstance(state, dict) or state.get("key") != self.key:
            return []
        model.load_state_dict(state["net"])
        torch._foreach_copy_(env.optimizer.buffers, state["momentum"])
        if env.ema is not None:
            torch._foreach_copy_(env.ema.average, state["ema"])
        env.gen.set_state(state["gen"].cpu())
        torch.set_rng_state(state["rng"].cpu())
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), env.gen.device)
        steps.done = state["steps"]
        result.accuracies, result.losses = list(state["accuracies"]), list(state["losses"])
        result.epoch_seconds, result.seconds = list(state["epoch_seconds"]), sum(state["epoch_seconds"])
        scored.update(state["scored"])
        self.rungs = dict(state["rungs"])
        return list(state["done"])

    def replay(self, done: list[float | None], env: "_Environment", config: TrainConfig,
               on_epoch: OnEpoch | None, on_rung: OnRung | None, result: TrainResult) -> bool:
        """The callbacks of the epochs done, in the order training made them; True if one ends the run."""
        per_epoch = env.steps_per_epoch * env.bs
        for epoch, acc in enumerate(done, start=1):
            for images in sorted(i for i in self.rungs if (epoch - 1) * per_epoch < i <= epoch * per_epoch):
                result.rungs[images] = self.rungs[images]
                if on_rung is not None and on_rung(images, self.rungs[images]):
                    result.status = "stopped"
                    result.message = f"stopped by the caller after {images:,} images ({self.rungs[images]:.4f})"
                    return True
            if _stops_after(epoch, acc, config, on_epoch, result):
                return True
        return False


@dataclass
class _Environment:
    """Everything a run is set up with before its first step: the device, the seeded generators, the
    data on the device, the (compiled) net, the optimizer and the step counts."""

    config: TrainConfig
    data: TensorData
    net: nn.Module
    norm: "_Normalise"
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    ema: "WeightAverage | None"
    recal_idx: Tensor
    bs: int
    eval_bs: int
    steps_per_epoch: int
    total: int

    @classmethod
    def make(cls, model: nn.Module, data: TensorData, config: TrainConfig) -> "_Environment":
        device = pick_device(config.device)
        if device.type == "cpu":
            _keep_freed_memory()
        if config.reinit:
            _reinit(model, config.seed)
        torch.manual_seed(config.seed)  # dropout draws from the global generator
        gen = torch.Generator(device=device).manual_seed(config.seed)
        if data.device != device:
            data = data.to(device)
        if not isinstance(config.bf16, bool):
            config = replace(config, bf16=native_bf16(device))
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        model.to(device=device, memory_format=fmt)
        n = len(data.y_train)
        bs = min(config.batch_size, n)
        # Its own generator, so switching recalibration on leaves the training batches as they were.
        recal_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
        recal_idx = torch.randperm(n, generator=recal_gen, device=device)[:config.bn_recalibrate]
        steps_per_epoch = images_per_epoch(n, bs) // bs if bs else 0
        if steps_per_epoch == 0:
            raise NasError(f"the training set of {data.name} is empty: check the dataset folder (train/<class>/)")
        return cls(config, data, torch.compile(model) if config.compile else model,
                   _Normalise(data, device, config.channels_last),
                   NesterovSGD(model.parameters(), config.momentum, config.weight_decay), gen,
                   WeightAverage(model, config.ema) if config.ema else None, recal_idx, bs,
                   config.eval_batch_size or bs, steps_per_epoch, steps_per_epoch * config.epochs)


def _stops_after(epoch: int, acc: float | None, config: TrainConfig, on_epoch: OnEpoch | None,
                 result: TrainResult) -> bool:
    """The stop rules at an epoch's end (``acc`` None: not evaluated): the target met with
    ``stop_at_target``, or the caller's ``on_epoch``. Records the target's epoch and the status."""
    met = acc is not None and config.target is not None and acc >= config.target and result.target_epoch is None
    if met:
        result.target_epoch = epoch
    caller_stops = on_epoch is not None and on_epoch(epoch, acc)
    if met and config.stop_at_target:
        result.status = "target_met"
        result.message = f"reached {acc:.4f} >= target {config.target} at epoch {epoch}"
    elif caller_stops:
        result.status = "stopped"
        result.message = f"stopped by the caller after epoch {epoch}" + (f" ({acc:.4f})" if acc is not None else "")
    return result.status != "complete"


def _rung(evaluate: Callable[[], float], on_rung: OnRung | None, images: int, result: TrainResult) -> bool:
    """Score a rung; True when the caller wants training to stop there."""
    acc = evaluate()
    result.rungs[images] = acc
    return bool(on_rung is not None and on_rung(images, acc))


class _Steps:
    """One epoch of optimisation steps; sets ``message`` and stops when the loss stops being finite."""

    def __init__(self, net, optimizer, ema, data, norm, config, gen, bs, total, bar):
        self.net, self.optimizer, self.ema, self.data, self.norm = net, optimizer, ema, data, norm
        self.config, self.gen, self.bs, self.total, self.bar = config, gen, bs, total, bar
        self.message = ""
        self.checks: dict[int, int] = {}  # steps done -> images seen, at each rung
        self.score: Callable[[int], bool] = lambda images: False  # score a rung; True: stop there
        self.stopped_at: int | None = None  # images seen when a rung stopped the run
        self.done = 0  # optimisation steps taken

    def run_epoch(self, epoch: int, steps: int, augment: bool) -> Tensor:
        cfg, data, device = self.config, self.data, self.data.device
        # Each check waits for the device; on a CPU that is free, on a GPU it stalls the queue.
        check_every = 1 if device.type == "cpu" else 25
        self.net.train()
        perm = torch.randperm(len(data.y_train), generator=self.gen, device=device)
        losses = torch.zeros(steps, device=device)
        for i in range(steps):
            idx = perm[i * self.bs:(i + 1) * self.bs]
            x = data.x_train[idx].float()  # augment raw values, so fills are black as in the data
            if augment:
                x = augment_batch(x, cfg, self.gen)
            with _autocast(device, cfg.bf16):
                out = self.net(self.norm(x))
            loss = F.cross_entropy(out.float(), data.y_train[idx], label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad()
            loss.backward()
            step = (epoch - 1) * steps + i
            self.optimizer.step(_lr_at(step, self.total, cfg))
            if self.ema is not None:
                self.ema.update(step)
            losses[i] = loss.detach()
            if (i + 1) % check_every == 0 or i + 1 == steps:
                since = max(0, i + 1 - check_every)
                bad = _first_nonfinite(losses[since:i + 1])
                if bad is not None:
                    batch = since + bad + 1
                    kind = "NaN" if losses[batch - 1].isnan() else "infinite"
                    self.message = f"loss became {kind} at epoch {epoch} batch {batch}: lower the learning rate (--lr)"
                    return losses
            self.bar.update(1)
            self.done = step + 1
            images = self.checks.get(step + 1)
            if images is not None:
                if self.score(images):
                    self.stopped_at = images
                    return losses[:i + 1]
                self.net.train()
            if self.bar.enabled and i % 20 == 0:
                self.bar.set_postfix_str(f"epoch {epoch} loss {loss.item():.3f}")
        return losses


def _first_nonfinite(losses: Tensor) -> int | None:
    bad = ~torch.isfinite(losses)
    return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


class _NoBar:
    enabled = False

    def update(self, n: int) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool | None):
    import sys

    if not (sys.stderr.isatty() if enabled is None else enabled):
        return _NoBar()
    from tqdm.auto import tqdm  # a widget in a notebook, text in a terminal

    bar = tqdm(total=total, unit="batch", leave=False, dynamic_ncols=True)
    bar.enabled = True
    return bar


def latency(model: nn.Module, input_shape, device: str = "auto", batch: int = 64, repeats: int = 5) -> float:
    """Seconds per image of an inference pass on ``device``: the median of ``repeats`` timed batches.

    Measured in the memory format the trainer uses, after one untimed batch (a warm-up).
    """
    dev = pick_device(device)
    model = model.to(device=dev, memory_format=torch.channels_last).eval()
    x = torch.randn(batch, *input_shape, device=dev).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i:
                times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] / batch


@dataclass
class DesignRun:
    """One design made ready to train by :func:`design_run`: its net, analysis, data and settings."""

    model: nn.Module
    analysis: Analysis
    data: TensorData
    config: TrainConfig

    def train(self, on_epoch: OnEpoch | None = None) -> TrainResult:
        return train(self.model, self.data, self.config, on_epoch=on_epoch)


def design_run(design: str, dataset: str | None = None, data_dir: str | None = None, device: str = "auto",
               train_limit: int | None = None, source: str = "nas train", **options) -> DesignRun:
    """A documented design (or spec file) ready to train once on ``dataset`` (default: the first known
    dataset of its input shape): what ``nas train`` runs. ``options`` are :class:`TrainConfig` fields;
    None leaves a field at its default.

    >>> run = design_run("seed001", data_dir="../shared/data", train_limit=512, epochs=1, progress=False)
    >>> run.analysis.params, len(run.data.y_train), run.train().status
    (18666, 512, 'complete')
    """
    spec = load_design(design)
    a = analyse(spec)
    dev = pick_device(device)
    # Settings are checked before anything is loaded, so a bad one costs no data load.
    config = settings({k: v for k, v in options.items() if v is not None}, source=source, device=str(dev))
    data = load_data(dataset or _dataset_for(spec.input), data_dir=data_dir, device=dev)
    data.check_fits(a.spec.input, a.out_shape, design)
    if train_limit:
        data = data.subset(train=train_limit, seed=config.seed)
    return DesignRun(build(spec, a), a, data, config)


def _dataset_for(shape) -> str:
    """The first known dataset of that input shape (mnist before fashion_mnist)."""
    name = next((info.name for info in DATASETS.values() if info.shape == tuple(shape)), None)
    if name is None:
        raise NasError(f"no default dataset for input {list(shape)}: pass --dataset NAME or an image folder path")
    return name
