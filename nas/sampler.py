"""How the search proposes candidates and stops hopeless ones: a seeded TPE sampler and a target pruner.

The search is multi-objective (validation accuracy up, cost down), and Optuna's own pruning
interface (``trial.report`` / ``should_prune``) is for single-objective studies, so the pruner here
reads learning curves directly: the per-epoch validation accuracies each trial records.

>>> pruner = TargetPruner(target=0.99, max_epochs=10)
>>> pruner.hopeless([0.3, 0.4, 0.45, 0.5, 0.5, 0.5, 0.5, 0.5], references=[])  # 50% error cannot shrink to 1%
True
>>> pruner.hopeless([0.96, 0.975], references=[[0.97, 0.985, 0.991]])  # behind every curve that reached it
True
"""
from __future__ import annotations

import optuna
from optuna.trial import TrialState


class TargetPruner:
    """Stop a trial whose learning curve cannot reach ``target`` within ``max_epochs``.

    Two tests, after ``warmup`` epochs and before the last one:

    * behind every curve that reached the target: accuracy at this epoch is below the lowest accuracy
      that any target-reaching trial had at the same epoch, by more than ``slack``;
    * out of reach even optimistically: the error rate, shrinking by ``decay`` every remaining
      epoch, would still be above ``1 - target`` at the last epoch.
    """

    def __init__(self, target: float, max_epochs: int, warmup: int = 1, slack: float = 0.003, decay: float = 0.5):
        self.target, self.max_epochs, self.warmup, self.slack, self.decay = target, max_epochs, warmup, slack, decay

    def hopeless(self, curve: list[float], references: list[list[float]]) -> bool:
        epoch = len(curve)
        if epoch < self.warmup or epoch >= self.max_epochs:
            return False  # the last epoch ends the schedule anyway: it completes, reached or not
        acc = curve[-1]
        if (1 - acc) * self.decay ** (self.max_epochs - epoch) > 1 - self.target:
            return True
        refs = [r[epoch - 1] for r in references if len(r) >= epoch]
        return bool(refs) and acc < min(refs) - self.slack

    @staticmethod
    def references(study: optuna.Study) -> list[list[float]]:
        """The learning curves of the completed trials that reached the target."""
        return [list(t.user_attrs["accuracies"]) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("reached_target") and t.user_attrs.get("accuracies")]


class Sampler(optuna.samplers.TPESampler):
    """TPE whose random draws for trial k depend only on ``(seed, k)``.

    One worker repeats its candidates exactly, also across a resume; several workers started with
    the same ``--seed`` draw different candidates, where one shared random sequence would have every
    worker try the same random start-up points.
    """

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().before_trial(study, trial)
        seed = (self._base_seed * 1_000_003 + trial.number) % 2**32
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)
