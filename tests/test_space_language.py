"""The space template language (issue 11): list-valued choices, pool positions as a choice, `repeat`,
`when:` checked at load, every value checked at load, and feasible points found by search.

Each feature runs end to end: load, feasibility, sample / labels / decode, build and a forward pass.
"""
import copy
import random
import time

import pytest
import torch

from nas.analysis import analyse
from nas.build import build
from nas.errors import NasError, SpecError
from nas.feasibility import check, feasibility, require_feasible
from nas.space import Space, SpaceError, evaluate

OPTUNA_TYPES = (type(None), bool, int, float, str)

LISTS = {
    "name": "lists",
    "task": {"dataset": "mnist", "target": 0.9,
             "constraints": {"max_params": 5000, "min_rf": 22, "require": ["gap"], "classes": 10}},
    "input": [1, 16, 16],
    "choices": {"widths": [[4, 8, 8], [8, 8, 16], [4, 4, 4]],
                "pools": [[1], [2], [1, 2], []],
                "drop": [0.0, 0.1]},
    "blocks": {
        "features": [{"repeat": {"times": 3, "as": "i", "start": 1, "layers": [
            {"conv": {"out": "$widths[$i - 1]", "padding": 1}},
            "relu",
            {"dropout": {"p": "$drop", "when": "$drop > 0"}},
            {"maxpool": {"when": "$i in $pools"}}]}}],
        "head": [{"pwconv": {"out": 10}}, "gap", "flatten"],
    },
}


def _forward(space: Space, params) -> torch.Tensor:
    spec = space.spec(params)
    return build(spec).eval()(torch.randn(2, *spec.input))


def test_list_choices_end_to_end():
    space = Space.from_dict(copy.deepcopy(LISTS))
    assert space.size == 24
    # labels are what Optuna stores: readable, and only types suggest_categorical accepts
    assert space.labels("widths") == ["4-8-8", "8-8-16", "4-4-4"]
    assert space.labels("pools") == ["1", "2", "1-2", "[]"]
    assert space.labels("drop") == [0.0, 0.1]
    assert all(isinstance(label, OPTUNA_TYPES) for k in space.choices for label in space.labels(k))
    point = space.sample(random.Random(1))
    labels = space.encode(point)
    assert all(isinstance(v, OPTUNA_TYPES) for v in labels.values())
    assert space.decode(labels) == point and space.encode(space.decode(labels)) == labels
    # a spec from labels is the spec from values; the check accepts either form
    assert space.spec(labels) == space.spec(point)
    assert space.check_params(labels) == point == space.check_params(point)
    with pytest.raises(NasError, match=r"widths=\[4, 8\] is outside space lists"):
        space.check_params({**point, "widths": [4, 8]})
    f = feasibility(space)
    assert f.method == "exact" and f.checked == 24 and f.feasible == 18  # no pool: RF 22, too small
    params = {"widths": "8-8-16", "pools": "1-2", "drop": 0.1}
    a = analyse(space.spec(params))
    assert [r.op for r in a.rows].count("maxpool") == 2 and a.out_shape == (10,)
    assert [r.args["out"] for r in a.rows if r.op == "conv"] == [8, 8, 16]
    assert _forward(space, params).shape == (2, 10)


def test_pool_position_is_an_ordinary_choice():
    space = Space.from_dict(copy.deepcopy(LISTS))
    ops = {label: [r.op for r in analyse(space.spec({"widths": "4-4-4", "pools": label, "drop": 0.0})).rows]
           for label in space.labels("pools")}
    assert ops["1"] == ["conv", "relu", "maxpool", "conv", "relu", "conv", "relu", "pwconv", "gap", "flatten"]
    assert ops["2"] == ["conv", "relu", "conv", "relu", "maxpool", "conv", "relu", "pwconv", "gap", "flatten"]
    assert ops["[]"].count("maxpool") == 0 and ops["1-2"].count("maxpool") == 2
    rf = {label: analyse(space.spec({"widths": "4-4-4", "pools": label, "drop": 0.0})).rf for label in ops}
    assert rf["[]"] < rf["2"] < rf["1"] < rf["1-2"]  # earlier pools widen the RF more
    for label in ops:
        assert _forward(space, {"widths": "4-4-4", "pools": label, "drop": 0.0}).shape == (2, 10)


