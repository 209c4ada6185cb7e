"""The architecture spec: the one plain, serializable description of a CNN that everything uses.

A spec is an input shape plus an ordered list of named blocks, each an ordered list of layers.
In YAML a layer is either a bare op name or a one-key mapping from op name to its arguments::

    name: tiny
    input: [1, 28, 28]
    blocks:
      features:
        - conv: {out: 8, kernel: 3, padding: 1}
        - relu
        - maxpool
      head:
        - gap
        - flatten
        - linear: {out: 10}

A layer may carry ``functional: true`` when the design applies it as a functional call
(``F.relu(x)``): it is built and analysed as usual, but left out of the torchsummary-style table,
exactly as torchsummary leaves it out.

>>> spec = Spec.from_dict({"input": [1, 8, 8], "layers": ["gap", "flatten"]})
>>> Spec.from_yaml(spec.to_yaml()) == spec
True
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from . import ops
from .errors import SpecError
from .files import write_atomic


@dataclass(frozen=True)
class Layer:
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    functional: bool = False

    def to_yaml_obj(self) -> Any:
        args = dict(self.args)
        if self.functional:
            args["functional"] = True
        return {self.op: args} if args else self.op

    @classmethod
    def parse(cls, obj: Any, index: int) -> "Layer":
        if isinstance(obj, str):
            op, args = obj, {}
        elif isinstance(obj, dict) and len(obj) == 1:
            op, args = next(iter(obj.items()))
            args = dict(args or {})
            if not isinstance(args, dict):
                raise SpecError(f"arguments of {op!r} must be a mapping, got {args!r}", index)
        else:
            raise SpecError(f"a layer is an op name or a one-key mapping {{op: {{args}}}}, got {obj!r}", index)
        functional = bool(args.pop("functional", False))
        ops.get(op, index).resolve(args, index)  # validate early, keep what the user wrote
        return cls(op, args, functional)


@dataclass(frozen=True)
class Block:
    name: str
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Spec:
    """A net: an input shape and named blocks of layers; plain data that YAML and dicts round-trip.

    >>> from nas import Spec, analyse
    >>> spec = Spec.from_dict({"input": [1, 28, 28], "layers": [{"conv": {"out": 8}}, "relu", "gap"]})
    >>> analyse(spec).params, Spec.from_dict(spec.to_dict()) == spec
    (80, True)
    """

    input: tuple[int, int, int]
    blocks: tuple[Block, ...]
    name: str = ""
    notes: str = ""

    @property
    def layers(self) -> list[Layer]:
        return [layer for block in self.blocks for layer in block.layers]

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.notes:
            out["notes"] = self.notes
        out["input"] = list(self.input)
        out["blocks"] = {b.name: [layer.to_yaml_obj() for layer in b.layers] for b in self.blocks}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Spec":
        if not isinstance(data, dict):
            raise SpecError(f"a spec is a mapping with 'input' and 'blocks' (or 'layers'), got {type(data).__name__}")
        unknown = set(data) - {"name", "notes", "input", "blocks", "layers", "source"}
        if unknown:
            raise SpecError(f"unknown spec field {sorted(unknown)[0]!r} (allowed: name, notes, input, blocks, layers)")
        shape = data.get("input")
        if not (isinstance(shape, (list, tuple)) and len(shape) == 3
                and all(isinstance(n, int) and n > 0 for n in shape)):
            raise SpecError(f"'input' must be [channels, height, width] of positive ints, got {shape!r}")
        if ("blocks" in data) == ("layers" in data):
            raise SpecError("give exactly one of 'blocks' (name -> layers) or 'layers' (a flat list)")
        raw_blocks = data["blocks"] if "blocks" in data else {"features": data["layers"]}
        if not isinstance(raw_blocks, dict) or not all(isinstance(v, list) for v in raw_blocks.values()):
            raise SpecError("'blocks' must map block names to lists of layers")
        blocks, index = [], 0
        for name, raw_layers in raw_blocks.items():
            problem = _bad_block_name(name)
            if problem:
                raise SpecError(f"block name {name!r} {problem}; rename the block")
            layers = []
            for obj in raw_layers:
                layers.append(Layer.parse(obj, index))
                index += 1
            blocks.append(Block(str(name), tuple(layers)))
        if index == 0:
            raise SpecError("the spec has no layers")
        return cls(tuple(shape), tuple(blocks), str(data.get("name", "")), str(data.get("notes", "")))

    @classmethod
    def from_yaml(cls, text: str) -> "Spec":
        return cls.from_dict(yaml.safe_load(text))

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> "Spec":
        from .yamlfile import read_yaml  # JSON is YAML too

        data = read_yaml(path, "spec file")
        try:
            return cls.from_dict(data)
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None

    def save(self, path: str | Path) -> Path:
        return write_atomic(path, self.to_yaml(), "the spec file", "free some space or pass another folder")


def _bad_block_name(name) -> str:
    """Why ``name`` cannot name a block, or ''. A block becomes an attribute of the built
    ``nn.Module`` and of the exported class, so it must be a plain identifier that Python keeps as
    written (no ``__x`` mangling, no NFKC folding of ``ﬁ`` to ``fi``) and shadows nothing.

    A keyword (``class``) is fine: the export writes ``getattr(self, "class")`` for it.

    >>> [_bad_block_name(n) for n in ("features", "class", "forward", "__x", "\ufb01")]  # doctest: +NORMALIZE_WHITESPACE
    ['', '', "is an attribute of torch's nn.Module", 'starts with two underscores (Python mangles those, or keeps them
     for its own)', 'is not ASCII (Python folds some letters into others)']
    """
    name = str(name)
    if not name.isascii():
        return "is not ASCII (Python folds some letters into others)"
    if not name.isidentifier():
        return "must be a Python identifier (letters, digits, _)"
    if name.startswith("__"):
        return "starts with two underscores (Python mangles those, or keeps them for its own)"
    if hasattr(nn.Module, name) or name in ("training", "model"):
        return "is an attribute of torch's nn.Module"
    return ""


def primitives(spec: Spec) -> list[tuple[str, str, dict[str, Any], bool, int]]:
    """The spec flattened to primitive layers: ``(block, op, resolved args, functional, spec index)``.

    Composite ops (``dws``) expand here, once, for both the analysis and the builder.
    """
    out = []
    for index, (block, layer) in enumerate((b.name, l) for b in spec.blocks for l in b.layers):
        op = ops.get(layer.op, index)
        args = op.resolve(layer.args, index)
        if op.expand is None:
            out.append((block, layer.op, args, layer.functional, index))
            continue
        for sub_name, sub_args in op.expand(args):
            out.append((block, sub_name, ops.get(sub_name).resolve(sub_args), layer.functional, index))
    return out
