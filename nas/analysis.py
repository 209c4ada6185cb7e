"""Analyse a spec without running it: shapes, parameters, receptive field, multiply-adds, features.

Receptive field per layer follows the usual recurrence on each spatial axis, with
``k`` the effective kernel ``dilation * (kernel - 1) + 1``::

    rf_out    = rf_in + (k - 1) * jump_in
    jump_out  = jump_in * stride
    start_out = start_in + ((k - 1) / 2 - padding) * jump_in

Global average pooling counts as a pool whose kernel is its input's size, as course RF sheets
count it. The net's RF is the smaller of the two axes' (they agree on square inputs).

>>> from nas.spec import Spec
>>> a = analyse(Spec.from_dict({"input": [1, 28, 28], "layers": [
...     {"conv": {"out": 8, "kernel": 3}}, "maxpool", {"conv": {"out": 8, "kernel": 3, "dilation": 2}}]}))
>>> a.out_shape, a.params, a.rf
((8, 9, 9), 664, 12)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import ops
from .errors import SpecError
from .spec import Spec, primitives


@dataclass(frozen=True)
class Row:
    """One primitive layer: what torchsummary prints, plus receptive field and multiply-adds."""

    index: int  # position among primitives
    spec_index: int  # position in the spec's layer list (a dws layer gives two rows)
    block: str
    op: str
    args: dict[str, Any]
    table_name: str
    in_shape: ops.Shape
    out_shape: ops.Shape
    params: int
    rf: int
    jump: int
    start: float
    macs: int
    functional: bool


@dataclass(frozen=True)
class Analysis:
    spec: Spec
    rows: tuple[Row, ...]
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def rf(self) -> int:
        return self.rows[-1].rf

    @property
    def out_shape(self) -> ops.Shape:
        return self.rows[-1].out_shape

    def figures(self) -> dict[str, Any]:
        """The plain numbers a study stores for a candidate."""
        return {"params": self.params, "rf": self.rf, "macs": self.macs,
                "out_shape": list(self.out_shape), "features": sorted(self.features)}


@dataclass
class _AxisRF:
    rf: int = 1
    jump: int = 1
    start: float = 0.5

    def step(self, w: ops.Window) -> None:
        self.start += ((w.kernel - 1) / 2 - w.padding) * self.jump
        self.rf += (w.kernel - 1) * self.jump
        self.jump *= w.stride


def analyse(spec: Spec) -> Analysis:
    """Analyse ``spec``; raise :class:`SpecError` naming the first layer that does not fit.

    >>> from nas import analyse, load_design
    >>> a = analyse(load_design("seed001"))
    >>> a.params, a.rf, list(a.out_shape)
    (18666, 54, [10])
    """
    shape: ops.Shape = tuple(spec.input)
    axes = [_AxisRF(), _AxisRF()]
    rows = []
    for i, (block, name, args, functional, spec_index) in enumerate(primitives(spec)):
        op = ops.get(name)
        _check_input(op, shape, spec_index)
        try:
            out = op.out_shape(shape, args)
        except SpecError as err:
            raise SpecError(f"{name}: {err}", spec_index) from None
        if any(n <= 0 for n in out):
            raise SpecError(f"{name}: output shape {list(out)} reaches zero; remove a pool or stride", spec_index)
        if len(shape) == 3:
            for axis, size in zip(axes, shape[1:]):
                window = op.window(size, args)
                if window is not None:
                    axis.step(window)
        rf_axis = min(axes, key=lambda a: a.rf)
        rows.append(Row(i, spec_index, block, name, args, op.table(shape), shape, out,
                        op.params(shape, args), rf_axis.rf, rf_axis.jump, rf_axis.start,
                        op.macs(shape, out, args), functional))
        shape = out
    return Analysis(spec, tuple(rows), _features(rows))


def _check_input(op: ops.Op, shape: ops.Shape, index: int) -> None:
    if op.needs == "map" and len(shape) != 3:
        raise SpecError(f"{op.name} needs a feature map (C, H, W) but gets a vector {list(shape)}; "
                        "move it before flatten", index)
    if op.needs == "vector" and len(shape) != 1:
        raise SpecError(f"{op.name} needs a vector but gets a feature map {list(shape)}; "
                        "add flatten (or gap, flatten) before it", index)


def _is_depthwise(r: Row) -> bool:
    return r.op in ("conv", "dwconv") and r.in_shape[0] > 1 and _groups(r) == r.in_shape[0]


def _groups(r: Row) -> int:
    return r.in_shape[0] if r.op == "dwconv" else r.args.get("groups", 1)


def _is_pointwise(r: Row) -> bool:
    return r.op == "pwconv" or (r.op == "conv" and r.args["kernel"] == 1 and r.args["groups"] == 1)


def _is_global_pool(r: Row) -> bool:
    return r.op == "gap" or (r.op == "avgpool" and r.out_shape[1:] == (1, 1) and r.in_shape[1:] != (1, 1))


def _features(rows: list[Row]) -> frozenset[str]:
    """Named operations the net uses, for ``require`` constraints.

    ``dws``: a depthwise conv whose next conv is pointwise (with BN/activation between allowed).
    ``gap``: global average pooling, or an average pool that reduces the map to 1x1.
    ``fc``: a linear layer; ``fc_after_gap`` when every linear layer comes after global pooling.
    """
    found = set()
    convs = [r for r in rows if r.op in ("conv", "dwconv", "pwconv")]
    for a, b in zip(convs, convs[1:]):
        if _is_depthwise(a) and _is_pointwise(b):
            found.add("dws")
    if any(r.op in ("conv", "dwconv") and r.args["dilation"] > 1 for r in rows):
        found.add("dilated")
    if any(_is_depthwise(r) for r in rows):
        found.add("depthwise")
    gap_at = next((r.index for r in rows if _is_global_pool(r)), None)
    if gap_at is not None:
        found.add("gap")
    linear = [r.index for r in rows if r.op == "linear"]
    if linear:
        found.add("fc")
        if gap_at is not None and min(linear) > gap_at:
            found.add("fc_after_gap")
    if any(r.op in ("maxpool", "avgpool") for r in rows):
        found.add("pool")
    if any(r.op == "bn" for r in rows):
        found.add("bn")
    if any(r.op.startswith("dropout") for r in rows):
        found.add("dropout")
    return frozenset(found)


def torchsummary_sizes(a: Analysis) -> dict[str, float]:
    """The four MB figures torchsummary prints (float32, batch of one, table rows only)."""
    mb = 4.0 / 1024 ** 2
    shown = [r for r in a.rows if not r.functional]
    inp = math.prod(a.spec.input) * mb
    fwd = 2.0 * sum(math.prod(r.out_shape) for r in shown) * mb
    par = a.params * mb
    return {"input": inp, "forward_backward": fwd, "params": par, "total": inp + fwd + par}