@pytest.mark.parametrize("name, points", [("mnist_tiny", 216), ("cifar_small", 504), ("mnist_squeeze_rf44", 640)])
def test_new_spaces_load_fast_and_have_feasible_points(name, points):
    start = time.perf_counter()
    space = Space.load(name)
    assert time.perf_counter() - start < 1.0
    f = feasibility(space)
    assert f.method == "exact" and f.checked == points and f.feasible > 0
    c = space.task.constraints
    assert c.min_rf == 44
    best = next(p for p in space.enumerate() if check(space, p).feasible)
    out = _forward(space, space.encode(best))
    assert out.shape == (2, 10)


def test_mnist_tiny_uses_list_choices_and_the_card():
    space = Space.load("mnist_tiny")
    t = space.task
    assert (t.dataset, t.target, t.max_epochs, t.confirm_epochs) == ("mnist", 0.994, 15, 15)
    assert t.constraints.max_params == 8000 and t.constraints.require == ("gap",) and t.constraints.fc == "none"
    assert all(isinstance(v, list) for v in space.choices["widths"] + space.choices["pools"])
    assert "dropout" in space.choices


def test_when_literal_strings_are_refused():
    for cond in ("w > 100", "false", 1):
        data = copy.deepcopy(LISTS)
        data["blocks"]["head"].insert(0, {"bn": {"when": cond}})
        with pytest.raises(NasError, match=r"blocks\.head\[0\] \(bn\): when: .* is not an expression over choices, so "
                                           r"it would always count as true; write a condition with \$name"):
            Space.from_dict(data)
    data = copy.deepcopy(LISTS)
    data["blocks"]["head"] = {"when": "true", "layers": data["blocks"]["head"]}
    with pytest.raises(NasError, match=r"blocks\.head: when: 'true' is not an expression"):
        Space.from_dict(data)
    data["blocks"]["head"]["when"] = True  # a YAML bool is fine
    assert Space.from_dict(data).size == 24


def test_every_value_is_checked_at_load():
    data = copy.deepcopy(LISTS)
    data["choices"]["pool"] = ["maxpool", "maxpoo"]
    data["blocks"]["head"].insert(0, "$pool")
    with pytest.raises(NasError, match=r"choices\.pool value 'maxpoo' never gives a valid net: .*unknown layer type "
                                       r"'maxpoo'.*; fix or remove the value"):
        Space.from_dict(data)
    data = copy.deepcopy(LISTS)  # a value whose shapes never fit: kernel 40 on a 16x16 input
    data["choices"]["k"] = [3, 40]
    data["blocks"]["head"][0] = {"conv": {"out": 10, "kernel": "$k", "padding": 1}}
    with pytest.raises(NasError, match=r"choices\.k value 40 never gives a valid net: .*kernel 40"):
        Space.from_dict(data)


def test_value_check_stays_bounded_on_large_spaces():
    space_data = _wide14()
    space_data["choices"]["w13"] = [8, 16, 32, "x"]  # a string width: never builds
    start = time.perf_counter()
    with pytest.raises(NasError, match=r"choices\.w13 value 'x' never gives a valid net: .*\(tried 60 points with it\)"):
        Space.from_dict(space_data)
    assert time.perf_counter() - start < 2.0


def _wide14(max_params: int = 20000) -> dict:
    """The issue's example: 14 padded 3x3 convs, widths in {8, 16, 32, 64}, a max pool after conv 7."""
    layers = []
    for i in range(14):
        layers += [{"conv": {"out": f"$w{i}", "padding": 1}}, "relu"] + (["maxpool"] if i == 6 else [])
    return {"name": "wide14", "task": {"dataset": "mnist", "target": 0.99,
                                       "constraints": {"max_params": max_params, "min_rf": 44}},
            "input": [1, 28, 28], "choices": {f"w{i}": [8, 16, 32, 64] for i in range(14)},
            "blocks": {"f": layers + [{"pwconv": {"out": 10}}, "gap", "flatten"]}}


