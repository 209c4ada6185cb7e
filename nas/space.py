"""Search spaces: a task plus a template of specs whose values are choices.

A space file (YAML, in ``search_spaces/``) holds::

    name: tiny
    description: one line
    task:
      dataset: mnist
      target: 0.99            # test accuracy
      max_epochs: 15
      constraints: {max_params: 20000, min_rf: 20, require: [gap], fc: none, classes: 10}
    train: {lr: 0.05}         # optional trainer settings (nas.train.TrainConfig fields)
    input: [1, 28, 28]
    choices:                  # every choice is a finite list
      w: [8, 16]
      pool: [maxpool, avgpool]
      drop: [0.0, 0.1]
    blocks:
      features:
        - conv: {out: $w, padding: 1}
        - relu
        - $pool                       # an op name can be a choice
        - conv: {out: $w * 2}         # any value can be an expression of choices
        - dropout: {p: $drop, when: $drop > 0}   # `when` keeps a layer only if true
      head:
        - pwconv: {out: 10}
        - gap
    points:                   # documented designs that are points of this space
      some_design: {w: 8, pool: maxpool, drop: 0.1}

A block can also be ``{when: EXPR, layers: [...]}``; nested lists of layers are spliced, so YAML
anchors can share runs of layers. An op (or a choice used as an op) that is ``none`` is left out.
Expressions use ``$name``, numbers, strings, ``+ - * / // %``, comparisons, ``in``, ``and``,
``or``, ``not`` and ``x if cond else y``.

>>> space = Space.from_dict({"name": "s", "task": {"dataset": "mnist", "target": 0.9},
...     "input": [1, 8, 8], "choices": {"w": [2, 4]},
...     "blocks": {"f": [{"conv": {"out": "$w * 2"}}, "gap"]}})
>>> space.size, space.spec({"w": 4}).layers[0].args
(2, {'out': 8})
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import operator
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from . import registry
from .constraints import Constraints
from .errors import NasError, SpecError
from .spec import Spec, primitives

TOP_FIELDS = ("name", "description", "task", "train", "input", "choices", "blocks", "points")
TASK_FIELDS = ("dataset", "target", "max_epochs", "constraints")


class SpaceError(NasError):
    pass


@dataclass(frozen=True)
class Task:
    dataset: str
    target: float
    max_epochs: int = 15
    constraints: Constraints = field(default_factory=Constraints)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "target": self.target, "max_epochs": self.max_epochs,
                "constraints": self.constraints.to_dict()}


@dataclass(frozen=True)
class Space:
    name: str
    task: Task
    input: tuple[int, int, int]
    choices: dict[str, tuple[Any, ...]]
    blocks: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    points: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"

    @property
    def size(self) -> int:
        """Number of points (choice combinations); distinct nets may be fewer."""
        return math.prod(len(v) for v in self.choices.values())

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "Space":
        def fail(msg: str) -> SpaceError:
            return SpaceError(f"{source}: {msg}")

        if not isinstance(data, dict):
            raise fail("a space file is a mapping with task, input, choices and blocks")
        unknown = set(data) - set(TOP_FIELDS)
        if unknown:
            raise fail(f"unknown field {sorted(unknown)[0]!r} (allowed: {', '.join(TOP_FIELDS)})")
        for key in ("task", "input", "blocks"):
            if key not in data:
                raise fail(f"missing field {key!r}")
        task = _parse_task(data["task"], fail)
        choices = data.get("choices") or {}
        if not isinstance(choices, dict):
            raise fail("'choices' must map names to lists of values")
        for key, values in choices.items():
            if not isinstance(values, list) or not values:
                raise fail(f"choices.{key} must be a non-empty list of values, got {values!r}")
            if len(set(map(repr, values))) != len(values):
                raise fail(f"choices.{key} lists a value twice: {values!r}")
        train = data.get("train") or {}
        if not isinstance(train, dict):
            raise fail("'train' must be a mapping of trainer settings")
        if not isinstance(data["blocks"], dict):
            raise fail("'blocks' must map block names to lists of layers")
        space = cls(str(data.get("name") or Path(source).stem), task, tuple(data["input"]),
                    {k: tuple(v) for k, v in choices.items()}, data["blocks"], train,
                    dict(data.get("points") or {}), str(data.get("description", "")), source)
        space._check_template(fail)
        return space

    def _check_template(self, fail) -> None:
        used = set(re.findall(r"\$([A-Za-z_]\w*)", json.dumps(self.blocks)))
        undefined = used - set(self.choices)
        if undefined:
            raise fail(f"blocks use ${sorted(undefined)[0]} but choices define only: {', '.join(self.choices) or 'none'}")
        unused = set(self.choices) - used
        if unused:
            raise fail(f"choices.{sorted(unused)[0]} is never used in blocks; remove it or use it as ${sorted(unused)[0]}")
        try:
            self.spec({k: v[0] for k, v in self.choices.items()})  # structure errors surface now
        except SpecError as err:
            raise fail(f"blocks: {err}") from None
        for design, params in self.points.items():
            if not isinstance(params, dict):
                raise fail(f"points.{design} must map choices to values")
            try:
                self.check_params(params)
            except NasError as err:
                raise fail(f"points.{design}: {err}") from None

    @classmethod
    def load(cls, name: str) -> "Space":
        path = registry.space_path(name)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise SpaceError(f"{path}: not valid YAML{where}; fix the syntax") from None
        return cls.from_dict(data, str(path))

    # -- points -> specs ---------------------------------------------------------------------
    def check_params(self, params: dict[str, Any]) -> None:
        """Strict: every choice given, nothing else, each value one the space allows."""
        unknown = set(params) - set(self.choices)
        if unknown:
            raise SpaceError(f"unknown choice {sorted(unknown)[0]!r} for space {self.name} "
                             f"(choices: {', '.join(self.choices)})")
        missing = set(self.choices) - set(params)
        if missing:
            raise SpaceError(f"no value for choice {sorted(missing)[0]!r} of space {self.name}")
        for key, value in params.items():
            if not any(_same(value, v) for v in self.choices[key]):
                raise SpaceError(f"{key}={value!r} is outside space {self.name} (allowed: {list(self.choices[key])})")

    def spec(self, params: dict[str, Any]) -> Spec:
        """The spec at one point of the space (params are not range-checked here)."""
        blocks = {}
        for name, block in self.blocks.items():
            layers = block
            if isinstance(block, dict):
                if not _truthy(block.get("when", True), params):
                    continue
                layers = block.get("layers", [])
            rendered = list(_render_layers(layers, params))
            if rendered:
                blocks[name] = rendered
        key = "-".join(f"{params[k]}" for k in sorted(params))
        return Spec.from_dict({"name": f"{self.name}[{key}]" if params else self.name,
                               "input": list(self.input), "blocks": blocks})

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {k: rng.choice(v) for k, v in self.choices.items()}

    def enumerate(self) -> Iterator[dict[str, Any]]:
        keys = list(self.choices)
        for values in itertools.product(*(self.choices[k] for k in keys)):
            yield dict(zip(keys, values))

    def point_of(self, design: str) -> dict[str, Any]:
        if design not in self.points:
            raise SpaceError(f"design {design!r} is not a point of space {self.name} "
                             f"(points: {', '.join(self.points) or 'none'}); add it under 'points:' in {self.source}")
        return dict(self.points[design])


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                            and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _parse_task(task: Any, fail) -> Task:
    if not isinstance(task, dict):
        raise fail("'task' must be a mapping with dataset, target, max_epochs, constraints")
    unknown = set(task) - set(TASK_FIELDS)
    if unknown:
        raise fail(f"unknown field task.{sorted(unknown)[0]} (allowed: {', '.join(TASK_FIELDS)})")
    if not isinstance(task.get("dataset"), str):
        raise fail("task.dataset must name a dataset (mnist, fashion_mnist, cifar10, or an image-folder path)")
    target = task.get("target")
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not 0 < target <= 1:
        raise fail(f"task.target must be a test accuracy in (0, 1], e.g. 0.994; got {target!r}")
    epochs = task.get("max_epochs", 15)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise fail(f"task.max_epochs must be a positive integer, got {epochs!r}")
    try:
        constraints = Constraints.from_dict(task.get("constraints"))
    except (NasError, TypeError) as err:
        raise fail(f"task.constraints: {err}") from None
    return Task(task["dataset"], float(target), epochs, constraints)


# -- templates ---------------------------------------------------------------------------------

def _render_layers(items: Any, params: dict[str, Any]) -> Iterator[Any]:
    if not isinstance(items, list):
        raise SpecError(f"a block is a list of layers, got {items!r}")
    for item in items:
        if isinstance(item, list):
            yield from _render_layers(item, params)
        elif isinstance(item, str):
            op = _value(item, params)
            if op not in (None, "none"):
                yield op
        elif isinstance(item, dict) and len(item) == 1:
            (op, args), = item.items()
            op = _value(op, params)
            args = dict(args or {})
            if not _truthy(args.pop("when", True), params) or op in (None, "none"):
                continue
            yield {op: {k: _value(v, params) for k, v in args.items()}} if args else op
        else:
            raise SpecError(f"a layer is an op name or a one-key mapping, got {item!r}")


def _truthy(cond: Any, params: dict[str, Any]) -> bool:
    return bool(_value(cond, params))


def _value(value: Any, params: dict[str, Any]) -> Any:
    if not isinstance(value, str) or "$" not in value:
        return value
    return evaluate(value, params)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b}


def evaluate(expr: str, params: dict[str, Any]) -> Any:
    """Evaluate a template expression such as ``$w * 2`` or ``$drop > 0 and $bn``.

    >>> evaluate("$w * 2 if $wide else $w", {"w": 8, "wide": True})
    16
    """
    source = re.sub(r"\$([A-Za-z_]\w*)", r"\1", expr.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise SpecError(f"cannot parse expression {expr!r}") from None
    return _eval(tree.body, params, expr)


def _eval(node: ast.AST, params: dict[str, Any], expr: str) -> Any:
    ev = lambda n: _eval(n, params, expr)  # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in params:
            raise SpecError(f"expression {expr!r} uses unknown choice {node.id!r}")
        return params[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [ev(e) for e in node.elts]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        value = ev(node.operand)
        return not value if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BoolOp):
        values = [ev(v) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
        left = ev(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return ev(node.body) if ev(node.test) else ev(node.orelse)
    raise SpecError(f"expression {expr!r}: {type(node).__name__} is not allowed in templates")


def fingerprint(spec: Spec) -> str:
    """A short hash of the net itself (ops and arguments), ignoring names and table visibility."""
    prims = [(op, args) for _, op, args, _, _ in primitives(spec)]
    payload = json.dumps([list(spec.input), prims], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def list_spaces() -> dict[str, Path]:
    return registry.spaces()
