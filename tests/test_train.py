"""The trainer: batch augmentation, early stops, NaN status, determinism, and a real-data smoke test."""
import math
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from nas import augment as A
from nas import data as datasets
import importlib

T = importlib.import_module("nas.train")  # the module: `nas.train` is also the public function
from nas.build import build
from nas.cli import main
from nas.data import TensorData
from nas.errors import NasError
from nas.spec import Spec

DATA = Path(os.environ.get("NAS_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")) / "data"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def blobs(n=512, classes=2, channels=1, size=8, seed=0) -> TensorData:
    """Images whose class is their brightness: easy to learn, quick to train."""
    g = gen(seed)
    y = torch.arange(n) % classes
    base = (y.float() + 0.5) / classes * 255
    x = (base.view(-1, 1, 1, 1) + torch.randn(n, channels, size, size, generator=g) * 20).clamp(0, 255)
    x = x.to(torch.uint8)
    return TensorData("blobs", x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4:], y[n * 3 // 4:],
                      [str(c) for c in range(classes)], (0.5,) * channels, (0.3,) * channels)


def small_net(channels=1, classes=2) -> nn.Module:
    return build(Spec.from_dict({"input": [channels, 8, 8], "layers": [
        {"conv": {"out": 4, "padding": 1}}, "relu", "bn", "gap", "flatten", {"linear": {"out": classes}}]}))


def quick(**kw) -> T.TrainConfig:
    return T.TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.1, "progress": False, "device": "cpu", **kw})


# ---- augmentation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, policy", [(1, "shift"), (3, "crop_flip"), (1, "auto"), (3, "auto")])
def test_augment_keeps_shape_dtype_and_value_range(channels, policy):
    x = torch.rand(16, channels, 28, 28, generator=gen())
    out = A.augment_batch(x, T.TrainConfig(augment_policy=policy, cutout=8), gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1 + 1e-6  # interpolation, padding and cutout stay in range
    assert not torch.equal(out, x)


def test_shift_moves_a_dot_by_at_most_shift_pixels():
    x = torch.zeros(64, 1, 15, 15)
    x[:, :, 7, 7] = 1
    out = A.random_shift(x, 2, gen())
    ys, xs = (out[:, 0] == 1).nonzero()[:, 1:].T
    assert out.sum(dim=(1, 2, 3)).eq(1).all()
    assert (ys - 7).abs().max() == 2 and (xs - 7).abs().max() == 2  # 64 draws reach both limits


def test_rotation_turns_by_at_most_the_given_angle():
    x = torch.zeros(200, 1, 41, 41)
    x[:, :, 20, 36] = 1  # 16 px right of the centre
    out = A.random_shift_rotate(x, 0, 10.0, gen())
    ys, xs = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    w = out[:, 0]
    cy, cx = (w * ys).sum((1, 2)) / w.sum((1, 2)), (w * xs).sum((1, 2)) / w.sum((1, 2))
    angles = torch.rad2deg(torch.atan2(cy - 20, cx - 20)).abs()
    assert angles.max() <= 10.5 and angles.max() > 7  # within the limit, and it does rotate


def test_crop_flip_and_cutout():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert torch.equal(A.random_crop(x, (4, 4), gen()), x)  # a full-size crop is the identity
    crops = A.random_crop(torch.nn.functional.pad(x, (1,) * 4), (4, 4), gen())
    assert crops.shape == x.shape
    flipped = A.random_flip(x.repeat(32, 1, 1, 1), gen())
    mirrored = torch.tensor([torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flipped)])
    kept = torch.tensor([torch.equal(f, x[i % 2]) for i, f in enumerate(flipped)])
    assert (mirrored | kept).all() and mirrored.any() and kept.any()
    holes = A.cutout(torch.ones(50, 3, 10, 10), 4, gen())
    zeros = (holes == 0).all(1).sum((1, 2))
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 square, clipped at the edges
    assert ((holes == 0).all(1) | (holes == 1).all(1)).all()  # all channels together


def test_augmentation_is_repeatable_for_a_seed():
    x = torch.rand(8, 3, 32, 32, generator=gen())
    cfg = T.TrainConfig(cutout=8)
    assert torch.equal(A.augment_batch(x, cfg, gen(5)), A.augment_batch(x, cfg, gen(5)))


# ---- the loop ---------------------------------------------------------------------------------------

def test_learns_an_easy_task_and_reports_every_epoch():
    seen = []
    r = T.train(small_net(), blobs(), quick(), on_epoch=lambda e, a: seen.append((e, a)))
    assert r.status == "complete" and len(r.accuracies) == len(r.losses) == len(r.epoch_seconds) == 3
    assert seen == list(enumerate(r.accuracies, 1))
    assert r.accuracies[-1] > 0.95 and r.seconds >= sum(r.epoch_seconds) > 0
    assert r.target_epoch is None


