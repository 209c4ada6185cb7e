"""The layer table, in torchsummary's format, with receptive field and multiply-adds added.

``format_table(a, extras=False)`` prints exactly what ``torchsummary.summary`` prints for the built
module, so a table can be compared line by line with a design document.
"""
from __future__ import annotations

from .analysis import Analysis, torchsummary_sizes
from .constraints import Constraints

_ROW = "{:>20}  {:>25} {:>15}"
_EXTRA = " {:>6} {:>13}"


def table_rows(a: Analysis) -> list[tuple[str, list[int], int, int, int]]:
    """``(name, output shape, params, rf, macs)`` per visible row, named ``Conv2d-1`` etc."""
    shown = [r for r in a.rows if not r.functional]
    return [(f"{r.table_name}-{i}", [-1, *r.out_shape], r.params, r.rf, r.macs)
            for i, r in enumerate(shown, start=1)]


def format_table(a: Analysis, extras: bool = True) -> str:
    width = 64 + (len(_EXTRA.format("", "")) if extras else 0)
    header = _ROW.format("Layer (type)", "Output Shape", "Param #")
    if extras:
        header += _EXTRA.format("RF", "MACs")
    lines = ["-" * width, header, "=" * width]
    for name, shape, params, rf, macs in table_rows(a):
        line = _ROW.format(name, str(shape), f"{params:,}")
        if extras:
            line += _EXTRA.format(rf, f"{macs:,}")
        lines.append(line)
    sizes = torchsummary_sizes(a)
    lines += [
        "=" * width,
        f"Total params: {a.params:,}",
        f"Trainable params: {a.params:,}",
        "Non-trainable params: 0",
        "-" * width,
        f"Input size (MB): {sizes['input']:0.2f}",
        f"Forward/backward pass size (MB): {sizes['forward_backward']:0.2f}",
        f"Params size (MB): {sizes['params']:0.2f}",
        f"Estimated Total Size (MB): {sizes['total']:0.2f}",
        "-" * width,
    ]
    if extras:
        hidden = [r for r in a.rows if r.functional]
        lines += [f"Receptive field: {a.rf}", f"Multiply-adds: {a.macs:,}"]
        if hidden:
            lines.append("Not in the table (functional calls): " + ", ".join(r.op for r in hidden))
    return "\n".join(lines)


def format_checklist(a: Analysis, constraints: Constraints) -> str:
    return "\n".join(r.line() for r in constraints.check(a))
