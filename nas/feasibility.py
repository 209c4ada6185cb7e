"""How much of a space meets its constraints, found before any training.

Small spaces are enumerated exactly; larger ones are sampled (the report says which). Sampling
cannot prove a space infeasible, and blind samples miss small feasible corners (14 convs of widths
{8, 16, 32, 64} under 20k params: only nearly-all-8 points fit), so when no sample is feasible a
greedy walk from the closest samples lowers the constraint violation one choice at a time. Only
enumeration may call a space infeasible.

>>> from nas.space import Space
>>> space = Space.from_dict({"name": "s", "task": {"dataset": "mnist", "target": 0.9,
...     "constraints": {"max_params": 50}}, "input": [1, 8, 8], "choices": {"w": [2, 4, 8]},
...     "blocks": {"f": [{"conv": {"out": "$w", "kernel": 3}}, "gap"]}})
>>> f = feasibility(space)
>>> (f.method, f.checked, f.feasible, f.params_range)
('exact', 3, 2, (20, 40))
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .analysis import Analysis, analyse
from .errors import NasError, SpecError
from .constraints import Constraints
from .space import Space, fingerprint

EXACT_LIMIT = 20_000
SAMPLES = 4_000
SEARCH = 2_000  # checks the greedy walk may spend (about 1 ms each)
STARTS = 5  # closest samples the walk starts from, before random restarts


@dataclass(frozen=True)
class Candidate:
    """One point of a space, checked: its spec's analysis, or why it cannot be built."""

    params: dict[str, Any]
    analysis: Analysis | None
    failures: tuple[str, ...]  # constraint names that fail, or ("invalid: reason",)

    @property
    def feasible(self) -> bool:
        return self.analysis is not None and not self.failures


def check(space: Space, params: dict[str, Any]) -> Candidate:
    """Build and analyse the point; never trains."""
    try:
        a = analyse(space.spec(params))
    except SpecError as err:
        reason = str(err).split(": ", 1)[-1] if str(err).startswith("layer") else str(err)
        return Candidate(params, None, (f"invalid shapes ({_short(reason)})",))
    return Candidate(params, a, tuple(r.name for r in space.task.constraints.failures(a)))


def _short(reason: str) -> str:
    return reason.split(":")[0] if ":" in reason else reason[:60]


@dataclass
class Feasibility:
    space: str
    size: int
    method: str  # "exact" or "sampled"
    checked: int = 0
    valid: int = 0
    feasible: int = 0
    distinct_feasible: int = 0
    rejections: Counter = field(default_factory=Counter)
    params_range: tuple[int, int] | None = None
    rf_range: tuple[int, int] | None = None
    best: dict[str, Any] = field(default_factory=dict)  # best achievable value per limit, among valid nets
    hint: str = ""
    searched: int = 0  # points checked by the greedy walk (sampled spaces with no feasible sample)
    found: Candidate | None = None  # a feasible point the walk found
    closest: Candidate | None = None  # the point nearest to feasible, when none is
    closest_failures: str = ""  # its failing constraints, with their values
    _found_point: str = ""  # the found and closest points as labels, for the report lines
    _closest_point: str = ""

    @property
    def any_feasible(self) -> bool:
        return self.feasible > 0 or self.found is not None

    @property
    def tried(self) -> int:
        return self.checked + self.searched

    @property
    def fraction(self) -> float:
        return self.feasible / self.checked if self.checked else 0.0

    def lines(self) -> list[str]:
        est = "" if self.method == "exact" else f" (estimated from {self.checked:,} random samples)"
        out = [f"space {self.space}: {self.size:,} points; checked {self.checked:,} by "
               f"{'enumerating all of them' if self.method == 'exact' else 'sampling'}",
               f"valid nets: {self.valid:,}; meeting every constraint: {self.feasible:,} "
               f"({self.fraction:.1%}){est}; distinct feasible nets: {self.distinct_feasible:,}"]
        if self.params_range:
            out.append(f"feasible params: {self.params_range[0]:,} .. {self.params_range[1]:,}; "
                       f"RF: {self.rf_range[0]} .. {self.rf_range[1]}")
        if self.rejections:
            out.append("rejected by: " + ", ".join(f"{n} ({c:,})" for n, c in self.rejections.most_common()))
        if self.searched:
            out.append(self._search_line())
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out

    def _search_line(self) -> str:
        if self.found is not None:
            a = self.found.analysis
            return (f"no sample met every constraint, but a greedy walk from the closest ones found a feasible "
                    f"point after {self.searched:,} more checks: {self._found_point} "
                    f"({a.params:,} params, RF {a.rf})")
        return self.unproven()

    def unproven(self) -> str:
        """What was tried and what came closest, when sampling and the walk found nothing."""
        closest = (f"; closest: {self._closest_point} (fails {self.closest_failures})"
                   if self.closest is not None else "")
        return (f"no feasible point found in space {self.space} among {self.tried:,} tried ({self.checked:,} "
                f"random samples, {self.searched:,} by a greedy walk){closest}; not proven infeasible: only "
                f"enumerating all {self.size:,} points could prove it")