def test_target_met_stops_early():
    r = T.train(small_net(), blobs(), quick(epochs=20, target=0.9, stop_at_target=True))
    assert r.status == "target_met" and r.target_epoch == len(r.accuracies) < 20
    assert r.accuracies[-1] >= 0.9 and all(a < 0.9 for a in r.accuracies[:-1])


def test_target_is_recorded_without_stopping():
    r = T.train(small_net(), blobs(), quick(epochs=4, target=0.5))
    assert r.status == "complete" and len(r.accuracies) == 4 and r.target_epoch == 1


def test_callback_can_stop_training():
    r = T.train(small_net(), blobs(), quick(epochs=5), on_epoch=lambda e, a: e == 2)
    assert r.status == "stopped" and len(r.accuracies) == 2 and "epoch 2" in r.message


def test_nan_loss_ends_the_run_with_a_clear_status():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 2)

        def forward(self, x):
            return self.lin(x.flatten(1)) * math.nan

    r = T.train(Broken(), blobs(), quick())
    assert r.status == "nan" and r.accuracies == []
    assert r.message == "loss became NaN at epoch 1 batch 1: lower the learning rate (--lr)"


def test_diverging_learning_rate_is_reported_as_nan():
    r = T.train(small_net(), blobs(), quick(lr=1e30, epochs=2))
    assert r.status == "nan" and "lower the learning rate" in r.message


def test_ctrl_c_propagates():
    def interrupt(epoch, acc):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train(small_net(), blobs(), quick(), on_epoch=interrupt)


def test_same_seed_same_run_on_cpu():
    runs = []
    for _ in range(2):
        net = small_net(3, 3)
        r = T.train(net, blobs(classes=3, channels=3), quick(seed=7, cutout=4))
        runs.append((r.accuracies, r.losses, {k: v.clone() for k, v in net.state_dict().items()}))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert all(torch.equal(runs[0][2][k], runs[1][2][k]) for k in runs[0][2])
    other = small_net(3, 3)
    T.train(other, blobs(classes=3, channels=3), quick(seed=8, cutout=4))
    assert not torch.equal(other.state_dict()["features.0.weight"], runs[0][2]["features.0.weight"])


def test_seed_fixes_the_run_whatever_the_model_was_built_with():
    a, b = small_net(), small_net()  # different random initial weights
    ra, rb = T.train(a, blobs(), quick(seed=1)), T.train(b, blobs(), quick(seed=1))
    assert ra.losses == rb.losses


def test_options_that_change_the_arithmetic_still_train():
    r = T.train(small_net(), blobs(), quick(channels_last=False, augment=False, bf16=True, label_smoothing=0.0))
    assert r.status == "complete" and r.accuracies[-1] > 0.9


def test_bn_recalibration_measures_clean_images_with_dropout_off():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(1))
    x = torch.randint(0, 256, (600, 1, 4, 4), dtype=torch.uint8)
    norm = T._Normalise(blobs(), torch.device("cpu"), channels_last=False)
    net.train()
    for _ in range(20):
        net(norm(x))  # dropout inflates the variance the running statistics see
    clean = norm(x)
    assert net[1].running_var.item() > 1.5 * clean.var().item()
    T.recalibrate_bn(net, x, norm, batch_size=600)
    assert net[1].running_mean.item() == pytest.approx(clean.mean().item(), abs=1e-4)
    assert net[1].running_var.item() == pytest.approx(clean.var().item(), rel=1e-3)
    assert net.training and net[1].momentum == 0.1


def test_bn_recalibration_does_not_change_training():
    a, b = T.train(small_net(), blobs(), quick()), T.train(small_net(), blobs(), quick(bn_recalibrate=100))
    assert a.losses == b.losses


