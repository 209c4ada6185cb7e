"""nas's CPU dropout: the same distribution, gradient and evaluation as torch.nn.Dropout."""
import pytest
import torch

from nas import registry
from nas.build import build
from nas.dropout import Dropout, keep_mask
from nas.export import layer_source


@pytest.mark.parametrize("p", [0.05, 0.15, 0.5])
def test_every_element_is_kept_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    keep = keep_mask(torch.empty(1 << 22), p).float()
    # Each generator call fills four elements from its 64 bits: every one of the four must be fair.
    lanes = keep.view(-1, 4).mean(0)
    sigma = (p * (1 - p) / (1 << 20)) ** 0.5
    assert torch.allclose(lanes, torch.full((4,), 1 - p), atol=5 * sigma), lanes


def test_neighbouring_elements_are_independent():
    torch.manual_seed(0)
    keep = keep_mask(torch.empty(1 << 22), 0.5).float()
    both = (keep[:-1] * keep[1:]).mean().item()
    assert abs(both - 0.25) < 0.002


def test_kept_elements_are_scaled_and_the_gradient_follows_the_mask():
    torch.manual_seed(1)
    x = torch.rand(64, 8, 16, 16).add_(0.5).requires_grad_()
    drop = Dropout(0.2).train()
    y = drop(x)
    kept = y != 0
    assert torch.allclose(y[kept], x.detach()[kept] / 0.8)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(x.grad, g * kept / 0.8)


def test_the_seed_fixes_the_mask():
    x = torch.ones(10_000)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(Dropout(0.3).train()(x))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_evaluation_and_p_zero_leave_the_input_alone():
    x = torch.randn(1000)
    assert torch.equal(Dropout(0.3).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_nets_use_it_and_export_it_as_torchs_dropout():
    net = build(registry.load_design("seed004"))
    drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is Dropout for m in drops)
    assert layer_source(drops[0]) == "nn.Dropout(p=0.15)"


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_output_and_its_gradient_keep_the_inputs_layout(layout):
    # A contiguous result after a channels_last conv made every later layer pay a layout copy: the
    # trainer ran 1.3x slower with this dropout than with torch's (bench/cifar_limits.py).
    torch.manual_seed(0)
    x = torch.rand(8, 16, 6, 6).add_(0.5).to(memory_format=layout).requires_grad_()
    y = Dropout(0.3).train()(x)
    assert y.is_contiguous(memory_format=layout)
    y.backward(torch.ones_like(y))
    assert x.grad.is_contiguous(memory_format=layout)
    kept = y != 0
    assert torch.allclose(x.grad, kept / 0.7) and 0.6 < kept.float().mean() < 0.8
