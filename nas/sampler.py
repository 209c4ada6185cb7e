"""How the search proposes candidates and stops hopeless ones: a seeded TPE sampler, a target
pruner and successive halving over rungs of training images seen.

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


class Halving:
    """Successive halving over rungs of training images seen, asynchronous and aware of cost.

    A candidate's schedule of ``epochs`` over ``images_per_epoch`` images is scored on the
    validation split at rungs ``budget / eta**k`` (the smallest no earlier than a quarter of an
    epoch). At each rung it goes on only if it is among the best ``1/eta`` of the candidates scored
    there that cost no more than it does: a net must beat the cheaper nets to be worth its cost,
    and the cheapest net so far is never stopped by a rung (the target pruner still judges it).
    As in Optuna's ``SuccessiveHalvingPruner``, while fewer than ``eta`` such rivals were scored,
    only the best of them goes on. So most candidates cost a fraction of an epoch, and the full
    schedule goes to those that could join the front of validation accuracy against cost.

    >>> h = Halving(eta=3)
    >>> h.rungs(epochs=4, images_per_epoch=60000)
    (26666, 80000)
    >>> h.hopeless(0.95, cost=5000, others=[(4000, 0.97), (6000, 0.90), (3000, 0.96)])  # 2 cheaper nets beat it
    True
    >>> h.hopeless(0.95, cost=2000, others=[(4000, 0.97), (6000, 0.90), (3000, 0.96)])  # the cheapest so far
    False
    >>> h.hopeless(0.95, cost=3500, others=[(3000, 0.96)])  # the one cheaper net scored there beats it
    True
    """

    def __init__(self, eta: int = 3, first: float = 0.25):
        self.eta, self.first = eta, first

    def rungs(self, epochs: int, images_per_epoch: int) -> tuple[int, ...]:
        if self.eta < 2:
            return ()
        budget, out = epochs * images_per_epoch, []
        images = budget // self.eta
        while images >= self.first * images_per_epoch:
            out.append(images)
            images //= self.eta
        return tuple(sorted(out))

    def hopeless(self, accuracy: float, cost: float, others: list[tuple[float, float]]) -> bool:
        """``others``: (cost, accuracy at this rung) of the other candidates scored at it."""
        rivals = sorted([a for c, a in others if c <= cost] + [accuracy], reverse=True)
        return accuracy < rivals[max(1, len(rivals) // self.eta) - 1]

    @staticmethod
    def scored(study: optuna.Study, images: int, cost: str, number: int) -> list[tuple[float, float]]:
        """(cost, accuracy) of every other trial scored at rung ``images``, running ones included."""
        key = str(images)
        return [(t.user_attrs[cost], t.user_attrs["rungs"][key]) for t in study.get_trials(deepcopy=False)
                if t.number != number and key in (t.user_attrs.get("rungs") or {}) and t.user_attrs.get(cost) is not None]


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