def test_rungs_score_inside_the_schedule_without_changing_it(monkeypatch):
    """384 training images, batch 32: 12 steps an epoch. Rungs at 100 and 384 images are scored
    after steps 4 and 12 (the second is the epoch's own test, scored once); the run is the same."""
    plain = T.train(small_net(), blobs(), quick())
    calls, seen = [], []
    real = T.accuracy
    monkeypatch.setattr(T, "accuracy", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = T.train(small_net(), blobs(), quick(), rungs=(100, 384, 10**9), on_rung=lambda i, a: seen.append(i))
    assert seen == [100, 384] and list(r.rungs) == [100, 384] and r.rungs[384] == r.accuracies[0]
    assert len(calls) == 1 + 3  # the rung at 100 images, then the three epochs
    assert r.losses == plain.losses and r.accuracies == plain.accuracies and r.status == "complete"


def test_a_rung_can_stop_the_run_mid_epoch():
    r = T.train(small_net(), blobs(), quick(), rungs=(100, 500), on_rung=lambda images, acc: images >= 500)
    assert r.status == "stopped" and list(r.rungs) == [100, 500] and len(r.accuracies) == 1
    assert "after 500 images" in r.message


def test_bf16_is_decided_from_the_hardware_unless_set(monkeypatch):
    assert quick().bf16 == "auto"
    flags = " ".join(line for line in open("/proc/cpuinfo") if line.startswith("flags")) if os.path.exists("/proc/cpuinfo") else ""
    assert T.native_bf16(torch.device("cpu")) == ("amx_bf16" in flags.split())
    used = []
    monkeypatch.setattr(T, "_autocast", lambda device, enabled: used.append(enabled) or T.contextlib.nullcontext())
    monkeypatch.setattr(T, "native_bf16", lambda device: True)
    T.train(small_net(), blobs(), quick(epochs=1))
    assert used and all(used)
    used.clear()
    T.train(small_net(), blobs(), quick(epochs=1, bf16=False))
    assert used and not any(used)


@pytest.mark.parametrize("options", [{}, {"ema": 0.9, "bn_recalibrate": 200}])
def test_the_trained_model_scores_the_last_reported_accuracy(options):
    d, net = blobs(classes=3), small_net(classes=3)
    r = T.train(net, d, quick(**options))
    norm = T._Normalise(d, torch.device("cpu"), channels_last=True)
    assert T.accuracy(net, d.x_eval, d.y_eval, norm) == r.accuracies[-1]


def test_weight_average_follows_the_weights():
    lin = nn.Linear(2, 1, bias=False)
    avg = T.WeightAverage(lin, decay=0.5)
    with torch.no_grad():
        start = lin.weight.clone()
        lin.weight.add_(1.0)
    for step in range(100):
        avg.update(step)
    assert torch.allclose(avg.average[0], start + 1.0, atol=1e-6)
    with torch.no_grad():
        lin.weight.add_(1.0)
    with avg.swapped_in():
        assert torch.allclose(lin.weight, start + 1.0)
    assert torch.allclose(lin.weight, start + 2.0)


def test_pick_device():
    assert T.pick_device("cpu").type == "cpu"
    assert T.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(NasError, match="CUDA is not available"):
            T.pick_device("cuda")
    with pytest.raises(NasError, match="unknown device"):
        T.pick_device("toaster")


def test_a_training_set_smaller_than_a_batch_is_one_batch():
    r = T.train(small_net(), blobs(n=16), quick(batch_size=64, epochs=1))
    assert r.status == "complete" and len(r.accuracies) == 1


def test_nesterov_sgd_matches_torch_optim():
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ours = T.NesterovSGD(a.parameters(), momentum=0.9, weight_decay=5e-4)
    theirs = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for step in range(4):
        x = torch.randn(8, 5)
        for net, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            net(x).square().mean().backward()
        ours.step(0.05)
        theirs.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)


# ---- real data ----------------------------------------------------------------------------------------

def real_mnist(tmp_path):
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {DATA}")
    return datasets.load("mnist", data_dir=DATA, cache_dir=tmp_path / "cache")


@pytest.mark.slow
def test_smoke_small_net_on_a_few_thousand_real_mnist_images(tmp_path):
    d = real_mnist(tmp_path).subset(train=4000, test=2000, seed=0)
    net = build(Spec.from_dict({"input": [1, 28, 28], "layers": [
        {"conv": {"out": 8, "padding": 1}}, "relu", "bn", "maxpool",
        {"conv": {"out": 16, "padding": 1}}, "relu", "bn", "maxpool",
        {"conv": {"out": 16, "padding": 1}}, "relu", "bn", "gap", "flatten", {"linear": {"out": 10}}]}))
    r = T.train(net, d, T.TrainConfig(epochs=1, batch_size=32, lr=0.2, progress=False, device="cpu"))
    assert r.status == "complete" and r.accuracies[0] > 0.90, r.accuracies


