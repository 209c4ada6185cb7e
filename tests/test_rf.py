"""Receptive field on cases checked by hand."""
from nas import registry
from nas.analysis import analyse
from nas.spec import Spec


def rf_rows(layers, input=(1, 32, 32)):
    a = analyse(Spec.from_dict({"input": list(input), "layers": layers}))
    return [(r.rf, r.jump, r.start) for r in a.rows]


def test_plain_convs_grow_by_kernel_minus_one():
    assert [r[0] for r in rf_rows([{"conv": {"out": 4}}] * 3)] == [3, 5, 7]


def test_stride_and_pool_multiply_the_jump():
    rows = rf_rows([{"conv": {"out": 4, "stride": 2}}, {"conv": {"out": 4}}, "maxpool", {"conv": {"out": 4}}])
    # 3 (j=2); 3+2*2=7 (j=2); 7+1*2=9 (j=4); 9+2*4=17 (j=4)
    assert [(rf, j) for rf, j, _ in rows] == [(3, 2), (7, 2), (9, 4), (17, 4)]


def test_dilation_uses_effective_kernel():
    rows = rf_rows([{"conv": {"out": 4, "dilation": 2}}, {"conv": {"out": 4, "kernel": 5, "dilation": 3}}])
    # k_eff 5 -> 5; k_eff 13 -> 17
    assert [r[0] for r in rows] == [5, 17]


def test_padding_shifts_start_not_size():
    rows = rf_rows([{"conv": {"out": 4, "padding": 1}}, {"conv": {"out": 4, "padding": 0}}])
    assert rows == [(3, 1, 0.5), (5, 1, 1.5)]


def test_gap_counts_as_pool_over_its_input():
    # 28 -> conv3 26 -> pool 13, rf 4 j 2; gap kernel 13: 4 + 12*2 = 28
    rows = rf_rows([{"conv": {"out": 4}}, "maxpool", "gap"], input=(1, 28, 28))
    assert rows[-1][0] == 28


def test_grouped_and_depthwise_convs_count_like_convs():
    rows = rf_rows([{"conv": {"out": 4, "groups": 1}}, {"dwconv": {"kernel": 5}}, {"dws": {"out": 8}}])
    assert [r[0] for r in rows] == [3, 7, 9, 9]


def test_seed004_dilated_net_is_36_before_gap_and_48_after():
    rows = analyse(registry.load_design("seed004")).rows
    dilated = next(r for r in rows if r.op == "conv" and r.args["dilation"] == 2)
    assert (dilated.rf, dilated.jump) == (36, 4)
    pool = next(r for r in rows if r.op == "avgpool")
    before = rows[pool.index - 1]
    assert (before.rf, pool.rf) == (36, 48)


def test_seed001_rf():
    # 3 5 7 | pool 8 j2 | 12 16 | pool 18 j4 | 26 34 | pool 38 j8 | avgpool3 38+2*8 = 54
    assert analyse(registry.load_design("seed001")).rf == 54