def test_feasible_points_are_found_by_search_not_only_sampling():
    space = Space.from_dict(_wide14())
    assert space.size == 4 ** 14
    all8 = check(space, {f"w{i}": 8 for i in range(14)})
    assert all8.feasible and (all8.analysis.params, all8.analysis.rf) == (7762, 70)
    blind = feasibility(space, samples=1000, search=0)
    assert blind.feasible == 0 and not blind.any_feasible  # blind sampling misses the corner
    f = feasibility(space, samples=1000)
    assert f.feasible == 0 and f.found is not None and f.found.feasible
    assert 0 < f.searched <= 2000 and f.params_range[0] < 20000
    assert any("a greedy walk from the closest ones found a feasible point" in line for line in f.lines())
    assert require_feasible(f) == ""
    assert _forward(space, f.found.params).shape == (2, 10)


def test_a_sampled_space_is_never_called_infeasible():
    space = Space.from_dict(_wide14(max_params=1000))  # truly infeasible, but only enumeration could prove it
    f = feasibility(space, samples=200, search=500)
    assert not f.any_feasible and f.searched == 500
    warning = require_feasible(f)  # no exception: the search goes on
    assert warning.startswith("warning: no feasible point found in space wide14 among 700 tried (200 random samples, "
                              "500 by a greedy walk); closest: ")
    assert "fails params < 1,000 (7,762)" in warning  # the walk reached the all-8 point
    assert "not proven infeasible: only enumerating all 268,435,456 points could prove it" in warning
    assert "\n" not in warning


def test_hint_is_safe_when_nothing_was_checked():
    f = feasibility(Space.from_dict(copy.deepcopy(LISTS)), exact_limit=0, samples=0, search=0)
    assert f.checked == 0 and "no point was checked" in f.hint


@pytest.mark.parametrize("expr, params, message", [
    ("$w // 0", {"w": 8}, r"cannot be computed \(integer division or modulo by zero\)"),
    ("$w + 'a'", {"w": 8}, r"cannot be computed \(unsupported operand"),
    ("$w in 5", {"w": 8}, r"cannot be computed \(argument of type 'int' is not iterable\)"),
    ("$w * 'a' * 100000000", {"w": 8}, r"would build a value of 800,000,000 items \(at most 10,000\)"),
    ("'a' * $w * 100000000000000", {"w": 8}, r"computes a number above"),
    ("[$w] * 20000", {"w": 8}, r"would build a value of 20,000 items"),
    ("'%0999999999d' % $w", {"w": 8}, r"% formatting of strings is not allowed"),
    # issue 20: one budget for a whole value, nested lists and bytes included, checked before allocating
    ("[[[$w] * 10000] * 10000] * 10000", {"w": 8}, r"would build a value of 100,000,000 items \(at most 10,000\)"),
    ("[[$w] * 100] * 200", {"w": 8}, r"would build a value of 20,000 items"),
    ("[[$w] * 5000, [$w] * 5001]", {"w": 8}, r"builds a value of over 10,000 items"),
    ("[$w] * 6000 + [[$w] * 4001]", {"w": 8}, r"builds a value of over 10,000 items"),
    ("$w if len(b'a' * 1000000000) else 0", {"w": 8}, r"bytes are not allowed in templates"),
    ("b'%0999999999d' % $w", {"w": 8}, r"bytes are not allowed in templates"),
    ("b'a' * 100000000000", {"w": 8}, r"bytes are not allowed in templates"),
    ("$p[3]", {"p": [8, 16, 32]}, r"index 3 is out of range for \[8, 16, 32\] \(length 3\)"),
    ("$p['a']", {"p": [8, 16]}, r"an index must be a whole number"),
    ("$w[0]", {"w": 8}, r"indexes 8, which is not a list"),
    ("$p[0:2]", {"p": [8, 16]}, r"Subscript is not allowed"),
    ("$w ** 2", {"w": 8}, r"BinOp is not allowed"),
    ("__import__('os')", {"w": 8}, r"Call is not allowed"),
])
def test_bad_expressions_are_one_line_errors(expr, params, message):
    with pytest.raises(SpecError, match=message):
        evaluate(expr, params)