def test_cli_train_prints_epochs_target_and_time(tmp_path, monkeypatch):
    from PIL import Image

    for split in ("train", "test"):
        for c, shade in (("dark", 40), ("light", 200)):
            (tmp_path / "shades" / split / c).mkdir(parents=True)
            for i in range(24):
                Image.new("L", (8, 8), shade + i).save(tmp_path / "shades" / split / c / f"{i}.png")
    (tmp_path / "tiny.yaml").write_text(
        "input: [1, 8, 8]\nlayers: [{conv: {out: 4, padding: 1}}, relu, bn, gap, flatten, {linear: {out: 2}}]\n")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    out = CliRunner().invoke(main, ["train", str(tmp_path / "tiny.yaml"), "--dataset", str(tmp_path / "shades"),
                                    "--epochs", "3", "--batch-size", "8", "--lr", "0.2", "--target", "0.9",
                                    "--device", "cpu", "--save", str(tmp_path / "w.pt")])
    assert out.exit_code == 0, out.output
    assert "epoch   1: test accuracy" in out.output and "epoch   3: test accuracy" in out.output
    assert "target 0.9: first met at epoch" in out.output and "s in all" in out.output
    assert (tmp_path / "w.pt").is_file()
    assert "batch/s" not in out.output and "\r" not in out.output, "no progress bar when the output is not a terminal"


def test_cli_train_needs_a_dataset_for_unusual_inputs(tmp_path):
    (tmp_path / "odd.yaml").write_text("input: [2, 9, 9]\nlayers: [gap, flatten]\n")
    out = CliRunner().invoke(main, ["train", str(tmp_path / "odd.yaml")])
    assert out.exit_code == 2 and "pass --dataset" in out.output


def test_the_fake_trainer_keeps_the_real_trainers_contract():
    """The search and confirmation tests train with toys.FakeTrainer: it takes what nas.train.train
    takes, and returns the real TrainResult with a status the real trainer gives."""
    import inspect

    from nas.train import STATUSES, TrainResult, settings, train
    from toys import FakeTrainer, tiny_data

    real = inspect.signature(train).parameters
    fake = inspect.signature(FakeTrainer().__call__).parameters
    assert list(fake) == list(real)
    assert [p.default for p in fake.values()] == [p.default for p in real.values()]
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    result = FakeTrainer()(model, tiny_data(), settings(epochs=4, batch_size=32, target=0.95))
    assert type(result) is TrainResult and result.status in STATUSES
    assert TrainResult().status in STATUSES


# ---- checkpoints ------------------------------------------------------------------------------------

def dropout_net() -> nn.Module:
    return build(Spec.from_dict({"input": [1, 8, 8], "layers": [
        {"conv": {"out": 6, "padding": 1}}, "relu", "bn", {"dropout": {"p": 0.2}}, "gap", "flatten",
        {"linear": {"out": 2}}]}))


def test_a_run_resumed_from_its_checkpoint_ends_exactly_as_the_whole_run(tmp_path):
    """Ctrl-C in epoch 3's callback; the same call again trains only epoch 4, replays the callbacks of
    1-3 with their figures, and ends with the whole run's weights, scores and losses (dropout, the
    weight average and the augmentation draw from generators the checkpoint carries)."""
    data, config = blobs(), quick(epochs=4, seed=3, ema=0.9, cutout=2)
    per_epoch = T.images_per_epoch(len(data.y_train), config.batch_size)
    rungs = (per_epoch // 2, per_epoch * 5 // 2)

    def run(path=None, stop_at=None):
        seen = []

        def on_epoch(epoch, acc):
            seen.append(("epoch", epoch, acc))
            if epoch == stop_at:
                raise KeyboardInterrupt

        net = dropout_net()
        r = T.train(net, data, config, on_epoch=on_epoch, rungs=rungs,
                    on_rung=lambda images, acc: seen.append(("rung", images, acc)), checkpoint=path)
        return r, seen, net.state_dict()

    whole, whole_seen, whole_state = run()
    path = tmp_path / "ckpt" / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        run(path, stop_at=3)
    assert path.exists()
    resumed, seen, state = run(path)
    assert seen == whole_seen and len(seen) == 6
    assert resumed.accuracies == whole.accuracies and resumed.losses == whole.losses
    assert resumed.rungs == whole.rungs and resumed.status == whole.status == "complete"
    assert all(torch.equal(state[k], whole_state[k]) for k in whole_state)
    assert len(resumed.epoch_seconds) == 4 and not path.exists()  # an ended run leaves no checkpoint


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_ignored(tmp_path):
    data = blobs()
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        T.train(dropout_net(), data, quick(lr=0.1), checkpoint=path,
                on_epoch=lambda e, a: (_ for _ in ()).throw(KeyboardInterrupt))
    fresh_net, other_net = dropout_net(), dropout_net()
    fresh = T.train(fresh_net, data, quick(lr=0.05))
    other = T.train(other_net, data, quick(lr=0.05), checkpoint=path)  # another learning rate: another run
    assert other.accuracies == fresh.accuracies and other.losses == fresh.losses
    path.write_bytes(b"not a checkpoint")
    damaged = T.train(dropout_net(), data, quick(lr=0.05), checkpoint=path)
    assert damaged.losses == fresh.losses and not path.exists()