def feasibility(space: Space, exact_limit: int = EXACT_LIMIT, samples: int = SAMPLES, seed: int = 0,
                search: int = SEARCH) -> Feasibility:
    """Check ``space`` before any training: every point when it has at most ``exact_limit``, else
    ``samples`` random ones (and, when none is feasible, a greedy walk of ``search`` points toward one).

    >>> from nas import Space, feasibility
    >>> f = feasibility(Space.load("mnist_6k"))
    >>> print(f.lines()[1])
    valid nets: 288; meeting every constraint: 224 (77.8%); distinct feasible nets: 224
    """
    exact = space.size <= exact_limit
    rng = random.Random(seed)
    points = space.enumerate() if exact else (space.sample(rng) for _ in range(samples))
    f = Feasibility(space.name, space.size, "exact" if exact else "sampled")
    seen, params, rfs, near = set(), [], [], []
    for point in points:
        c = check(space, point)
        f.checked += 1
        f.rejections.update(c.failures)
        if c.analysis is None:
            continue
        f.valid += 1
        _track_best(f.best, c.analysis, space)
        _keep_near(near, (violation(space.task.constraints, c), f.checked, c))
        if c.feasible:
            f.feasible += 1
            seen.add(fingerprint(c.analysis.spec))
            params.append(c.analysis.params)
            rfs.append(c.analysis.rf)
    if not exact and not f.feasible and search > 0:
        _search(f, space, [c.params for _, _, c in sorted(near, key=_nearness)[:STARTS]], search, rng, near)
        if f.found is not None:
            f._found_point = _point(space, f.found.params)
            seen.add(fingerprint(f.found.analysis.spec))
            params.append(f.found.analysis.params)
            rfs.append(f.found.analysis.rf)
    f.distinct_feasible = len(seen)
    if params:
        f.params_range, f.rf_range = (min(params), max(params)), (min(rfs), max(rfs))
    if not f.any_feasible and near:
        f.closest = min(near, key=_nearness)[2]
        f.closest_failures = _failure_details(space, f.closest)
        f._closest_point = _point(space, f.closest.params)
    f.hint = _hint(f, space)
    return f


def _nearness(item: tuple) -> tuple:
    return item[:2]  # never compare the candidates themselves


def _keep_near(near: list, item: tuple) -> None:
    """Keep the few candidates closest to feasible, not every analysis of a 20,000-point space."""
    near.append(item)
    if len(near) > 4 * STARTS:
        near.sort(key=_nearness)
        del near[STARTS:]


def violation(constraints: Constraints, c: Candidate) -> float:
    """How far a candidate is from feasible: 0 when feasible, infinite when it does not build.

    Each failing limit counts its excess relative to the limit (params over the limit / limit, RF
    shortfall / min RF); any other failing constraint (a required op, fc, classes) counts 1.
    """
    if c.analysis is None:
        return math.inf
    a, excess = c.analysis, {}
    if constraints.max_params is not None:  # keyed by the constraint's name, as in Constraints._rules
        excess[f"params < {constraints.max_params:,}"] = (a.params - constraints.max_params + 1) / max(constraints.max_params, 1)
    if constraints.min_rf is not None:
        excess[f"RF > {constraints.min_rf}"] = (constraints.min_rf + 1 - a.rf) / (constraints.min_rf + 1)
    if constraints.max_rf is not None:
        excess[f"RF <= {constraints.max_rf}"] = (a.rf - constraints.max_rf) / max(constraints.max_rf, 1)
    if constraints.max_macs is not None:
        excess[f"MACs < {constraints.max_macs:,}"] = (a.macs - constraints.max_macs + 1) / max(constraints.max_macs, 1)
    return sum(excess.get(name, 1.0) for name in c.failures)


