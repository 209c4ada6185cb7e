"""How much of a space meets its constraints, found before any training.

Small spaces are enumerated exactly; larger ones are sampled (the report says which).

>>> from nas.space import Space
>>> space = Space.from_dict({"name": "s", "task": {"dataset": "mnist", "target": 0.9,
...     "constraints": {"max_params": 50}}, "input": [1, 8, 8], "choices": {"w": [2, 4, 8]},
...     "blocks": {"f": [{"conv": {"out": "$w", "kernel": 3}}, "gap"]}})
>>> f = feasibility(space)
>>> (f.method, f.checked, f.feasible, f.params_range)
('exact', 3, 2, (20, 40))
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .analysis import Analysis, analyse
from .errors import NasError, SpecError
from .space import Space, fingerprint

EXACT_LIMIT = 20_000
SAMPLES = 4_000


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
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


def feasibility(space: Space, exact_limit: int = EXACT_LIMIT, samples: int = SAMPLES, seed: int = 0) -> Feasibility:
    exact = space.size <= exact_limit
    if exact:
        points = space.enumerate()
    else:
        rng = random.Random(seed)
        points = (space.sample(rng) for _ in range(samples))
    f = Feasibility(space.name, space.size, "exact" if exact else "sampled")
    seen, params, rfs = set(), [], []
    for point in points:
        c = check(space, point)
        f.checked += 1
        f.rejections.update(c.failures)
        if c.analysis is None:
            continue
        f.valid += 1
        _track_best(f.best, c.analysis, space)
        if c.feasible:
            f.feasible += 1
            seen.add(fingerprint(c.analysis.spec))
            params.append(c.analysis.params)
            rfs.append(c.analysis.rf)
    f.distinct_feasible = len(seen)
    if params:
        f.params_range, f.rf_range = (min(params), max(params)), (min(rfs), max(rfs))
    f.hint = _hint(f, space)
    return f


def _track_best(best: dict[str, Any], a: Analysis, space: Space) -> None:
    best["min_params"] = min(best.get("min_params", a.params), a.params)
    best["max_rf"] = max(best.get("max_rf", a.rf), a.rf)
    best["min_rf"] = min(best.get("min_rf", a.rf), a.rf)
    best["min_macs"] = min(best.get("min_macs", a.macs), a.macs)
    best.setdefault("features", set()).update(a.features)
    best.setdefault("outputs", set()).add(a.out_shape)


def _hint(f: Feasibility, space: Space) -> str:
    if f.feasible:
        return ""
    c, b = space.task.constraints, f.best
    if not f.valid:
        reason = f.rejections.most_common(1)[0][0]
        return f"no point of this space builds a valid net ({reason}): widen the input or remove pools/strides"
    hints = []
    if c.min_rf is not None and b["max_rf"] <= c.min_rf:
        hints.append(f"max RF in this space is {b['max_rf']} <= {c.min_rf}: add dilation, a larger kernel or another pool")
    if c.max_rf is not None and b["min_rf"] > c.max_rf:
        hints.append(f"min RF in this space is {b['min_rf']} > {c.max_rf}: remove a pool or use smaller kernels")
    if c.max_params is not None and b["min_params"] >= c.max_params:
        hints.append(f"fewest params in this space is {b['min_params']:,} >= {c.max_params:,}: offer narrower widths")
    if c.max_macs is not None and b["min_macs"] >= c.max_macs:
        hints.append(f"fewest multiply-adds in this space is {b['min_macs']:,} >= {c.max_macs:,}: pool earlier or narrow the widths")
    for feature in c.require:
        if feature not in b["features"]:
            hints.append(f"no net in this space uses {feature}: add a choice that brings it in")
    if hints:
        return "; ".join(hints)
    top = ", ".join(name for name, _ in f.rejections.most_common(2))
    return f"each constraint is met somewhere, but never all together (most rejections: {top}): widen the choices"


def require_feasible(f: Feasibility) -> None:
    """Fail fast, with the hint, when nothing in the space can meet the constraints."""
    if f.feasible == 0:
        how = "of" if f.method == "exact" else "sampled from"
        raise NasError(f"space {f.space} is infeasible: none of {f.checked:,} points {how} it meets every "
                       f"constraint; {f.hint}")
