"""The analysis and the built module agree: parameter counts and every output shape."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nas import registry
from nas.analysis import analyse
from nas.build import build, leaf_modules
from nas.errors import SpecError
from nas.spec import Spec


def assert_agrees(spec: Spec) -> None:
    a = analyse(spec)
    net = build(spec, a).eval()
    assert sum(p.numel() for p in net.parameters()) == a.params
    seen = []
    leaves = leaf_modules(net)
    assert len(leaves) == len(a.rows)
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for m in leaves]
    with torch.no_grad():
        net(torch.randn(2, *spec.input))
    for h in hooks:
        h.remove()
    assert seen == [r.out_shape for r in a.rows]
    for m, r in zip(leaves, a.rows):
        assert sum(p.numel() for p in m.parameters()) == r.params, r


def test_documented_designs_agree():
    for name in registry.designs():
        assert_agrees(registry.load_design(name))


# -- random valid specs ------------------------------------------------------------------------

@st.composite
def layers(draw):
    """A random net on a small input; invalid draws are filtered by the analysis itself."""
    c = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(6, 20))
    out = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["conv", "dwconv", "pwconv", "dws", "maxpool", "avgpool",
                                     "bn", "relu", "dropout", "dropout2d", "leakyrelu"]))
        if kind == "conv":
            groups = draw(st.sampled_from([1, 1, 2]))
            args = {"out": groups * draw(st.integers(1, 6)), "kernel": draw(st.integers(1, 5)),
                    "stride": draw(st.integers(1, 2)), "padding": draw(st.integers(0, 2)),
                    "dilation": draw(st.integers(1, 2)), "groups": groups, "bias": draw(st.booleans())}
        elif kind in ("dwconv", "dws"):
            args = {"kernel": draw(st.sampled_from([1, 3, 5])), "padding": draw(st.integers(0, 2)),
                    "dilation": draw(st.integers(1, 2)), "bias": draw(st.booleans())}
            if kind == "dws":
                args["out"] = draw(st.integers(1, 8))
            else:
                args["multiplier"] = draw(st.integers(1, 2))
        elif kind == "pwconv":
            args = {"out": draw(st.integers(1, 8)), "bias": draw(st.booleans())}
        elif kind in ("maxpool", "avgpool"):
            k = draw(st.integers(1, 3))
            args = {"kernel": k, "stride": draw(st.integers(1, 3)), "padding": draw(st.integers(0, k // 2))}
        elif kind.startswith("dropout"):
            args = {"p": draw(st.floats(0, 0.5))}
        else:
            args = {}
        out.append({kind: args} if args else kind)
    head = draw(st.sampled_from([[], ["gap"], ["gap", "flatten", {"linear": {"out": 10}}],
                                 ["flatten", "bn", {"linear": {"out": 3, "bias": False}}, "logsoftmax"]]))
    return {"input": [c, size, size], "layers": out + head}


def test_random_specs_agree():
    """>= 200 random valid specs agree; every rejected one fails in torch as well."""
    valid, rejected = [], []

    @settings(max_examples=400, deadline=None, database=None)
    @given(layers())
    def check(data):
        spec = Spec.from_dict(data)
        try:
            analyse(spec)
        except SpecError:
            assert_torch_rejects(spec)
            rejected.append(spec)
            return
        assert_agrees(spec)
        valid.append(spec)

    check()
    print(f"{len(valid)} valid, {len(rejected)} rejected")
    assert len(valid) >= 200, (len(valid), len(rejected))
    assert rejected, "the generator should also produce some invalid specs"


def assert_torch_rejects(spec: Spec) -> None:
    """Build layer by layer with the shapes torch itself reports; it must fail somewhere."""
    from nas import ops
    from nas.spec import primitives
    x = torch.zeros(1, *spec.input)
    try:
        with torch.no_grad():
            for _, name, args, _, _ in primitives(spec):
                x = ops.get(name).module(tuple(x.shape[1:]), args).eval()(x)
                if x.numel() == 0 or (ops.get(name).needs == "map" and x.dim() != 4):
                    return
    except (RuntimeError, ValueError, IndexError):
        return
    raise AssertionError(f"analysis rejected a spec torch accepts: {spec.to_dict()}")