def _search(f: Feasibility, space: Space, starts: list[dict[str, Any]], budget: int, rng: random.Random,
            near: list) -> None:
    """Greedy walk: from each start, take any single-choice change that lowers the violation, until
    none does; then restart from the next start (the closest samples first, then random points).
    Stops at the first feasible point or when ``budget`` points have been checked. Every valid point
    checked joins ``near`` as ``(violation, tiebreak, candidate)``."""
    memo: dict[tuple, float] = {}
    keys = list(space.choices)

    def score(point: dict[str, Any]) -> float:
        key = tuple(repr(point[k]) for k in keys)
        if key not in memo:
            if f.searched >= budget:
                return math.inf
            f.searched += 1
            c = check(space, point)
            memo[key] = violation(space.task.constraints, c)
            if c.analysis is not None:
                _track_best(f.best, c.analysis, space)  # the hint then speaks of every point tried
                _keep_near(near, (memo[key], -f.searched, c))
            if c.feasible and f.found is None:
                f.found = c
        return memo[key]

    starts = iter(starts)
    while f.found is None and f.searched < budget and len(memo) < space.size:
        point = next(starts, None) or space.sample(rng)
        current = score(point)
        improved = True
        while improved and f.found is None and f.searched < budget:
            improved = False
            for name in rng.sample(keys, len(keys)):
                for value in rng.sample(space.choices[name], len(space.choices[name])):
                    candidate = {**point, name: value}
                    v = score(candidate)
                    if v < current:
                        point, current, improved = candidate, v, True
                        break
                if f.found is not None or f.searched >= budget:
                    break


def _failure_details(space: Space, c: Candidate) -> str:
    if c.analysis is None:
        return ", ".join(c.failures)
    return ", ".join(r.line().replace(" ✗", "") for r in space.task.constraints.failures(c.analysis))


def _point(space: Space, params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in space.encode(params).items())


def _track_best(best: dict[str, Any], a: Analysis, space: Space) -> None:
    best["min_params"] = min(best.get("min_params", a.params), a.params)
    best["max_rf"] = max(best.get("max_rf", a.rf), a.rf)
    best["min_rf"] = min(best.get("min_rf", a.rf), a.rf)
    best["min_macs"] = min(best.get("min_macs", a.macs), a.macs)
    best.setdefault("features", set()).update(a.features)
    best.setdefault("outputs", set()).add(a.out_shape)


def _hint(f: Feasibility, space: Space) -> str:
    if f.any_feasible:
        return ""
    if not f.checked:
        return "no point was checked: pass --samples 1 or more"
    c, b = space.task.constraints, f.best
    where = "in this space" if f.method == "exact" else "among the points tried"
    if not f.valid:
        reason = f.rejections.most_common(1)[0][0]
        which = "of this space" if f.method == "exact" else "tried"
        return f"no point {which} builds a valid net ({reason}): widen the input or remove pools/strides"
    hints = []
    if c.min_rf is not None and b["max_rf"] <= c.min_rf:
        hints.append(f"max RF {where} is {b['max_rf']} <= {c.min_rf}: add dilation, a larger kernel or another pool")
    if c.max_rf is not None and b["min_rf"] > c.max_rf:
        hints.append(f"min RF {where} is {b['min_rf']} > {c.max_rf}: remove a pool or use smaller kernels")
    if c.max_params is not None and b["min_params"] >= c.max_params:
        hints.append(f"fewest params {where} is {b['min_params']:,} >= {c.max_params:,}: offer narrower widths")
    if c.max_macs is not None and b["min_macs"] >= c.max_macs:
        hints.append(f"fewest multiply-adds {where} is {b['min_macs']:,} >= {c.max_macs:,}: pool earlier or narrow the widths")
    for feature in c.require:
        if feature not in b["features"]:
            hints.append(f"no net {where} uses {feature}: add a choice that brings it in")
    if hints:
        return "; ".join(hints)
    top = ", ".join(name for name, _ in f.rejections.most_common(2))
    return f"each constraint is met somewhere, but never all together (most rejections: {top}): widen the choices"


def require_feasible(f: Feasibility) -> str:
    """Fail fast, with the hint, when enumeration proves that nothing meets the constraints.

    A sampled space is never called infeasible here: when neither the samples nor the walk found a
    feasible point, this returns a one-line warning (what was tried, what came closest) and the
    caller decides: ``nas space`` prints it, ``nas search`` refuses to start, since its sampler would
    do no better than the walk. Returns "" when there is nothing to say.
    """
    if f.any_feasible:
        return ""
    if f.method == "exact":
        raise NasError(f"space {f.space} is infeasible: none of {f.checked:,} points of it meets every "
                       f"constraint; {f.hint}")
    return f"warning: {f.unproven()}" + (f"; hint: {f.hint}" if f.hint else "")
