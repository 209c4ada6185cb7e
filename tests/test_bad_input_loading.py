"""Bad input while loading specs and spaces (issue 13): each case exits 2 with one line on stderr,
`error: ...`, naming the problem and the fix, and no traceback.

Cases run through the real command line (click's test runner), as in tests/test_bad_input.py.
"""
from __future__ import annotations

import copy
import os

import pytest
import yaml
from click.testing import CliRunner

from nas.cli import main
from toys import assert_one_line_error
from nas.errors import NasError
from nas.spec import Spec
from nas.yamlfile import MAX_NODES, read_yaml

SPEC = "name: s\ninput: [1, 8, 8]\nlayers: [{conv: {out: 4}}, gap]\n"
SPACE = {
    "name": "tiny",
    "task": {"dataset": "mnist", "target": 0.9, "constraints": {"max_params": 5000}},
    "input": [1, 16, 16],
    "choices": {"w": [4, 8], "pool": ["maxpool", "avgpool"]},
    "blocks": {"f": [{"conv": {"out": "$w", "padding": 1}}, "relu", "$pool", {"pwconv": {"out": 2}}, "gap"]},
}
# about 800 bytes that expand to 10^7 layers once every alias is followed
BOMB = ("name: bomb\ninput: [1, 8, 8]\nlayers:\n  - &a [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]\n"
        + "".join(f"  - &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdef", "bcdefg")))


def _space(edit=None) -> str:
    data = copy.deepcopy(SPACE)
    if edit:
        edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def _expr(expr: str):
    return lambda d: d["blocks"]["f"][0]["conv"].update(out=expr)


def _input(value):
    return lambda d: d.update(input=value)


# (id, file name, file bytes or text, command before the path, expected message)
CASES = [
    ("latin-1 spec", "s.yaml", "name: caf\u00e9\ninput: [1, 8, 8]\nlayers: [gap]\n".encode("latin-1"), ["check"],
     r"spec file .*s\.yaml is not UTF-8 text \(byte 0xe9 at offset 9\); save it as UTF-8$"),
    ("latin-1 space", "sp.yaml", _space().replace("tiny", "t\u00eeny").encode("latin-1"), ["space"],
     r"search space file .*sp\.yaml is not UTF-8 text \(byte 0xee .*\); save it as UTF-8$"),
    ("binary spec", "b.yaml", bytes(range(256)) * 3, ["summary"], r"spec file .*b\.yaml .*; save it as .*UTF-8"),
    ("binary space", "b.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["space"],
     r"search space file .*b\.yaml is not UTF-8 text .*; save it as UTF-8$"),
    ("NUL bytes in a space", "n.yaml", b"name: x\x00\x01\n", ["space"],
     r"holds a character YAML does not allow \(#x0000 at offset 7\); save it as plain UTF-8 text$"),
    ("duplicate key in a spec", "d.yaml", SPEC + "input: [1, 9, 9]\n", ["check"],
     r"spec file .*d\.yaml: duplicate key 'input' at line 4; keep only one of them$"),
    ("duplicate key deep in a space", "d.yaml", _space().replace("  w:\n", "  pool: [maxpool]\n  w:\n"), ["space"],
     r"search space file .*d\.yaml: duplicate key 'pool' at line \d+; keep only one of them$"),
    ("alias bomb in a spec", "bomb.yaml", BOMB, ["check"],
     rf"spec file .*bomb\.yaml: its aliases expand to more than {MAX_NODES:,} values; write the repeated part out"),
    ("alias bomb in a space", "bomb.yaml", _space() + "points:\n" + BOMB.replace("name: bomb\n", "").replace(
        "input: [1, 8, 8]\nlayers:\n", "  x:\n").replace("  - &", "    - &"), ["space"],
     r"search space file .*bomb\.yaml: its aliases expand to more than"),
    ("recursive alias", "r.yaml", "name: r\ninput: [1, 8, 8]\nlayers: &l [gap, *l]\n", ["check"],
     r"an alias at line 3 refers to a value that contains it; remove the recursive alias$"),
    ("syntax error", "y.yaml", "input: [1, 8\n", ["check"], r"spec file .*y\.yaml is not valid YAML at line 2; fix the syntax$"),
    ("division by zero", "e.yaml", _space(_expr("$w // 0")), ["space"],
     r"expression '\$w // 0' cannot be computed \(integer division or modulo by zero\) at w=4 pool=maxpool; "
     r"fix the expression or the choice values$"),
    ("int plus string", "e.yaml", _space(_expr("$w + 'a'")), ["space"],
     r"expression \"\$w \+ 'a'\" cannot be computed \(unsupported operand type\(s\) for \+: 'int' and 'str'\)"),
    ("in a number", "e.yaml", _space(_expr("$w in 5")), ["space"],
     r"expression '\$w in 5' cannot be computed \(argument of type 'int' is not iterable\)"),
    ("string repeated to exhaust memory", "e.yaml", _space(_expr("$w * 'a' * 100000000000000")), ["space"],
     r"expression .* computes a number above 1,000,000,000,000; fix the expression$"),
    ("string repeated too often", "e.yaml", _space(_expr("'a' * $w * 10000")), ["space"],
     r"expression .* would build a value of 40,000 items \(at most 10,000\); fix the expression$"),
    ("power operator", "e.yaml", _space(_expr("$w ** 99999999")), ["space"],
     r"expression '\$w \*\* 99999999': BinOp is not allowed in templates"),
    ("input a number", "i.yaml", _space(_input(5)), ["space"],
     r"input must be \[channels, height, width\] of positive integers, e\.g\. \[1, 28, 28\]; got 5$"),
    ("input with a string", "i.yaml", _space(_input([1, "a", 28])), ["space"],
     r"input must be \[channels, height, width\] of positive integers.*; got \[1, 'a', 28\]$"),
    ("input of two numbers", "i.yaml", _space(_input([28, 28])), ["space"],
     r"input must be \[channels, height, width\] of positive integers.*; got \[28, 28\]$"),
    ("when without a choice", "w.yaml", _space(lambda d: d["blocks"]["f"].insert(1, {"bn": {"when": "w > 100"}})),
     ["space"], r"blocks\.f\[1\] \(bn\): when: 'w > 100' is not an expression over choices, so it would always "
                r"count as true; write a condition with \$name \(e\.g\. when: \$w > 100\) or true/false$"),
    ("when a quoted false", "w.yaml", _space(lambda d: d["blocks"]["f"].insert(1, {"bn": {"when": "false"}})),
     ["space"], r"when: 'false' is not an expression over choices"),
    ("choice value with a typo", "t.yaml", _space(lambda d: d["choices"].update(pool=["maxpool", "maxpoo"])),
     ["space"], r"choices\.pool value 'maxpoo' never gives a valid net: layer 2: unknown layer type 'maxpoo' .*; "
                r"fix or remove the value$"),
]


