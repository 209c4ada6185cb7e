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
``or``, ``not``, ``x if cond else y``, indexing ``$p[0]`` and ``len``/``min``/``max``.

A choice value may be a list: a channel pattern (``widths: [[8, 8, 16], [8, 16, 16]]``, used as
``'$widths[0]'``; quote it inside ``{...}``) or a set of positions (``pools: [[1, 3], [2]]``, used as
``when: 2 in $pools``). ``repeat: {times: N, as: i, start: 1, layers: [...]}`` writes its layers N
times with ``$i`` counting, so a pool position is an ordinary choice with no line per slot::

    - repeat:
        times: 4
        as: i
        start: 1
        layers:
          - conv: {out: '$widths[$i - 1]', padding: 1}
          - maxpool: {when: $i in $pools}

A study stores each value as a label Optuna accepts (:meth:`Space.labels`): a list as its items
joined by ``-`` (``"8-8-16"``). ``when:`` must be an expression over choices or true/false, and
every value of every choice must take part in at least one valid net; both are checked at load.

>>> space = Space.from_dict({"name": "s", "task": {"dataset": "mnist", "target": 0.9},
...     "input": [1, 8, 8], "choices": {"w": [2, 4]},
...     "blocks": {"f": [{"conv": {"out": "$w * 2"}}, "gap"]}})
>>> space.size, space.spec({"w": 4}).layers[0].args
(2, {'out': 8})
"""
from __future__ import annotations

import ast
import copy
import functools
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

from . import registry
from .analysis import analyse
from .constraints import Constraints
from .errors import NasError, SpecError
from .spec import Spec, primitives
from .yamlfile import read_yaml

TOP_FIELDS = ("name", "description", "task", "train", "input", "choices", "blocks", "points")
TASK_FIELDS = ("dataset", "target", "max_epochs", "constraints", "validation", "cost", "seeds", "confirm_epochs",
               "search_minutes")
COSTS = ("params", "macs", "latency")


class SpaceError(NasError):
    pass


@dataclass(frozen=True)
class Task:
    """What a search is asked: the dataset, the target test accuracy, the epoch budget, the hard
    constraints, and how answers are chosen and confirmed.

    ``validation`` is how many training images are held out to choose on (a whole number, or a
    fraction below 1); the test set is read only to confirm. ``cost`` is what "smaller" means:
    ``params``, ``macs`` or ``latency`` (seconds per image on the training device). ``seeds`` is
    how many seeds confirm a design: it meets the target only when every seed's final test
    accuracy does, after ``confirm_epochs`` epochs (default: the space's ``train.epochs``, else
    ``max_epochs``). Search trials train the same schedule (:mod:`nas.schedule`), so the search
    decides on what confirmation will test. ``search_minutes`` is the search's default wall-clock
    budget (``--timeout`` overrides it); confirmation follows it.
    """

    dataset: str
    target: float
    max_epochs: int = 15
    constraints: Constraints = field(default_factory=Constraints)
    validation: float = 5000
    cost: str = "params"
    seeds: int = 3
    confirm_epochs: int | None = None
    search_minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "target": self.target, "max_epochs": self.max_epochs,
                "constraints": self.constraints.to_dict(), "validation": self.validation,
                "cost": self.cost, "seeds": self.seeds, "confirm_epochs": self.confirm_epochs,
                "search_minutes": self.search_minutes}


@dataclass(frozen=True)
class Space:
    """A family of nets (``choices`` filling ``$names`` in ``blocks``) and the task they answer.

    >>> from nas import Space
    >>> space = Space.load("mnist_squeeze")
    >>> space.task.target, space.size > 100
    (0.994, True)
    """

    name: str
    task: Task
    input: tuple[int, int, int]
    choices: dict[str, tuple[Any, ...]]
    blocks: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    points: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"

    def digest(self) -> str:
        """A short hash of what makes the space's nets and their schedule: input, choices, blocks and
        train settings (not the description, the documented points or the task, whose fields a study
        records one by one). A study records it when made, so a resume from an edited file is caught.

        >>> Space.load("mnist_squeeze").digest() == Space.load("mnist_squeeze").digest()
        True
        """
        payload = json.dumps([list(self.input), {k: list(v) for k, v in self.choices.items()}, self.blocks,
                              self.train], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]

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
        shape = data["input"]
        if not (isinstance(shape, list) and len(shape) == 3
                and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise fail(f"input must be [channels, height, width] of positive integers, e.g. [1, 28, 28]; got {shape!r}")
        choices = _parse_choices(data.get("choices") or {}, fail)
        train = data.get("train") or {}
        if not isinstance(train, dict):
            raise fail("'train' must be a mapping of trainer settings")
        if task.confirm_epochs is not None and train.get("epochs", task.confirm_epochs) != task.confirm_epochs:
            raise fail(f"train.epochs ({train['epochs']}) differs from task.confirm_epochs ({task.confirm_epochs}): "
                       "the search decides on the schedule that confirms; keep one of them")
        if not isinstance(data["blocks"], dict):
            raise fail("'blocks' must map block names to lists of layers")
        points = data.get("points") or {}
        if not isinstance(points, dict):
            raise fail("'points' must map design names to their choices")
        space = cls(str(data.get("name") or Path(source).stem), task, tuple(shape), choices, data["blocks"],
                    train, dict(points), str(data.get("description", "")), source)
        space._check_template(fail)
        return space

    def _check_template(self, fail) -> None:
        loops = _check_structure(self.blocks, fail)
        clash = loops & set(self.choices)
        if clash:
            raise fail(f"repeat index ${sorted(clash)[0]} is also a choice; name the index something else")
        used = set(re.findall(r"\$([A-Za-z_]\w*)", json.dumps(self.blocks, default=str)))
        undefined = used - set(self.choices) - loops
        if undefined:
            raise fail(f"blocks use ${sorted(undefined)[0]} but choices define only: {', '.join(self.choices) or 'none'}")
        unused = set(self.choices) - used
        if unused:
            raise fail(f"choices.{sorted(unused)[0]} is never used in blocks; remove it or use it as ${sorted(unused)[0]}")
        _check_values(self, fail)
        for design, params in self.points.items():
            if not isinstance(params, dict):
                raise fail(f"points.{design} must map choices to values")
            try:
                self.points[design] = self.check_params(params)
            except NasError as err:
                raise fail(f"points.{design}: {err}") from None

    @classmethod
    def load(cls, name: str) -> "Space":
        path = registry.space_path(name)
        return cls.from_dict(read_yaml(path, "search space file"), str(path))

    # -- labels: what a study stores for each choice ---------------------------------------------
    def labels(self, name: str) -> list[Any]:
        """The values of choice ``name`` as Optuna-safe labels (None, bool, int, float or str).

        Scalars are their own label; a list is its items joined by ``-`` (``[8, 16, 32]`` ->
        ``"8-16-32"``), anything else its JSON. Labels stay readable in a study and its reports.
        """
        return [_label(v) for v in self.choices[name]]

    def encode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params with each value replaced by its label (the form ``trial.params`` holds)."""
        return {k: _label(v) if k in self.choices else v for k, v in params.items()}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params with each label replaced by its value; values (and unknown keys) pass unchanged."""
        out = dict(params)
        for key, given in params.items():
            if key in self.choices and isinstance(given, str):
                for value in self.choices[key]:
                    if not isinstance(value, str) and _label(value) == given:
                        out[key] = copy.deepcopy(value)
                        break
        return out

    # -- points -> specs ---------------------------------------------------------------------
    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Strict: every choice given, nothing else, each value (or its label) one the space allows.

        Returns the params with labels decoded to values.
        """
        unknown = set(params) - set(self.choices)
        if unknown:
            raise SpaceError(f"unknown choice {sorted(unknown)[0]!r} for space {self.name} "
                             f"(choices: {', '.join(self.choices)})")
        missing = set(self.choices) - set(params)
        if missing:
            raise SpaceError(f"no value for choice {sorted(missing)[0]!r} of space {self.name}")
        decoded = self.decode(params)
        for key, value in decoded.items():
            if not any(_same(value, v) for v in self.choices[key]):
                raise SpaceError(f"{key}={value!r} is outside space {self.name} (allowed: {list(self.choices[key])})")
        return decoded

    def spec(self, params: dict[str, Any]) -> Spec:
        """The spec at one point of the space, given by values or labels (not range-checked here)."""
        params = self.decode(params)
        blocks, budget = {}, [MAX_LAYERS]
        for name, block in self.blocks.items():
            layers = block
            if isinstance(block, dict):
                if not _truthy(block.get("when", True), params):
                    continue
                layers = block.get("layers", [])
            rendered = list(_render_layers(layers, params, budget))
            if rendered:
                blocks[name] = rendered
        key = "-".join(f"{_label(params[k])}" for k in sorted(params))
        return Spec.from_dict({"name": f"{self.name}[{key}]" if params else self.name,
                               "input": list(self.input), "blocks": blocks})

    def build_error(self, params: dict[str, Any]) -> tuple[str, str] | None:
        """Why the point gives no valid net: ``("template", reason)`` when its spec cannot be
        written (bad op, argument or expression), ``("shapes", reason)`` when the shapes do not fit;
        None when it builds."""
        try:
            spec = self.spec(params)
        except SpecError as err:
            return "template", str(err)
        try:
            analyse(spec)
        except SpecError as err:
            return "shapes", str(err)
        return None

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {k: rng.choice(v) for k, v in self.choices.items()}

    def first(self) -> dict[str, Any]:
        return {k: v[0] for k, v in self.choices.items()}

    def enumerate(self) -> Iterator[dict[str, Any]]:
        keys = list(self.choices)
        for values in itertools.product(*(self.choices[k] for k in keys)):
            yield dict(zip(keys, values))

    def point_of(self, design: str) -> dict[str, Any]:
        if design not in self.points:
            raise SpaceError(f"design {design!r} is not a point of space {self.name} "
                             f"(points: {', '.join(self.points) or 'none'}); add it under 'points:' in {self.source}")
        return dict(self.points[design])


