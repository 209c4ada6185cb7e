"""Where a candidate's validation accuracy will end, forecast from where it stands part-way through.

A search trial trains the very schedule that confirms (:func:`nas.schedule.search_config`), and is
checked part-way at rungs of training images seen and at every epoch's end. A one-cycle schedule
ends at a learning rate of zero, so the error keeps falling to the last step, and small nets fall
later than big ones: a net is stopped only when even an optimistic forecast of its *own* end point
misses the target, never for being behind another net at the same epoch. "The target" here is the
validation accuracy that may still mean the task's test target (:func:`within_noise`): a validation
split of 5,000 images measures 99.4% to within about 0.1 point, so a net that ends at 99.3% on it
may well meet 99.4% on the test set, and only confirmation can tell.

The model: after a fraction ``f`` of the schedule's images, with validation error ``e``, the final
error is ``e * f**k``. Two exponents: ``expected`` (the median) gives the accuracy the sampler is told
for a stopped candidate; ``optimistic`` (the largest, plus a margin) decides the stop. Until the study
holds ``min_runs`` candidates that trained their whole schedule, the priors hold; then the exponents
are measured on those runs, at each checkpoint's fraction of the schedule.

>>> f = Forecast(target=0.994)
>>> f.reachable(1 / 27, 0.10)       # at chance 1/27 of the way in: stop
False
>>> f.reachable(1 / 27, 0.95)       # 5% error there may still fall to 0.6%
True
>>> f"{f.expected(0.5, 0.99):.4f}"
'0.9934'
>>> runs = [[(0.5, 0.99), (1.0, 0.995)], [(0.5, 0.985), (1.0, 0.992)], [(0.5, 0.98), (1.0, 0.985)]]
>>> g = f.calibrated(runs)
>>> [round(k, 2) for k in g.exponents(0.5)]   # median, largest + margin; other fractions keep the priors
[0.91, 1.3]
>>> g.exponents(0.25)
(0.6, 1.0)
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

Curve = list[tuple[float, float]]  # (fraction of the schedule's images seen, validation accuracy), in order

# Measured on the shipped mnist_tiny study's 10-epoch curves (results/mnist_tiny): k between 0.5
# and 0.65 for nets that learn from the start. The optimistic prior leaves room for nets that take
# off late (that study's BN-free trial 2 had k near 1.5 over its first two epochs, and still ended
# below the target).
EXPECTED_K = 0.6
OPTIMISTIC_K = 1.0
MARGIN = 0.3  # added to the largest exponent measured in the study


def within_noise(target: float, images: int, z: float = 2.0) -> float:
    """The lowest validation accuracy, over ``images`` held-out images, that may still mean ``target``
    on the test set: ``z`` binomial standard errors below it.

    >>> round(within_noise(0.994, 5000), 4)
    0.9918
    """
    return target - z * math.sqrt(target * (1 - target) / max(1, images))


def rungs(epochs: int, images_per_epoch: int, eta: int = 3, first: float = 0.25) -> tuple[int, ...]:
    """Images seen at which a schedule is checked between epochs: ``budget / eta**k``, the smallest no
    earlier than ``first`` of an epoch (none when ``eta`` < 2).

    >>> rungs(epochs=15, images_per_epoch=54912)
    (30506, 91520, 274560)
    """
    if eta < 2:
        return ()
    budget, out = epochs * images_per_epoch, []
    images = budget // eta
    while images >= first * images_per_epoch:
        out.append(images)
        images //= eta
    return tuple(sorted(out))


@dataclass(frozen=True)
class Forecast:
    """Forecasts for one task's target; :meth:`calibrated` measures the exponents on a study's runs."""

    target: float
    min_runs: int = 3
    measured: dict[float, tuple[float, float]] = field(default_factory=dict)  # fraction -> (expected, optimistic)

    def exponents(self, fraction: float) -> tuple[float, float]:
        """(expected, optimistic) exponent ``k`` at this fraction of the schedule."""
        return self.measured.get(_key(fraction), (EXPECTED_K, OPTIMISTIC_K))

    def expected(self, fraction: float, accuracy: float) -> float:
        """The final validation accuracy a curve at ``accuracy`` after ``fraction`` of its schedule is
        expected to reach."""
        return _end(fraction, accuracy, self.exponents(fraction)[0])

    def best_case(self, fraction: float, accuracy: float) -> float:
        return _end(fraction, accuracy, self.exponents(fraction)[1])

    def reachable(self, fraction: float, accuracy: float) -> bool:
        """Whether the target is still within reach, judged optimistically (a wrong stop loses a net)."""
        return fraction >= 1 or self.best_case(fraction, accuracy) >= self.target

    def calibrated(self, runs: list[Curve]) -> "Forecast":
        """The exponents measured on ``runs``: curves that trained their whole schedule (last point at
        fraction 1). Fractions with fewer than ``min_runs`` runs keep the priors."""
        ks: dict[float, list[float]] = {}
        for curve in runs:
            if not curve or curve[-1][0] < 1:
                continue
            end = 1 - curve[-1][1]
            for fraction, acc in curve[:-1]:
                if 0 < fraction < 1 and 0 < end and 1 - acc > 0:
                    ks.setdefault(_key(fraction), []).append(math.log(end / (1 - acc)) / math.log(fraction))
        measured = {f: (statistics.median(k), max(k) + MARGIN) for f, k in ks.items() if len(k) >= self.min_runs}
        return Forecast(self.target, self.min_runs, measured)


def _key(fraction: float) -> float:
    return round(fraction, 4)


def _end(fraction: float, accuracy: float, k: float) -> float:
    if fraction >= 1:
        return accuracy
    return 1 - (1 - accuracy) * fraction ** k


def at_chance(accuracy: float, classes: int) -> bool:
    """Whether a net scores within a tenth of the way from guessing to perfect: it has not started
    learning, or has lost its units. The search judges such a net by its learning rate, not by a
    forecast (:class:`nas.search._Watch`).

    >>> at_chance(0.1768, 10), at_chance(0.95, 10), at_chance(0.54, 2)
    (True, False, True)
    """
    chance = 1.0 / classes
    return accuracy < chance + 0.1 * (1.0 - chance)
