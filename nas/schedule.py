"""The one schedule a task's candidates train on: in the search, and again in confirmation.

A search decides on the schedule that confirms: a candidate's validation accuracy after ``epochs``
epochs of this schedule estimates what its confirmation runs will find after the same epochs, so a
small net that learns slowly is judged at the end of the schedule, not part-way. What differs is
only what each run reads: a search trial trains on the training images less the validation split,
is scored on that split after every epoch and may end at the target; a confirmation run trains on
every training image with its own seed and is tested once, after its last epoch.

Lower than both :mod:`nas.search` and :mod:`nas.confirm`, which each call :func:`train_config`.
"""
from __future__ import annotations

from .errors import NasError
from .train import TrainConfig, settings


# A net that never leaves chance by the end of the warmup, or falls back to it (dead units), is
# trained once more from the start at this fraction of the peak learning rate.
RETRY_LR = 0.1


def rates(config: TrainConfig) -> tuple[float, ...]:
    """The peak learning rates a search trial may train at, in order: the schedule's, then one retry."""
    return (config.lr, float(f"{config.lr * RETRY_LR:.6g}"))  # 0.01, not 0.010000000000000002


def epochs(space, options: dict | None = None) -> int:
    """The schedule's length: ``options`` (a benchmark's reduced fidelity), else the task's
    ``confirm_epochs``, else the space's ``train.epochs``, else the task's epoch budget."""
    options = options or {}
    return int(options.get("epochs") or space.task.confirm_epochs or space.train.get("epochs") or space.task.max_epochs)


def train_config(cfg, confirm_seed: int | None = None, lr: float | None = None) -> TrainConfig:
    """The trainer's settings for a search trial, or for the confirmation run of ``confirm_seed``.

    ``cfg`` is a :class:`nas.search.SearchConfig` (space, train_options, seed, finish, device, quiet).
    ``lr``: the peak learning rate the search settled on for this design (:data:`RETRY_LR`), where
    it differs from the space's.
    """
    space, task = cfg.space, cfg.space.task
    options = {**space.train, **cfg.train_options, "epochs": epochs(space, cfg.train_options)}
    if lr is not None:
        options["lr"] = lr
    if confirm_seed is None:
        fixed = dict(target=task.target, seed=cfg.seed, stop_at_target=not cfg.finish)
    else:
        fixed = dict(target=None, seed=confirm_seed, stop_at_target=False, eval_each_epoch=False)
    if cfg.quiet:  # a worker of --jobs: bars of several processes on one terminal break each other's lines
        fixed["progress"] = False
    config = settings(options, source=f"{space.source}: train", device=cfg.device, **fixed)
    if config.epochs > task.max_epochs:
        raise NasError(f"{space.source}: the schedule must be at most task.max_epochs ({task.max_epochs}) epochs, "
                       f"got {config.epochs}; shorten the schedule or raise the budget")
    return config
