"""Toy spaces and a fake trainer, shared by the search, API and report tests."""
import os
import signal

SPACE = {
    "name": "toy",
    "task": {"dataset": "mnist", "target": 0.95, "max_epochs": 4, "validation": 20,
             "constraints": {"max_params": 300, "classes": 4}},
    "input": [1, 12, 12],
    "choices": {"w": [2, 4, 8, 16], "k": [3, 5], "pool": ["maxpool", "avgpool"]},
    "blocks": {"f": [{"conv": {"out": "$w", "kernel": "$k"}}, "relu", "$pool", {"pwconv": {"out": 4}}, "gap"]},
    "points": {"small_one": {"w": 2, "k": 3, "pool": "maxpool"}},
}


# A 2-net MNIST space of one epoch and a low target: real training, a whole search and its
# confirmation in about a minute.
ONE_EPOCH_MNIST = """\
name: api
task: {dataset: mnist, target: 0.5, max_epochs: 1, validation: 2000,
        constraints: {max_params: 3000, classes: 10}, seeds: 2}
train: {batch_size: 256}
input: [1, 28, 28]
choices: {w: [4, 8]}
blocks:
  f: [{conv: {out: $w, padding: 1}}, bn, relu, maxpool, {conv: {out: $w, padding: 1}}, bn, relu, maxpool,
      {pwconv: {out: 10}}, gap, flatten, logsoftmax]
"""


def tiny_data(train: int = 120, test: int = 40, seed: int = 0, side: int = 12, classes: int = 4):
    """Random one-channel images, 12x12 in 4 classes (the toy space's input) unless asked otherwise:
    enough for the search's bookkeeping (validation split, subsets) when the trainer is fake."""
    import torch

    from nas.data import TensorData

    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (train + test, 1, side, side), dtype=torch.uint8, generator=gen)
    y = torch.arange(train + test) % classes
    return TensorData("toy", x[:train], y[:train], x[train:], y[train:], [str(c) for c in range(classes)],
                      (0.5,), (0.29,))


def FakeResult(accuracies: list, losses: list, epoch_seconds: list, seconds: float, target_epoch: int | None,
               status: str, message: str = ""):
    """What the fake trainer returns: the real trainer's own TrainResult, so the two cannot drift."""
    from nas.train import TrainResult

    return TrainResult(accuracies=list(accuracies), losses=list(losses), epoch_seconds=list(epoch_seconds),
                       seconds=seconds, target_epoch=target_epoch, status=status, message=message)


class FakeTrainer:
    """Accuracy curves that depend on width: w >= 8 reaches the target at epoch 3, w = 2 never (though
    above chance, so no learning-rate retry)."""

    def __init__(self, interrupt_on_call=None):
        self.calls = []
        self.configs = []
        self.interrupt_on_call = interrupt_on_call

    @staticmethod
    def result(accs: list, status: str) -> FakeResult:
        return FakeResult(accs, [0.0] * len(accs), [0.01] * len(accs), 0.01, None, status)

    def __call__(self, model, data, config=None, on_epoch=None, rungs=(), on_rung=None, checkpoint=None):
        from nas.train import TrainConfig, images_per_epoch

        config = config or TrainConfig()
        width = next(model.parameters()).shape[0]
        self.calls.append(width)
        self.configs.append(config)
        curve = {2: [0.4, 0.41, 0.42, 0.43], 4: [0.7, 0.9, 0.93, 0.94]}.get(width, [0.8, 0.9, 0.96, 0.97])
        accs, target_epoch, status = [], None, "complete"
        per_epoch = images_per_epoch(len(data.y_train), config.batch_size)
        for epoch, acc in enumerate(curve, start=1):
            if self.interrupt_on_call == len(self.calls) and epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)
            for images in (r for r in rungs if (epoch - 1) * per_epoch < r <= epoch * per_epoch):
                if on_rung(images, acc - 0.01):  # a rung inside this epoch scores a little below its end
                    return FakeResult(accs, [0.0] * len(accs), [0.01] * len(accs), 0.01, target_epoch, "stopped")
            accs.append(acc)
            if target_epoch is None and config.target is not None and acc >= config.target:
                target_epoch = epoch
            if on_epoch and on_epoch(epoch, acc):
                status = "stopped"
                break
            if target_epoch and config.stop_at_target:
                status = "target_met"
                break
        return FakeResult(accs, [0.0] * len(accs), [0.01] * len(accs), 0.01 * len(accs), target_epoch, status)


def image_folder(root, n: int = 24, size: int = 16, classes: int = 2):
    """An image-folder dataset (train/<class>/*.png and test/...) of random grey images: for the CLI."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in range(classes):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(n // classes):
                Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def assert_one_line_error(result, message: str) -> None:
    """A click test-runner result that failed as every bad input must: exit 2, no traceback, and one
    line on stderr, ``error: ...``, matching the regular expression ``message``."""
    import re

    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith("error: ") and re.search(message, lines[0]), lines[0]
