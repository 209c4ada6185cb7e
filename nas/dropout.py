"""Element-wise dropout whose mask costs less on a CPU.

``torch.nn.Dropout`` draws its CPU mask with ``bernoulli_``, one generator call per element; in
``bench/cifar_limits.py``'s profile of seed 004's training step it was the largest single op.
:class:`Dropout` draws 64 random bits per generator call instead and cuts them into four 16-bit
numbers, each compared with ``p``: four mask elements per call, ``p`` rounded to a multiple of
1/65536. On a GPU, and at evaluation, it is ``torch.nn.Dropout`` unchanged.

It is a ``torch.nn.Dropout`` (same argument, state, repr and evaluation), so the layer table and
the exported model show, and rebuild, a plain ``nn.Dropout``.

>>> import torch
>>> _ = torch.manual_seed(0)
>>> x = torch.ones(100_000)
>>> y = Dropout(0.25).train()(x)
>>> round((y == 0).float().mean().item(), 2), sorted({round(v, 4) for v in y.tolist()})  # the rest scaled
(0.25, [0.0, 1.3333])
>>> bool((Dropout(0.25).eval()(x) == x).all())
True
"""
from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16  # a 16-bit number per mask element


def keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """A boolean mask shaped and laid out like ``like``, each element True with probability ``1 - p``
    (to 1/65536)."""
    n = like.numel()
    # random_ over the whole int64 range: the default range, [0, 2**63), would leave one number in
    # four without its top bit and bias its elements.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device).random_(-(1 << 63), (1 << 63) - 1)
    drop_below = round(p * _LEVELS) - _LEVELS // 2
    # The mask takes the input's strides (channels_last in training): a contiguous mask would make
    # torch.where's output contiguous too, and every layer after it would pay a layout copy.
    dense = like.is_contiguous() or like.is_contiguous(memory_format=torch.channels_last)
    lanes = bits.view(torch.int16)[:n]
    lanes = lanes.as_strided(like.shape, like.stride()) if dense else lanes.view(like.shape)
    return lanes >= drop_below


class _Masked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x, p)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return torch.where(keep, x, 0.0).mul_(ctx.scale)  # where: cheaper than a multiply by a bool

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` with a cheaper mask on a CPU (see the module's docstring)."""

    exports_as = nn.Dropout  # read by nas.export: the same layer at evaluation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.p == 1 or self.inplace or x.device.type != "cpu":
            return super().forward(x)
        return _Masked.apply(x, self.p)
