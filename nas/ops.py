"""Every layer kind a spec can use, each defined once.

An :class:`Op` knows, for one layer kind, its arguments, its output shape, its parameter count,
the window it slides over the input (for the receptive field), its multiply-adds, and the
``torch.nn`` module that implements it. The analysis (:mod:`nas.analysis`) and the module builder
(:mod:`nas.build`) both read these definitions, so they cannot drift apart; ``tests/test_agreement``
checks it on real forward passes.

Shapes exclude the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` after ``flatten``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from .dropout import Dropout
from .errors import SpecError

Shape = tuple[int, ...]
Args = dict[str, Any]


@dataclass(frozen=True)
class Window:
    """What a layer does to one spatial axis: effective kernel, stride, padding."""

    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class Op:
    name: str
    table_name: str  # the torch class name torchsummary prints
    args: dict[str, tuple[type, Any]] = field(default_factory=dict)  # name -> (type, default)
    doc: str = ""
    needs: str = "any"  # "map" (C,H,W) input, "vector" (F,) input, or "any"
    out_shape: Callable[[Shape, Args], Shape] = lambda s, a: s
    params: Callable[[Shape, Args], int] = lambda s, a: 0
    window: Callable[[int, Args], Window | None] = lambda size, a: None
    macs: Callable[[Shape, Shape, Args], int] = lambda i, o, a: 0
    module: Callable[[Shape, Args], nn.Module] = None  # type: ignore[assignment]
    expand: Callable[[Args], list[tuple[str, Args]]] | None = None  # composite ops only

    def table(self, shape: Shape) -> str:
        """The row name torchsummary would print for this layer on an input of ``shape``."""
        if self.name == "bn" and len(shape) == 1:
            return "BatchNorm1d"
        return self.table_name

    def resolve(self, given: Args, layer: int | None = None) -> Args:
        """Check ``given`` against this op's arguments and fill in defaults."""
        unknown = set(given) - set(self.args)
        if unknown:
            allowed = ", ".join(self.args) or "none"
            raise SpecError(f"{self.name}: unknown argument {sorted(unknown)[0]!r} (allowed: {allowed})", layer)
        out = {}
        for key, (kind, default) in self.args.items():
            value = given.get(key, default)
            if value is REQUIRED:
                raise SpecError(f"{self.name}: missing required argument {key!r}", layer)
            out[key] = _coerce(self.name, key, kind, value, layer)
        return out


REQUIRED = object()


def _coerce(op: str, key: str, kind: type, value: Any, layer: int | None) -> Any:
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise SpecError(f"{op}: {key} must be {kind.__name__}, got {value!r}", layer)
    if kind is int and value < (0 if key == "padding" else 1):
        raise SpecError(f"{op}: {key} must be {'>= 0' if key == 'padding' else '>= 1'}, got {value}", layer)
    if kind is float and not 0.0 <= value < 1.0 and key == "p":
        raise SpecError(f"{op}: p must be in [0, 1), got {value}", layer)
    return value


# ---- convolution -------------------------------------------------------------------------------

def _conv_out_size(size: int, w: Window) -> int:
    return (size + 2 * w.padding - w.kernel) // w.stride + 1


def _conv_window(size: int, a: Args) -> Window:
    return Window(a["dilation"] * (a["kernel"] - 1) + 1, a["stride"], a["padding"])


def _conv_channels(shape: Shape, a: Args) -> tuple[int, int, int]:
    """(in, out, groups) for a conv-like layer, resolving depthwise defaults."""
    cin = shape[0]
    if "multiplier" in a:  # depthwise: one filter group per input channel
        return cin, cin * a["multiplier"], cin
    return cin, a["out"], a["groups"]