@pytest.mark.parametrize("name,file,content,command,message", CASES, ids=[c[0] for c in CASES])
def test_bad_file(tmp_path, monkeypatch, name, file, content, command, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / file
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _one_line_error([*command, str(path)], message)


@pytest.mark.parametrize("args, message", [
    (["space", "mnist_gap", "--exact-limit", "0", "--samples", "0"],
     r"Invalid value for '--samples': 0 is not in the range x>=1; see `nas space --help`"),
    (["space", "mnist_gap", "--samples", "-5"], r"Invalid value for '--samples': -5 is not in the range x>=1"),
    (["space", "mnist_gap", "--exact-limit", "-1"], r"Invalid value for '--exact-limit': -1 is not in the range x>=0"),
    (["space", "mnist_gap", "--search", "-1"], r"Invalid value for '--search': -1 is not in the range x>=0"),
])
def test_bad_space_options(args, message):
    _one_line_error(args, message)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.yaml"
    path.write_text(SPEC)
    path.chmod(0)
    try:
        _one_line_error(["check", str(path)], r"cannot read spec file .*locked\.yaml: Permission denied; check the path$")
    finally:
        path.chmod(0o644)


def test_read_errors_are_one_line(tmp_path):
    with pytest.raises(NasError, match=r"cannot read params file .*: Is a directory; check the path$"):
        read_yaml(tmp_path, "params file")
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000)
    with pytest.raises(NasError, match=r"nests lists or mappings too deeply to read; flatten it$|not valid YAML"):
        Spec.load(deep)


def test_plain_anchors_and_merges_still_work(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("base: &b {out: 4}\nx: {<<: *b, out: 8}\nlist: &l [relu, gap]\ny: *l\n")
    assert read_yaml(path, "spec file") == {"base": {"out": 4}, "x": {"out": 8}, "list": ["relu", "gap"],
                                            "y": ["relu", "gap"]}
    r = CliRunner().invoke(main, ["space", "mnist_squeeze"])  # uses &v_pool / *v_pool and &s_block / *s_block
    assert r.exit_code == 0, r.output


def _one_line_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args, prog_name="nas")
    assert_one_line_error(result, message)
    assert not result.stdout.strip(), result.stdout
