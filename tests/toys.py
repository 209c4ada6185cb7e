"""A toy space and a fake trainer, shared by the search and report tests: no real training."""
import os
import signal
from dataclasses import dataclass

SPACE = {
    "name": "toy",
    "task": {"dataset": "mnist", "target": 0.95, "max_epochs": 4,
             "constraints": {"max_params": 300, "classes": 4}},
    "input": [1, 12, 12],
    "choices": {"w": [2, 4, 8, 16], "k": [3, 5], "pool": ["maxpool", "avgpool"]},
    "blocks": {"f": [{"conv": {"out": "$w", "kernel": "$k"}}, "relu", "$pool", {"pwconv": {"out": 4}}, "gap"]},
    "points": {"small_one": {"w": 2, "k": 3, "pool": "maxpool"}},
}


@dataclass
class FakeResult:
    accuracies: list
    losses: list
    epoch_seconds: list
    seconds: float
    target_epoch: int | None
    status: str
    message: str = ""


class FakeTrainer:
    """Accuracy curves that depend on width: w >= 8 reaches the target at epoch 3, w = 2 never."""

    def __init__(self, interrupt_on_call=None):
        self.calls = []
        self.interrupt_on_call = interrupt_on_call

    def __call__(self, model, data, config, on_epoch=None):
        width = next(model.parameters()).shape[0]
        self.calls.append(width)
        curve = {2: [0.3, 0.31, 0.32, 0.33], 4: [0.7, 0.9, 0.93, 0.94]}.get(width, [0.8, 0.9, 0.96, 0.97])
        accs, target_epoch, status = [], None, "complete"
        for epoch, acc in enumerate(curve, start=1):
            if self.interrupt_on_call == len(self.calls) and epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)
            accs.append(acc)
            if target_epoch is None and acc >= config.target:
                target_epoch = epoch
            if on_epoch and on_epoch(epoch, acc):
                status = "stopped"
                break
            if target_epoch and config.stop_at_target:
                status = "target_met"
                break
        return FakeResult(accs, [0.0] * len(accs), [0.01] * len(accs), 0.01 * len(accs), target_epoch, status)