def _conv_shape(shape: Shape, a: Args) -> Shape:
    cin, cout, groups = _conv_channels(shape, a)
    if cin % groups or cout % groups:
        raise SpecError(f"groups={groups} must divide in channels {cin} and out channels {cout}")
    sizes = []
    for size in shape[1:]:
        w = _conv_window(size, a)
        if size + 2 * w.padding < w.kernel:
            raise SpecError(
                f"kernel {a['kernel']} (dilation {a['dilation']}, effective {w.kernel}) is larger than "
                f"its padded input {size}+2*{w.padding}: lower the kernel or dilation, or pool later")
        sizes.append(_conv_out_size(size, w))
    return (cout, *sizes)


def _conv_params(shape: Shape, a: Args) -> int:
    cin, cout, groups = _conv_channels(shape, a)
    return cout * (cin // groups) * a["kernel"] ** 2 + (cout if a["bias"] else 0)


def _conv_macs(i: Shape, o: Shape, a: Args) -> int:
    cin, _, groups = _conv_channels(i, a)
    return math.prod(o) * (cin // groups) * a["kernel"] ** 2


def _conv_module(shape: Shape, a: Args) -> nn.Module:
    cin, cout, groups = _conv_channels(shape, a)
    return nn.Conv2d(cin, cout, a["kernel"], stride=a["stride"], padding=a["padding"],
                     dilation=a["dilation"], groups=groups, bias=a["bias"])


_SPATIAL = {"stride": (int, 1), "padding": (int, 0), "dilation": (int, 1), "bias": (bool, True)}
_conv_common = dict(table_name="Conv2d", needs="map", out_shape=_conv_shape, params=_conv_params,
                    window=_conv_window, macs=_conv_macs, module=_conv_module)

CONV = Op("conv", args={"out": (int, REQUIRED), "kernel": (int, 3), **_SPATIAL, "groups": (int, 1)},
          doc="2-D convolution", **_conv_common)
DWCONV = Op("dwconv", args={"kernel": (int, 3), **_SPATIAL, "multiplier": (int, 1)},
            doc="depthwise convolution: groups = in channels, out = in * multiplier", **_conv_common)
PWCONV = Op("pwconv", args={"out": (int, REQUIRED), "bias": (bool, True)},
            doc="pointwise (1x1) convolution",
            **{**_conv_common, "out_shape": lambda s, a: _conv_shape(s, _pw(a)),
               "params": lambda s, a: _conv_params(s, _pw(a)), "window": lambda n, a: _conv_window(n, _pw(a)),
               "macs": lambda i, o, a: _conv_macs(i, o, _pw(a)), "module": lambda s, a: _conv_module(s, _pw(a))})


def _pw(a: Args) -> Args:
    return {"out": a["out"], "kernel": 1, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": a["bias"]}


DWS = Op("dws", table_name="", needs="map",
         args={"out": (int, REQUIRED), "kernel": (int, 3), **_SPATIAL},
         doc="depthwise-separable block: dwconv followed by pwconv (two table rows)",
         expand=lambda a: [("dwconv", {k: a[k] for k in ("kernel", "stride", "padding", "dilation", "bias")}),
                           ("pwconv", {"out": a["out"], "bias": a["bias"]})])


# ---- pooling -----------------------------------------------------------------------------------

def _pool_window(size: int, a: Args) -> Window:
    return Window(a["kernel"], a["stride"] or a["kernel"], a["padding"])


def _pool_shape(shape: Shape, a: Args) -> Shape:
    if a["padding"] * 2 > a["kernel"]:
        raise SpecError(f"pool padding {a['padding']} must be at most half the kernel {a['kernel']}")
    sizes = []
    for size in shape[1:]:
        w = _pool_window(size, a)
        if size + 2 * w.padding < w.kernel:
            raise SpecError(f"pool kernel {w.kernel} is larger than its input {size}: remove this pool or pool earlier less")
        sizes.append(_conv_out_size(size, w))
    return (shape[0], *sizes)


_POOL = {"kernel": (int, 2), "stride": (int, None), "padding": (int, 0)}
MAXPOOL = Op("maxpool", "MaxPool2d", dict(_POOL), "max pooling (stride defaults to kernel)", "map",
             _pool_shape, window=_pool_window,
             module=lambda s, a: nn.MaxPool2d(a["kernel"], a["stride"] or a["kernel"], a["padding"]))
AVGPOOL = Op("avgpool", "AvgPool2d", dict(_POOL), "average pooling (stride defaults to kernel)", "map",
             _pool_shape, window=_pool_window,
             macs=lambda i, o, a: 0,
             module=lambda s, a: nn.AvgPool2d(a["kernel"], a["stride"] or a["kernel"], a["padding"]))
# Course RF sheets count global average pooling as a pool whose kernel is its input's size.
GAP = Op("gap", "AdaptiveAvgPool2d", {}, "global average pooling to 1x1", "map",
         lambda s, a: (s[0], 1, 1), window=lambda size, a: Window(size, 1, 0),
         module=lambda s, a: nn.AdaptiveAvgPool2d(1))


# ---- normalisation, activations, regularisation, head --------------------------------------------

BN = Op("bn", "BatchNorm2d", {"affine": (bool, True)}, "batch norm (2d on maps, 1d on vectors)",
        params=lambda s, a: 2 * s[0] if a["affine"] else 0,
        module=lambda s, a: (nn.BatchNorm2d if len(s) == 3 else nn.BatchNorm1d)(s[0], affine=a["affine"]))

ACTIVATIONS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "relu": ("ReLU", nn.ReLU), "relu6": ("ReLU6", nn.ReLU6), "gelu": ("GELU", nn.GELU),
    "silu": ("SiLU", nn.SiLU), "elu": ("ELU", nn.ELU), "sigmoid": ("Sigmoid", nn.Sigmoid),
    "tanh": ("Tanh", nn.Tanh), "hardswish": ("Hardswish", nn.Hardswish),
}
_ACT_OPS = [Op(name, cls_name, {}, f"{cls_name} activation", module=lambda s, a, f=factory: f())
            for name, (cls_name, factory) in ACTIVATIONS.items()]
LEAKYRELU = Op("leakyrelu", "LeakyReLU", {"slope": (float, 0.01)}, "LeakyReLU activation",
               module=lambda s, a: nn.LeakyReLU(a["slope"]))

DROPOUT = Op("dropout", "Dropout", {"p": (float, 0.1)}, "element-wise dropout",
             module=lambda s, a: Dropout(a["p"]))
DROPOUT2D = Op("dropout2d", "Dropout2d", {"p": (float, 0.1)}, "channel-wise dropout", "map",
               module=lambda s, a: nn.Dropout2d(a["p"]))
FLATTEN = Op("flatten", "Flatten", {}, "flatten to a vector", out_shape=lambda s, a: (math.prod(s),),
             module=lambda s, a: nn.Flatten())
LINEAR = Op("linear", "Linear", {"out": (int, REQUIRED), "bias": (bool, True)}, "fully-connected layer",
            "vector", out_shape=lambda s, a: (a["out"],),
            params=lambda s, a: s[0] * a["out"] + (a["out"] if a["bias"] else 0),
            macs=lambda i, o, a: i[0] * o[0], module=lambda s, a: nn.Linear(s[0], a["out"], bias=a["bias"]))
LOGSOFTMAX = Op("logsoftmax", "LogSoftmax", {}, "log-softmax over classes", module=lambda s, a: nn.LogSoftmax(dim=1))

OPS: dict[str, Op] = {op.name: op for op in [
    CONV, DWCONV, PWCONV, DWS, MAXPOOL, AVGPOOL, GAP, BN, *_ACT_OPS, LEAKYRELU,
    DROPOUT, DROPOUT2D, FLATTEN, LINEAR, LOGSOFTMAX]}


def get(name: str, layer: int | None = None) -> Op:
    """The op called ``name``; a :class:`SpecError` listing the known ops otherwise."""
    try:
        return OPS[name]
    except KeyError:
        raise SpecError(f"unknown layer type {name!r} (known: {', '.join(OPS)})", layer) from None