def _label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and value and all(isinstance(x, (bool, int, float, str)) for x in value):
        return "-".join(str(x) for x in value)
    return json.dumps(value, sort_keys=True, default=str)


def _parse_choices(choices: Any, fail) -> dict[str, tuple[Any, ...]]:
    if not isinstance(choices, dict):
        raise fail("'choices' must map names to lists of values")
    for key, values in choices.items():
        if not isinstance(values, list) or not values:
            raise fail(f"choices.{key} must be a non-empty list of values, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise fail(f"choices.{key} lists a value twice: {values!r}")
        labels = [repr(_label(v)) for v in values]  # repr: the label 8 and the label "8" differ
        for i, label in enumerate(labels):
            if label in labels[:i]:
                other = values[labels.index(label)]
                raise fail(f"choices.{key}: values {other!r} and {values[i]!r} would both be stored as {_label(other)!r}; "
                           "rename the string value")
    return {k: tuple(v) for k, v in choices.items()}


def _check_structure(blocks: dict[str, Any], fail) -> set[str]:
    """Blocks, `repeat` and `when:` are well formed; returns the names of repeat indices."""
    loops: set[str] = set()
    for name, block in blocks.items():
        where = f"blocks.{name}"
        if isinstance(block, dict):
            extra = set(block) - {"when", "layers"}
            if extra:
                raise fail(f"{where}: unknown key {sorted(extra)[0]!r}; a block is a list of layers or "
                           "{when: EXPR, layers: [...]}")
            _check_when(block.get("when", True), where, fail)
            block = block.get("layers", [])
        _check_layers(block, where, fail, loops)
    return loops


def _check_layers(items: Any, where: str, fail, loops: set[str]) -> None:
    if not isinstance(items, list):
        raise fail(f"{where}: a block is a list of layers, got {items!r}")
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if isinstance(item, list):
            _check_layers(item, here, fail, loops)
        elif isinstance(item, dict) and len(item) == 1:
            (op, args), = item.items()
            here = f"{here} ({op})"
            if args is not None and not isinstance(args, dict):
                raise fail(f"{here}: arguments must be a mapping, got {args!r}")
            args = args or {}
            _check_when(args.get("when", True), here, fail)
            if op == REPEAT:
                loops.add(_check_repeat(args, here, fail))
                _check_layers(args.get("layers"), f"{here}.layers", fail, loops)


def _check_repeat(args: dict[str, Any], where: str, fail) -> str:
    extra = set(args) - {"times", "as", "start", "layers", "when"}
    if extra or "times" not in args or "layers" not in args:
        raise fail(f"{where}: write repeat: {{times: N, as: i, start: 0, layers: [...]}} "
                   f"({'unknown key ' + repr(sorted(extra)[0]) if extra else 'times and layers are required'})")
    index = args.get("as", "i")
    if not isinstance(index, str) or not index.isidentifier():
        raise fail(f"{where}: repeat's 'as' must be a name such as i, got {index!r}")
    return index


def _check_when(cond: Any, where: str, fail) -> None:
    """A condition is an expression over choices, or true/false; any other string would always
    count as true, which is never what was meant."""
    if isinstance(cond, bool):
        return
    if isinstance(cond, str) and "$" in cond:
        try:
            _parse(cond)
        except SpecError as err:
            raise fail(f"{where}: when: {err}") from None
        return
    raise fail(f"{where}: when: {cond!r} is not an expression over choices, so it would always count as true; "
               "write a condition with $name (e.g. when: $w > 100) or true/false")


# Bounded search for a valid net with one value fixed: the first valid point with it swapped in,
# then each single change of that point, then random points.
VALUE_TRIES = 60


def _check_values(space: Space, fail) -> None:
    """Every value of every choice takes part in at least one valid net (constraints aside).

    Without this a typo (``pool: [maxpool, maxpoo]``) silently removes part of the space.
    """
    rng = random.Random(0)
    base, why = space.first(), space.build_error(space.first())
    if why is not None:
        base = next((p for p in (space.sample(rng) for _ in range(VALUE_TRIES)) if space.build_error(p) is None), None)
        if base is None:
            if why[0] == "template":
                raise fail(f"blocks: {why[1]}")
            return  # shapes never fit: the feasibility report says so, with a hint
    covered = {(k, repr(v)) for k, v in base.items()}
    for key, values in space.choices.items():
        for value in values:
            if (key, repr(value)) in covered:
                continue
            found, reason, tried = _valid_with(space, base, key, value, rng)
            if found is None:
                raise fail(f"choices.{key} value {value!r} never gives a valid net: {reason} ({tried}); "
                           "fix or remove the value")
            covered.update((k, repr(v)) for k, v in found.items())


def _valid_with(space: Space, base: dict[str, Any], key: str, value: Any, rng: random.Random):
    """A valid point with ``key`` fixed to ``value``, or None, the first reason and what was tried."""
    rest = space.size // len(space.choices[key])
    if rest <= VALUE_TRIES:  # few enough to try them all: a proof
        points = ({**p, key: value} for p in space.enumerate() if p[key] is space.choices[key][0])
        tried = f"in all {rest} points with it"
    else:
        points = itertools.islice(_around(space, {**base, key: value}, key, rng), VALUE_TRIES)
        tried = f"tried {VALUE_TRIES} points with it"
    first_reason = None
    for point in points:
        why = space.build_error(point)
        if why is None:
            return point, None, tried
        first_reason = first_reason or why[1]
    return None, first_reason, tried


def _around(space: Space, point: dict[str, Any], key: str, rng: random.Random) -> Iterator[dict[str, Any]]:
    """The point, each single change of it (``key`` kept), then random points with ``key`` kept."""
    yield point
    for other, values in space.choices.items():
        for v in values if other != key else ():
            yield {**point, other: v}
    while True:
        yield {**space.sample(rng), key: point[key]}


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
    validation = task.get("validation", 5000)
    if (not isinstance(validation, (int, float)) or isinstance(validation, bool) or validation <= 0
            or (isinstance(validation, float) and validation >= 1 and not validation.is_integer())):
        raise fail(f"task.validation must be a number of training images to hold out (e.g. 5000) or a fraction "
                   f"below 1 (e.g. 0.1); got {validation!r}")
    cost = task.get("cost", "params")
    if cost not in COSTS:
        raise fail(f"task.cost must be one of {', '.join(COSTS)}; got {cost!r}")
    seeds = task.get("seeds", 3)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 20:
        raise fail(f"task.seeds must be a whole number of confirmation seeds from 1 to 20; got {seeds!r}")
    confirm_epochs = task.get("confirm_epochs")
    if confirm_epochs is not None and (not isinstance(confirm_epochs, int) or isinstance(confirm_epochs, bool)
                                       or not 1 <= confirm_epochs <= epochs):
        raise fail(f"task.confirm_epochs must be a whole number of epochs from 1 to task.max_epochs ({epochs}); "
                   f"got {confirm_epochs!r}")
    minutes = task.get("search_minutes")
    if minutes is not None and (not isinstance(minutes, (int, float)) or isinstance(minutes, bool)
                                or not 0 < minutes < 10 ** 6):
        raise fail(f"task.search_minutes must be a positive number of minutes, e.g. 45; got {minutes!r}")
    return Task(task["dataset"], float(target), epochs, constraints, validation, cost, seeds, confirm_epochs,
                None if minutes is None else float(minutes))


# -- templates ---------------------------------------------------------------------------------

REPEAT = "repeat"  # a layer `repeat: {times: N, as: i, start: 0, layers: [...]}` writes its layers N times
MAX_REPEAT = 1000
MAX_LAYERS = 10_000  # layers one point may render: nested repeats multiply (1000 x 1000 would be a million)
# The one budget of an expression's values: the items of every string and list it builds, nested
# lists counted in full (`[[$w] * 10000] * 10000` shares its rows but holds 10^8 items to show or walk).
MAX_ITEMS = 10_000
MAX_INT = 10 ** 12  # largest number an expression may compute: far above any width or kernel


def _render_layers(items: Any, params: dict[str, Any], budget: list[int]) -> Iterator[Any]:
    if not isinstance(items, list):
        raise SpecError(f"a block is a list of layers, got {_brief(items)}")
    for item in items:
        budget[0] -= 1
        if budget[0] < 0:
            raise SpecError(f"a point renders more than {MAX_LAYERS:,} layers (repeats inside repeats multiply); "
                            "fix the repeat counts")
        if isinstance(item, list):
            yield from _render_layers(item, params, budget)
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
            if op == REPEAT:
                yield from _render_repeat(args, params, budget)
                continue
            yield {op: {k: _value(v, params) for k, v in args.items()}} if args else op
        else:
            raise SpecError(f"a layer is an op name or a one-key mapping, got {_brief(item)}")


def _render_repeat(args: dict[str, Any], params: dict[str, Any], budget: list[int]) -> Iterator[Any]:
    times, start = _value(args.get("times"), params), _value(args.get("start", 0), params)
    for name, n in (("times", times), ("start", start)):
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_REPEAT:
            raise SpecError(f"repeat: {name} must be a whole number from 0 to {MAX_REPEAT}, got {n!r}")
    index = args.get("as", "i")
    for i in range(start, start + times):
        yield from _render_layers(args.get("layers"), {**params, index: i}, budget)


def _truthy(cond: Any, params: dict[str, Any]) -> bool:
    return bool(_value(cond, params))


def _value(value: Any, params: dict[str, Any]) -> Any:
    if not isinstance(value, str) or "$" not in value:
        return value
    return evaluate(value, params)


def _size(value: Any, limit: int = MAX_ITEMS) -> int:
    """Items in ``value``, nested lists counted in full, shared rows as often as they appear; the walk
    stops once past ``limit``, so it costs at most ``limit`` steps whatever the value.

    >>> row = [1] * 100
    >>> _size([row] * 100), _size("abc"), _size(7), _size([row] * 1000) > MAX_ITEMS
    (10000, 3, 1, True)
    """
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list):
        return 1
    total = 0
    for item in value:
        total += _size(item, limit - total)
        if total > limit:
            break
    return max(total, len(value))


