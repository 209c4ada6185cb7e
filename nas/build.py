"""Build a ``torch.nn.Module`` from a spec, using the same op definitions as the analysis.

>>> from nas.spec import Spec
>>> import torch
>>> net = build(Spec.from_dict({"input": [1, 8, 8], "layers": [{"conv": {"out": 10, "kernel": 8}}]}))
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""
from __future__ import annotations

import torch
from torch import nn

from . import ops
from .errors import NasError
from .analysis import Analysis, analyse
from .spec import Spec


class Net(nn.Module):
    """The spec's blocks as named ``nn.Sequential`` children, run in order.

    A final ``(N, C, 1, 1)`` map is flattened to ``(N, C)`` logits, as the seed designs do with a
    functional ``view`` that their tables do not show.
    """

    def __init__(self, blocks: dict[str, nn.Sequential]):
        super().__init__()
        for name, block in blocks.items():
            self.add_module(name, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x.flatten(1) if x.dim() > 2 else x


def build(spec: Spec, analysis: Analysis | None = None) -> Net:
    """A fresh, randomly initialised module for ``spec`` (validated by :func:`analyse`; pass the
    analysis when there is one already).

    >>> import torch
    >>> from nas import build, load_design
    >>> build(load_design("seed001"))(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    analysis = analysis or analyse(spec)
    _fits_in_memory(analysis)
    blocks: dict[str, list[nn.Module]] = {b.name: [] for b in spec.blocks}
    for row in analysis.rows:
        blocks[row.block].append(ops.get(row.op).module(row.in_shape, row.args))
    return Net({name: nn.Sequential(*mods) for name, mods in blocks.items()})


def _fits_in_memory(analysis: Analysis) -> None:
    """Refuse, with one line, a net whose float32 weights alone would take half this machine's memory."""
    import os

    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return  # not knowable here: let torch try
    need = analysis.params * 4
    if need > memory / 2:
        raise NasError(f"{analysis.spec.name or 'the net'} has {analysis.params:,} params ({need / 2**30:,.1f} GiB of "
                       f"weights), more than this machine can build ({memory / 2**30:,.0f} GiB of memory); "
                       "narrow its layers")


def leaf_modules(net: Net) -> list[nn.Module]:
    """The primitive modules in forward order: one per analysis row."""
    return [m for block in net.children() for m in block.children()]
