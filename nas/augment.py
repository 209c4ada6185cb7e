"""Augmentation of whole batches on the device: shifts, rotations, crops, flips and cutout.

Each function takes a float batch ``(n, c, h, w)`` and a ``torch.Generator`` on the batch's device,
and changes every image at once (no per-sample Python), so a seeded run repeats exactly.
:func:`augment_batch` applies the policy a :class:`nas.train.TrainConfig` names.

>>> import torch
>>> x = torch.ones(2, 1, 4, 4)
>>> random_shift(x, 0, torch.Generator().manual_seed(0)).equal(x)
True
"""
from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import NasError

class Policy(Protocol):
    """The settings an augmentation reads (a :class:`nas.train.TrainConfig` has them; nas.train
    imports this module, so this one names only what it needs)."""

    augment_policy: str
    shift: int
    rotate: float
    crop_padding: int
    cutout: int


def random_shift_rotate(x: Tensor, shift: int, degrees: float, gen: torch.Generator) -> Tensor:
    """Each image moved by up to ``shift`` pixels and turned by up to ``degrees``; zeros fill in.

    One ``affine_grid``/``grid_sample`` call for the whole batch; float images in, same shape out.
    """
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=gen, device=x.device) * 2 - 1) * math.radians(degrees)
    # affine_grid works in [-1, 1] coordinates, so a one-pixel move is 2 / size.
    tx = (torch.randint(-shift, shift + 1, (n,), generator=gen, device=x.device)).float() * 2 / w
    ty = (torch.randint(-shift, shift + 1, (n,), generator=gen, device=x.device)).float() * 2 / h
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_shift(x: Tensor, shift: int, gen: torch.Generator) -> Tensor:
    """Each image moved by a whole number of pixels, up to ``shift`` each way; zeros fill in."""
    return random_crop(F.pad(x, (shift,) * 4), x.shape[-2:], gen)


def random_crop(x: Tensor, size: tuple[int, int] | torch.Size, gen: torch.Generator) -> Tensor:
    """A ``size`` window at a random place in each image, as one gather for the whole batch."""
    n, c, h, w = x.shape
    oh, ow = size
    dy = torch.randint(0, h - oh + 1, (n, 1), generator=gen, device=x.device)
    dx = torch.randint(0, w - ow + 1, (n, 1), generator=gen, device=x.device)
    rows = (dy + torch.arange(oh, device=x.device)).view(n, 1, oh, 1)
    cols = (dx + torch.arange(ow, device=x.device)).view(n, 1, 1, ow)
    index = (rows * w + cols).expand(n, c, oh, ow).reshape(n, c, -1)
    return x.reshape(n, c, h * w).gather(2, index).view(n, c, oh, ow)


def random_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Half the images, chosen at random, mirrored left to right."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def cutout(x: Tensor, size: int, gen: torch.Generator) -> Tensor:
    """A ``size`` x ``size`` square, centred at a random pixel (clipped at the edges), set to zero."""
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n, 1, 1), generator=gen, device=x.device) - size // 2
    left = torch.randint(0, w, (n, 1, 1), generator=gen, device=x.device) - size // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    return x.masked_fill(inside.unsqueeze(1), 0)


def augment_batch(x: Tensor, config: Policy, gen: torch.Generator) -> Tensor:
    """Apply the configured policy to a float batch of images (normalised or not)."""
    policy = config.augment_policy
    if policy == "auto":
        policy = "shift" if x.shape[1] == 1 else "crop_flip"
    if policy == "shift":
        if config.rotate:
            return random_shift_rotate(x, config.shift, config.rotate, gen)
        return random_shift(x, config.shift, gen) if config.shift else x
    if policy == "crop_flip":
        if config.crop_padding:
            x = random_crop(F.pad(x, (config.crop_padding,) * 4, mode="reflect"), x.shape[-2:], gen)
        x = random_flip(x, gen)
        return cutout(x, config.cutout, gen) if config.cutout else x
    raise NasError(f"unknown augment_policy {config.augment_policy!r}: use auto, shift or crop_flip")
