"""Hard constraints on a candidate, checked on its analysis before any training.

Bounds read the way assignments state them: ``max_params: 20000`` means *fewer than* 20,000
parameters, ``min_rf: 44`` means an RF *above* 44.

>>> from nas.spec import Spec
>>> from nas.analysis import analyse
>>> a = analyse(Spec.from_dict({"input": [1, 8, 8], "layers": [{"conv": {"out": 4}}, "gap"]}))
>>> [c.line() for c in Constraints(max_params=100, require=("gap",)).check(a)]
['params < 100 ✓ (40)', 'requires gap ✓']
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from .analysis import Analysis
from .errors import NasError

FEATURES = ("dws", "depthwise", "dilated", "gap", "fc", "pool", "bn", "dropout")
FC_RULES = ("any", "none", "after_gap")


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{self.name} {mark}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Constraints:
    """Hard limits a net must meet; each one's result comes from :meth:`check`.

    >>> from nas import Constraints, analyse, load_design
    >>> c = Constraints.from_dict({"max_params": 20000, "min_rf": 44, "require": "gap"})
    >>> [(r.name, r.ok) for r in c.check(analyse(load_design("seed001")))][:2]
    [('params < 20,000', True), ('RF > 44', True)]
    """

    max_params: int | None = None
    min_rf: int | None = None
    max_rf: int | None = None
    max_macs: int | None = None
    require: tuple[str, ...] = ()
    fc: str = "any"
    classes: int | None = None  # the net's output must be this many logits

    def __post_init__(self):
        bad = [f for f in self.require if f not in FEATURES]
        if bad:
            raise NasError(f"unknown required operation {bad[0]!r} (known: {', '.join(FEATURES)})")
        if self.fc not in FC_RULES:
            raise NasError(f"fc must be one of {', '.join(FC_RULES)}, got {self.fc!r}")
        for name in ("max_params", "min_rf", "max_rf", "max_macs", "classes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise NasError(f"{name} must be a non-negative integer, got {value!r}")
        # Limits no net can meet are refused here, before a search spends its budget finding that out.
        for name in ("max_params", "max_macs", "classes"):
            if getattr(self, name) == 0:
                raise NasError(f"{name} 0 admits no net; give at least 1 or leave it out")
        if self.min_rf is not None and self.max_rf is not None and self.min_rf >= self.max_rf:
            raise NasError(f"min_rf {self.min_rf} is not below max_rf {self.max_rf}, so no net meets both "
                           f"(RF above {self.min_rf} and at most {self.max_rf}); lower min_rf or raise max_rf")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Constraints":
        data = dict(data or {})
        allowed = [f.name for f in fields(cls)]
        unknown = set(data) - set(allowed)
        if unknown:
            raise NasError(f"unknown constraint {sorted(unknown)[0]!r} (allowed: {', '.join(allowed)})")
        if isinstance(data.get("require"), str):
            data["require"] = [s.strip() for s in data["require"].split(",") if s.strip()]
        data["require"] = tuple(data.get("require") or ())
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v not in (None, (), "any")}

    def _rules(self) -> list[tuple[str, Callable[[Analysis], bool], Callable[[Analysis], str]]]:
        """(name, holds, detail) for every constraint that is set, in a fixed order."""
        rules = []
        if self.max_params is not None:
            rules.append((f"params < {self.max_params:,}", lambda a: a.params < self.max_params, lambda a: f"{a.params:,}"))
        if self.min_rf is not None:
            rules.append((f"RF > {self.min_rf}", lambda a: a.rf > self.min_rf, lambda a: str(a.rf)))
        if self.max_rf is not None:
            rules.append((f"RF <= {self.max_rf}", lambda a: a.rf <= self.max_rf, lambda a: str(a.rf)))
        if self.max_macs is not None:
            rules.append((f"MACs < {self.max_macs:,}", lambda a: a.macs < self.max_macs, lambda a: f"{a.macs:,}"))
        for feature in self.require:
            rules.append((f"requires {feature}", lambda a, f=feature: f in a.features, lambda a: ""))
        if self.fc == "none":
            rules.append(("no fully-connected layer", lambda a: "fc" not in a.features, lambda a: ""))
        elif self.fc == "after_gap":
            rules.append(("fully-connected only after GAP",
                          lambda a: "fc" not in a.features or "fc_after_gap" in a.features, lambda a: ""))
        if self.classes is not None:
            rules.append((f"outputs {self.classes} classes", lambda a: class_scores(a) == self.classes,
                          lambda a: f"output {list(a.out_shape)}"))
        return rules

    def names(self) -> list[str]:
        return [name for name, _, _ in self._rules()]

    def check(self, a: Analysis) -> list[Result]:
        """One :class:`Result` per constraint that is set."""
        return [Result(name, holds(a), detail(a)) for name, holds, detail in self._rules()]

    def failures(self, a: Analysis) -> list[Result]:
        return [r for r in self.check(a) if not r.ok]


def class_scores(a: Analysis) -> int | None:
    """Number of classes the net outputs: (C,), or (C, 1, 1) flattened by the module."""
    return a.out_shape[0] if all(n == 1 for n in a.out_shape[1:]) else None
