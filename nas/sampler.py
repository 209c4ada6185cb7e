"""How the search proposes candidates: seeded TPE that never proposes a net already tried, and
never one that costs as much as a net that already reached the target.

Every point of a space is checked analytically once (:class:`Catalogue`), so the sampler knows each
point's net (its fingerprint; different choices can give the same net), whether it is feasible and
what it costs. A TPE proposal whose net was already tried, or that is no cheaper than the cheapest
net that reached the target on validation (the *cost cap*), is drawn again; when TPE keeps
proposing such points (it has converged), a random untried feasible net under the cap is taken
instead. So every trial trains a new net, and once a net reaches the target the search spends its
budget only on cheaper ones. When no untried net under the cap is left, :meth:`Sampler.remaining`
says 0 and the search ends.

>>> from nas.space import Space
>>> space = Space.from_dict({"name": "s", "task": {"dataset": "mnist", "target": 0.9,
...     "constraints": {"max_params": 50}}, "input": [1, 8, 8], "choices": {"w": [2, 4, 8], "act": ["relu", "relu6"]},
...     "blocks": {"f": [{"conv": {"out": "$w", "kernel": 3}}, "$act", "gap"]}})
>>> cat = Catalogue(space, "params")
>>> sorted(int(e.cost) for e in cat.distinct())   # w=8 breaks the limit; relu and relu6 nets differ
[20, 20, 40, 40]
>>> len(cat.untried(taken=set(), cap=40))         # the w=2 nets only
2
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from .feasibility import EXACT_LIMIT, check
from .space import Space, fingerprint

REDRAWS = 20  # TPE proposals tried before a random untried net is taken instead


@dataclass(frozen=True)
class Entry:
    """One point of a space, checked: the key of its net, whether it is feasible, its cost."""

    key: str  # the net's fingerprint; for a point that is not a feasible net, the point itself
    feasible: bool
    cost: float | None
    labels: tuple[tuple[str, Any], ...]  # the point, as Optuna params (choice -> label)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.labels)


class Catalogue:
    """Each point of ``space`` checked once, on demand; the whole space when it is small enough to
    enumerate (``exact_limit`` points), else a random sample of it each time untried nets are asked for."""

    def __init__(self, space: Space, cost: str, exact_limit: int = EXACT_LIMIT, seed: int = 0):
        self.space, self.cost, self.exact = space, cost, space.size <= exact_limit
        self._entries: dict[tuple, Entry] = {}
        self._all: list[Entry] | None = None
        self._rng = random.Random(seed)

    def entry(self, params: dict[str, Any]) -> Entry:
        labels = tuple(sorted(self.space.encode(params).items()))
        found = self._entries.get(labels)
        if found is None:
            cand = check(self.space, self.space.decode(dict(labels)))
            if cand.feasible:
                size = cand.analysis.figures().get(self.cost)
                found = Entry(fingerprint(cand.analysis.spec), True, None if size is None else float(size), labels)
            else:
                found = Entry("point:" + repr(labels), False, None, labels)
            self._entries[labels] = found
        return found

    def distinct(self) -> list[Entry]:
        """One entry per distinct feasible net (enumerable spaces; a sample of a large one)."""
        if self._all is None or not self.exact:
            points = self.space.enumerate() if self.exact else (self.space.sample(self._rng) for _ in range(500))
            seen: dict[str, Entry] = {}
            for p in points:
                e = self.entry(p)
                if e.feasible:
                    seen.setdefault(e.key, e)
            self._all = list(seen.values())
        return self._all

    def untried(self, taken: set[str], cap: float | None) -> list[Entry]:
        """Feasible nets not in ``taken`` and cheaper than ``cap`` (None: no cap)."""
        return [e for e in self.distinct() if e.key not in taken and _under(e, cap)]


def _under(entry: Entry, cap: float | None) -> bool:
    return cap is None or entry.cost is None or entry.cost < cap


class Sampler(optuna.samplers.TPESampler):
    """TPE whose random draws for trial k depend only on ``(seed, k)``, and which proposes only nets
    not tried yet and cheaper than the cost cap (see the module's docstring).

    ``cap(study)`` gives the cost cap (None: none yet). Seeding per trial makes one worker repeat
    its candidates exactly, also across a resume, while several workers started with the same
    ``--seed`` draw different candidates.
    """

    def __init__(self, seed: int = 0, catalogue: Catalogue | None = None, cap=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self._base_seed, self.catalogue, self.cap = seed, catalogue, cap or (lambda study: None)
        self._pick = random.Random(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        seed = (self._base_seed * 1_000_003 + trial.number) % 2**32
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)
        self._pick.seed(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial):
        if self.catalogue is None:
            return super().infer_relative_search_space(study, trial)
        space = self.catalogue.space
        return {name: CategoricalDistribution(space.labels(name)) for name in space.choices}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space) -> dict[str, Any]:
        if self.catalogue is None or not search_space:
            return super().sample_relative(study, trial, search_space)
        taken, cap = self.taken(study, trial.number), self.cap(study)
        learnt = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        if learnt >= self._n_startup_trials:
            for _ in range(REDRAWS):
                point = {name: self.sample_independent(study, trial, name, dist) for name, dist in search_space.items()}
                e = self.catalogue.entry(point)
                if e.key not in taken and (not e.feasible or _under(e, cap)):
                    return point
        left = self.catalogue.untried(taken, cap)
        return self._pick.choice(left).params if left else {}

    def taken(self, study: optuna.Study, number: int | None = None) -> set[str]:
        """Keys of the nets of every trial except ``number`` (failed ones are queued again, so their copy counts)."""
        out = set()
        for t in study.get_trials(deepcopy=False):
            params = t.params or t.system_attrs.get("fixed_params")  # a queued trial holds its params there
            if t.number != number and t.state != TrialState.FAIL and params:
                out.add(self.catalogue.entry(params).key)
        return out

    def remaining(self, study: optuna.Study) -> int | None:
        """Untried feasible nets under the cost cap; None when the space is too large to count."""
        if self.catalogue is None or not self.catalogue.exact:
            return None
        return len(self.catalogue.untried(self.taken(study), self.cap(study)))
