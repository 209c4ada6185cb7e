"""Reading a user's YAML (or JSON) file strictly, with one-line errors.

Spec files, space files and params files all come through :func:`read_yaml`, so each fault reads the
same wherever it happens: a file that cannot be read, bytes that are not UTF-8, a syntax error (with
its line), a key given twice in one mapping (plain PyYAML keeps the last one silently), and aliases
that expand past :data:`MAX_NODES` values (an 800-byte "billion laughs" file would otherwise turn into
millions of layers once a template splices it).

>>> import tempfile, os
>>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
...     _ = f.write("a: &x [1, 2]\\nb: *x\\n")
>>> read_yaml(f.name, "spec file")
{'a': [1, 2], 'b': [1, 2]}
>>> os.unlink(f.name)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import NasError

MAX_NODES = 100_000  # values in the file once every alias is expanded; real files hold a few hundred
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """A fault found while composing or constructing; turned into a NasError with the file's name."""


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False):
        # Checked on the keys as written: a `<<` merge may legitimately be overridden by a later key.
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML itself reports it as a YAML error
                continue
            if duplicate:
                raise _Refused(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; "
                               "keep only one of them")
        return super().construct_mapping(node, deep)


def _expanded_size(root: Node) -> int:
    """How many values the document holds with aliases expanded (aliases share one node object)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Refused(f"an alias at line {node.start_mark.line + 1} refers to a value that contains it; "
                           "remove the recursive alias")
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(n) for n in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        sizes[key] = min(total, MAX_NODES + 1)  # capped, so the sums stay small numbers
        return sizes[key]

    return size(root)


def parse_yaml(text: str) -> Any:
    """Parse YAML text strictly; raises ``_Refused`` or ``yaml.YAMLError``."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise _Refused(f"its aliases expand to more than {MAX_NODES:,} values; write the repeated "
                           "part out once, or nest fewer aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of ``path``; ``what`` names the file in errors (e.g. ``"spec file"``).

    Every fault is a one-line :class:`NasError` that starts with ``what`` and the path.
    """
    path = Path(path)
    name = f"{what} {path}"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise NasError(f"cannot read {name}: {err.strerror or err}; check the path") from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is harmless
    except UnicodeDecodeError as err:
        raise NasError(f"{name} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                       "save it as UTF-8") from None
    try:
        return parse_yaml(text)
    except _Refused as err:
        raise NasError(f"{name}: {err}") from None
    except yaml.reader.ReaderError as err:  # valid UTF-8, but control characters: a binary file
        raise NasError(f"{name} holds a character YAML does not allow (#x{err.character:04x} at offset "
                       f"{err.position}); save it as plain UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise NasError(f"{name} is not valid YAML{where}; fix the syntax") from None
    except RecursionError:
        raise NasError(f"{name} nests lists or mappings too deeply to read; flatten it") from None
