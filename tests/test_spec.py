"""Spec parsing, round trips and the errors a user sees for bad specs."""
import pytest

from nas import registry
from nas.analysis import analyse
from nas.errors import NasError, SpecError
from nas.spec import Spec


@pytest.mark.parametrize("name", ["seed000", "seed001", "seed002", "seed004"])
def test_yaml_and_json_round_trip(name):
    spec = registry.load_design(name)
    assert Spec.from_yaml(spec.to_yaml()) == spec
    assert Spec.from_json(spec.to_json()) == spec
    assert analyse(Spec.from_yaml(spec.to_yaml())).rows == analyse(spec).rows


def test_every_op_round_trips():
    from nas import ops
    layers = ["conv: {out: 4, kernel: 3, groups: 2, bias: false}", "dwconv: {multiplier: 2}", "pwconv: {out: 4}",
              "dws: {out: 6, dilation: 2, padding: 2}", "maxpool", "avgpool: {kernel: 1}", "bn", "relu6",
              "gelu", "leakyrelu: {slope: 0.2}", "dropout2d: {p: 0.1}", "gap", "flatten", "bn", "dropout",
              "linear: {out: 10}", "tanh", "logsoftmax"]
    text = "input: [2, 12, 12]\nlayers:\n" + "".join(f"  - {l}\n" for l in layers)
    spec = Spec.from_yaml(text)
    assert Spec.from_yaml(spec.to_yaml()) == spec
    assert analyse(spec).out_shape == (10,)
    used = {l.op for l in spec.layers}
    assert used >= set(ops.OPS) - {"relu", "silu", "elu", "sigmoid", "hardswish"}


@pytest.mark.parametrize("layers, message", [
    (["conv"], "missing required argument 'out'"),
    ([{"conv": {"out": 4, "kernal": 3}}], "unknown argument 'kernal'"),
    ([{"conv": {"out": 4, "kernel": 40}}], "layer 0: conv: kernel 40"),
    ([{"conv": {"out": 4}}, {"maxpool": {"kernel": 40}}], "layer 1: maxpool: pool kernel 40 is larger"),
    ([{"conv": {"out": 3, "groups": 2}}], "groups=2 must divide"),
    (["swish"], "unknown layer type 'swish'"),
    ([{"dropout": {"p": 1.5}}], "p must be in [0, 1)"),
    ([{"conv": {"out": "8"}}], "out must be int"),
    (["flatten", {"conv": {"out": 2}}], "conv needs a feature map"),
    ([{"linear": {"out": 2}}], "add flatten"),
    ([{"conv": {"out": 4, "stride": 9, "kernel": 1}}] * 5, None),
    ([{"conv": {"out": 4, "padding": -1}}], "padding must be >= 0"),
])
def test_invalid_specs_name_layer_and_reason(layers, message):
    spec_data = {"input": [1, 16, 16], "layers": layers}
    if message is None:  # many strided layers: valid, shape shrinks to 1x1 but never 0
        assert analyse(Spec.from_dict(spec_data)).out_shape == (4, 1, 1)
        return
    with pytest.raises(SpecError) as err:
        analyse(Spec.from_dict(spec_data))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_level_errors(tmp_path):
    with pytest.raises(SpecError, match="'input' must be"):
        Spec.from_dict({"input": [28, 28], "layers": ["relu"]})
    with pytest.raises(SpecError, match="exactly one of"):
        Spec.from_dict({"input": [1, 8, 8]})
    with pytest.raises(SpecError, match="unknown spec field 'layer'"):
        Spec.from_dict({"input": [1, 8, 8], "layer": ["relu"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [1, 8, 8\nlayers: [relu]\n")
    with pytest.raises(NasError, match="not valid YAML"):
        Spec.load(bad)
    with pytest.raises(NasError, match="does not exist"):
        registry.load_design(str(tmp_path / "missing.yaml"))
    with pytest.raises(NasError, match="unknown design 'nope'"):
        registry.load_design("nope")


def test_features_detect_required_operations():
    a = analyse(registry.load_design("seed004"))
    assert {"dws", "dilated", "gap"} <= a.features
    a = analyse(registry.load_design("seed000"))
    assert not {"dws", "dilated", "gap", "fc"} & a.features
    a = analyse(Spec.from_dict({"input": [3, 8, 8], "layers": [{"conv": {"out": 4}}, "gap", "flatten", {"linear": {"out": 2}}]}))
    assert {"gap", "fc", "fc_after_gap"} <= a.features
