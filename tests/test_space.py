"""Space files: validation, templates, documented points, and feasibility against brute force."""
import itertools

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

from nas import registry
from nas.analysis import analyse
from nas.cli import main
from nas.errors import NasError
from nas.feasibility import feasibility, require_feasible
from nas.space import Space, fingerprint

SMALL = {
    "name": "small",
    "task": {"dataset": "mnist", "target": 0.9, "max_epochs": 3,
             "constraints": {"max_params": 700, "min_rf": 9, "require": ["dilated"]}},
    "input": [1, 20, 20],
    "choices": {"w": [2, 4, 8], "k": [3, 5], "dil": [1, 2], "pool": ["maxpool", "none"]},
    "blocks": {"f": [{"conv": {"out": "$w", "kernel": "$k"}}, "relu", "$pool",
                     {"conv": {"out": "$w * 2", "dilation": "$dil"}}, "bn"]},
}


def brute_force_rf(net: nn.Module, input_shape) -> int:
    """RF measured with gradients: unit weights, pools averaged, the centre output's input support."""
    net = net.eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0)
        if isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    for block in net.children():
        for i, m in enumerate(block):
            if isinstance(m, nn.MaxPool2d):
                block[i] = nn.AvgPool2d(m.kernel_size, m.stride, m.padding)
    x = torch.ones(1, *input_shape, requires_grad=True)
    feats = x
    for block in net.children():
        feats = block(feats)
    feats[0, 0, feats.shape[2] // 2, feats.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    return int(rows.max() - rows.min() + 1)


def test_feasibility_matches_brute_force():
    from nas.build import build
    space = Space.from_dict(SMALL)
    c = space.task.constraints
    feasible, params, rfs, rejections = 0, [], [], {"params": 0, "rf": 0, "dilated": 0}
    for w, k, dil, pool in itertools.product(*SMALL["choices"].values()):
        spec = space.spec({"w": w, "k": k, "dil": dil, "pool": pool})
        net = build(spec)
        n = sum(p.numel() for p in net.parameters())
        rf = brute_force_rf(net, spec.input)
        dilated = any(isinstance(m, nn.Conv2d) and m.dilation[0] > 1 for m in net.modules())
        ok = [n < c.max_params, rf > c.min_rf, dilated]
        rejections["params"] += not ok[0]
        rejections["rf"] += not ok[1]
        rejections["dilated"] += not ok[2]
        if all(ok):
            feasible += 1
            params.append(n)
            rfs.append(rf)
    f = feasibility(space)
    assert f.method == "exact" and f.checked == 24 and f.valid == 24
    assert f.feasible == feasible > 0
    assert f.params_range == (min(params), max(params))
    assert f.rf_range == (min(rfs), max(rfs))
    assert f.rejections["params < 700"] == rejections["params"]
    assert f.rejections["RF > 9"] == rejections["rf"]
    assert f.rejections["requires dilated"] == rejections["dilated"]


def test_sampling_is_used_and_said_for_large_spaces():
    f = feasibility(Space.from_dict(SMALL), exact_limit=10, samples=200)
    assert f.method == "sampled" and f.checked == 200
    assert any("estimated from 200 random samples" in line for line in f.lines())


def test_infeasible_space_fails_fast_with_a_hint():
    data = {**SMALL, "task": {**SMALL["task"], "constraints": {"min_rf": 40}}}
    f = feasibility(Space.from_dict(data))
    assert f.feasible == 0
    assert "max RF in this space is 14 <= 40: add dilation" in f.hint
    with pytest.raises(NasError, match="space small is infeasible: none of 24 points of it"):
        require_feasible(f)


def test_invalid_shapes_are_counted_not_fatal():
    # kernel 17 fits only without the pool and without dilation: 3 of its 12 points build
    data = {**SMALL, "choices": {**SMALL["choices"], "k": [3, 17]}}
    f = feasibility(Space.from_dict(data))
    assert f.valid == 15 and f.checked == 24
    assert any(name.startswith("invalid shapes") for name in f.rejections)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(colour=1), "unknown field 'colour' (allowed: name, description, task"),
    (lambda d: d["task"].update(target=99.4), "task.target must be a test accuracy in (0, 1]"),
    (lambda d: d["task"].update(max_epochs=-3), "task.max_epochs must be a positive integer"),
    (lambda d: d["task"]["constraints"].update(max_param=5), "task.constraints: unknown constraint 'max_param'"),
    (lambda d: d["task"]["constraints"].update(require=["wings"]), "unknown required operation 'wings'"),
    (lambda d: d["choices"].update(w=8), "choices.w must be a non-empty list"),
    (lambda d: d["choices"].update(w=[]), "choices.w must be a non-empty list"),
    (lambda d: d["blocks"]["f"].append({"conv": {"out": "$wdith"}}), "blocks use $wdith but choices define only"),
    (lambda d: d["choices"].update(extra=[1, 2]), "choices.extra is never used"),
    (lambda d: d["blocks"]["f"].append({"conv": {"out": 3, "kernal": 3}}), "blocks: layer 5: conv: unknown argument 'kernal'"),
    (lambda d: d["blocks"]["f"].append("swish"), "unknown layer type 'swish'"),
    (lambda d: d.update(points={"x": {"w": 3, "k": 3, "dil": 1, "pool": "none"}}), "points.x: w=3 is outside space small"),
    (lambda d: d.pop("task"), "missing field 'task'"),
])
def test_validation_names_file_field_and_allowed(tmp_path, change, message):
    data = yaml.safe_load(yaml.safe_dump(SMALL))
    change(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(NasError) as err:
        Space.load(str(path))
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntask: {dataset: mnist\n")
    with pytest.raises(NasError, match="not valid YAML at line"):
        Space.load(str(path))


def test_strict_params():
    space = Space.from_dict(SMALL)
    with pytest.raises(NasError, match="unknown choice 'width'"):
        space.check_params({"width": 2, "k": 3, "dil": 1, "pool": "none"})
    with pytest.raises(NasError, match="no value for choice 'w'"):
        space.check_params({"k": 3, "dil": 1, "pool": "none"})
    with pytest.raises(NasError, match=r"k=4 is outside space small \(allowed: \[3, 5\]\)"):
        space.check_params({"w": 2, "k": 4, "dil": 1, "pool": "none"})


@pytest.mark.parametrize("space_name, design", [("mnist_squeeze", "seed000"), ("mnist_squeeze", "seed001"),
                                                ("mnist_gap", "seed002"), ("cifar_dws", "seed004"),
                                                ("mnist_squeeze_rf44", "seed001")])
def test_documented_designs_are_points_of_their_spaces(space_name, design):
    space = Space.load(space_name)
    spec = space.spec(space.point_of(design))
    expected = registry.load_design(design)
    assert fingerprint(spec) == fingerprint(expected)
    assert analyse(spec).params == analyse(expected).params
    f = feasibility(space)
    assert f.method == "exact" and f.feasible > 0


def test_nas_space_cli():
    r = CliRunner().invoke(main, ["space", "mnist_squeeze"])
    assert r.exit_code == 0, r.output
    assert "1,280 points; checked 1,280 by enumerating all of them" in r.output
    assert "meeting every constraint: 800" in r.output
    r = CliRunner().invoke(main, ["space", "no_such_space"])
    assert r.exit_code == 2 and "unknown search space 'no_such_space'" in r.output