def test_expressions_index_and_test_membership():
    assert evaluate("$p[0] + $p[-1]", {"p": [8, 16, 32]}) == 40
    assert evaluate("$p[$i]", {"p": [8, 16, 32], "i": 2}) == 32
    assert evaluate("2 in $pools and 3 not in $pools", {"pools": [1, 2]}) is True
    assert evaluate("len($p) + max($p)", {"p": [8, 16]}) == 18


def test_labels_that_would_collide_are_refused():
    data = copy.deepcopy(LISTS)
    data["choices"]["pools"] = [[1, 2], "1-2"]
    data["blocks"]["features"][0]["repeat"]["layers"][3] = {"maxpool": {"when": "$i in $pools"}}
    with pytest.raises(NasError, match=r"choices\.pools: values \[1, 2\] and '1-2' would both be stored as '1-2'"):
        Space.from_dict(data)


def test_points_may_give_list_values_or_labels(tmp_path):
    data = copy.deepcopy(LISTS)
    data["points"] = {"a": {"widths": [4, 8, 8], "pools": [1, 2], "drop": 0.0},
                      "b": {"widths": "8-8-16", "pools": "[]", "drop": 0.1}}
    space = Space.from_dict(data)
    assert space.point_of("a") == {"widths": [4, 8, 8], "pools": [1, 2], "drop": 0.0}
    assert space.point_of("b") == {"widths": [8, 8, 16], "pools": [], "drop": 0.1}
    data["points"]["c"] = {"widths": [4, 8], "pools": [1], "drop": 0.0}
    with pytest.raises(NasError, match=r"points\.c: widths=\[4, 8\] is outside space lists"):
        Space.from_dict(data)


def test_repeat_is_checked():
    data = copy.deepcopy(LISTS)
    data["blocks"]["features"][0]["repeat"]["tims"] = 3
    with pytest.raises(NasError, match=r"blocks\.features\[0\] \(repeat\): write repeat: \{times: N, .*unknown key 'tims'"):
        Space.from_dict(data)
    data = copy.deepcopy(LISTS)
    data["blocks"]["features"][0]["repeat"]["as"] = "drop"
    with pytest.raises(NasError, match=r"repeat index \$drop is also a choice"):
        Space.from_dict(data)


def test_nas_space_reports_the_walk(tmp_path):
    import yaml
    from click.testing import CliRunner

    from nas.cli import main

    path = tmp_path / "wide14.yaml"
    path.write_text(yaml.safe_dump(_wide14()))
    r = CliRunner().invoke(main, ["space", str(path), "--samples", "200"])
    assert r.exit_code == 0, r.output
    assert "268,435,456 points; checked 200 by sampling" in r.output
    assert "a greedy walk from the closest ones found a feasible point" in r.output
    path.write_text(yaml.safe_dump(_wide14(max_params=1000)))
    r = CliRunner().invoke(main, ["space", str(path), "--samples", "100", "--search", "300"])
    assert r.exit_code == 1 and "not proven infeasible" in r.output and "is infeasible" not in r.output


def test_repeats_inside_repeats_have_one_layer_budget():
    """1000 x 1000 would render a million layers for every point checked."""
    data = copy.deepcopy(LISTS)
    inner = {"repeat": {"times": 1000, "as": "j", "layers": ["relu"]}}
    data["choices"] = {"w": [4, 8]}
    data["blocks"] = {"f": [{"conv": {"out": "$w"}}, {"repeat": {"times": 1000, "layers": [inner]}}, "gap"]}
    with pytest.raises(SpaceError, match=r"a point renders more than 10,000 layers \(repeats inside repeats multiply\)"):
        Space.from_dict(data)