def _brief(value: Any) -> str:
    """``repr(value)`` cut short: an error message must not be a memory bomb of its own."""
    text = repr(value) if _size(value, 200) <= 200 else f"{type(value).__name__} of over 200 items"
    return text if len(text) <= 200 else text[:200] + "..."


def _checked(value: Any, expr: str) -> Any:
    """Refuse results that would be absurd as a layer argument and could exhaust memory later."""
    if isinstance(value, (bytes, bytearray)):  # no layer takes bytes, and b'a' * 10**9 is a gigabyte
        raise SpecError(f"expression {expr!r}: bytes are not allowed in templates; fix the expression")
    if isinstance(value, (str, list)) and _size(value) > MAX_ITEMS:
        raise SpecError(f"expression {expr!r} builds a value of over {MAX_ITEMS:,} items; fix the expression")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise SpecError(f"expression {expr!r} computes a number above {MAX_INT:,}; fix the expression")
    return value


def _mul(a: Any, b: Any, expr: str) -> Any:
    for seq, n in ((a, b), (b, a)):  # check the size before Python allocates it
        if isinstance(seq, (str, list)) and isinstance(n, int) and n * _size(seq) > MAX_ITEMS:
            raise SpecError(f"expression {expr!r} would build a value of {n * _size(seq):,} items (at most "
                            f"{MAX_ITEMS:,}); fix the expression")
    return a * b


def _add(a: Any, b: Any, expr: str) -> Any:
    if isinstance(a, (str, list)) and isinstance(b, (str, list)) and _size(a) + _size(b) > MAX_ITEMS:
        raise SpecError(f"expression {expr!r} builds a value of over {MAX_ITEMS:,} items; fix the expression")
    return a + b


def _mod(a: Any, b: Any, expr: str) -> Any:
    if isinstance(a, str):  # '%0999999999d' % 1 would allocate a gigabyte
        raise SpecError(f"expression {expr!r}: % formatting of strings is not allowed in templates")
    return a % b


_BINOPS = {ast.Add: _add, ast.Sub: lambda a, b, e: a - b, ast.Mult: _mul, ast.Div: lambda a, b, e: a / b,
           ast.FloorDiv: lambda a, b, e: a // b, ast.Mod: _mod}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b}
_CALLS = {"len": len, "min": min, "max": max}


def evaluate(expr: str, params: dict[str, Any]) -> Any:
    """Evaluate a template expression such as ``$w * 2``, ``$drop > 0 and $bn``, ``$p[1]`` or
    ``2 in $pools``.

    >>> evaluate("$w * 2 if $wide else $w", {"w": 8, "wide": True})
    16
    >>> evaluate("$p[$i] * 2", {"p": [8, 16, 32], "i": 1})
    32
    """
    tree = _parse(expr)
    try:
        return _eval(tree, params, expr)
    except (ArithmeticError, TypeError, ValueError) as err:
        raise SpecError(f"expression {expr!r} cannot be computed ({err}) at {_show(params)}; "
                        "fix the expression or the choice values") from None
    except RecursionError:
        raise SpecError(f"expression {expr!r} is nested too deeply; simplify it") from None


def _show(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_label(v)}" for k, v in params.items()) or "no choices"


@functools.lru_cache(maxsize=4096)
def _parse(expr: str) -> ast.AST:
    """The expression's syntax tree, parsed once (a feasibility check renders thousands of points)."""
    source = re.sub(r"\$([A-Za-z_]\w*)", r"\1", expr.strip())
    try:
        return ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise SpecError(f"cannot parse expression {expr!r}") from None


def _eval(node: ast.AST, params: dict[str, Any], expr: str) -> Any:
    ev = lambda n: _eval(n, params, expr)  # noqa: E731
    if isinstance(node, ast.Constant):
        return _checked(node.value, expr)
    if isinstance(node, ast.Name):
        if node.id not in params:
            raise SpecError(f"expression {expr!r} uses unknown choice {node.id!r}")
        return params[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return _checked([ev(e) for e in node.elts], expr)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _checked(_BINOPS[type(node.op)](ev(node.left), ev(node.right), expr), expr)
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
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
        return _index(ev(node.value), ev(node.slice), expr)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS
            and not node.keywords):
        return _CALLS[node.func.id](*(ev(a) for a in node.args))
    raise SpecError(f"expression {expr!r}: {type(node).__name__} is not allowed in templates")


def _index(seq: Any, i: Any, expr: str) -> Any:
    if not isinstance(seq, (list, str)):
        raise SpecError(f"expression {expr!r} indexes {_brief(seq)}, which is not a list; index list-valued choices only")
    if not isinstance(i, int) or isinstance(i, bool):
        raise SpecError(f"expression {expr!r}: an index must be a whole number, got {i!r}")
    if not -len(seq) <= i < len(seq):
        raise SpecError(f"expression {expr!r}: index {i} is out of range for {_brief(seq)} (length {len(seq)}); "
                        "fix the index or lengthen the choice's lists")
    return seq[i]


def fingerprint(spec: Spec) -> str:
    """A short hash of the net itself (ops and arguments), ignoring names and table visibility."""
    prims = [(op, args) for _, op, args, _, _ in primitives(spec)]
    payload = json.dumps([list(spec.input), prims], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def list_spaces() -> dict[str, Path]:
    return registry.spaces()
