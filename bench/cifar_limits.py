"""What one CIFAR-10 epoch costs on this machine, against what the machine allows.

For one ``cifar_small`` point, seed 004 and the smallest ``cifar_dws`` point, in one run:

1. the machine's limits: memory bandwidth (a large tensor copy, GB/s) and each convolution's
   GFLOP/s at the widths and batch of these nets (forward and backward of that layer alone);
2. the floors they set for a 50,000-image epoch at batch 128: arithmetic (every conv's FLOPs at the
   fastest rate measured for its kind) and memory traffic (every layer's input and output bytes,
   written and read once forward and about twice backward, at the copy bandwidth); the larger binds;
3. the trainer's own step, timed: ``nas.train.train`` for one epoch of random CIFAR-shaped images
   (augmentation, the optimizer, and one evaluation of a single batch at the end), before and after
   the trainer's speed-ups (torch's dropout, then :class:`nas.dropout.Dropout`, then that trainer
   with ``TrainConfig(compile=True)``: torch.compile of the net, which may fuse BN and ReLU), alternated;
   a training step's profile by op, before and after;
4. what the evaluation after each search epoch costs (BatchNorm re-estimation and validation)
   against that epoch's training.

Writes ``results/bench_cifar_limits.json`` and ``.md``.

Usage (from the repository root)::

    python bench/cifar_limits.py            # both points, 2 threads
    python bench/cifar_limits.py --steps 4  # a quick look
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402

EPOCH = 50_000
BATCH = 128


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(mib: int = 256, repeats: int = 7) -> float:
    """GB/s of a copy between two tensors far larger than the caches (bytes read plus bytes written)."""
    a = torch.ones(mib << 18)  # float32: mib MiB
    b = torch.empty_like(a)
    return 2 * a.numel() * 4 / timed(lambda: b.copy_(a), repeats) / 1e9


def point(space_name: str, params: int | None = None, design: str | None = None):
    from nas.analysis import analyse
    from nas.space import Space

    space = Space.load(space_name)
    if design:
        return design, analyse(space.spec(space.point_of(design)))
    for choices in space.enumerate():
        a = analyse(space.spec(choices))
        if a.params == params:
            return f"{space_name} point", a
    raise SystemExit(f"{space_name} has no point of {params} params")


def layers(model: nn.Module, shape) -> list[dict]:
    """Each leaf module's input and output shapes for one batch, in order."""
    seen = []

    def hook(module, inputs, output):
        seen.append({"module": module, "in": tuple(inputs[0].shape), "out": tuple(output.shape)})

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.randn(BATCH, *shape))
    for h in handles:
        h.remove()
    return seen


def conv_kind(m: nn.Conv2d) -> str:
    if m.groups > 1 and m.groups == m.in_channels:
        return "depthwise"
    return "pointwise 1x1" if m.kernel_size == (1, 1) else f"dense {m.kernel_size[0]}x{m.kernel_size[1]}"


def conv_rates(seen: list[dict], repeats: int) -> list[dict]:
    """Each conv alone, forward and backward at batch 128, channels-last as the trainer runs it."""
    out = []
    for layer in seen:
        m = layer["module"]
        if not isinstance(m, nn.Conv2d):
            continue
        conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                         bias=m.bias is not None).to(memory_format=torch.channels_last)
        x = torch.randn(*layer["in"]).contiguous(memory_format=torch.channels_last).requires_grad_()

        def step():
            conv(x).sum().backward()
        seconds = timed(step, repeats)
        n, c, h, w = layer["out"]
        macs = n * c * h * w * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        flops = 2 * macs * 3  # forward, and backward to the input and to the weights
        out.append({"kind": conv_kind(m), "in": layer["in"], "out": layer["out"], "seconds": seconds,
                    "gflops": flops / 1e9, "gflop_per_s": flops / seconds / 1e9})
    return out


def traffic_bytes(seen: list[dict]) -> int:
    """Bytes one training step moves through memory at least: each layer writes its output and reads
    its input once forward, and backward reads both and writes the input's gradient (about twice)."""
    per = sum((torch.Size(s["in"]).numel() + torch.Size(s["out"]).numel()) * 4 for s in seen)
    return 3 * per


def random_cifar(n: int):
    from nas.data import DATASETS, TensorData

    info = DATASETS["cifar10"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return TensorData("random cifar", x, y, x[:BATCH], y[:BATCH], list(info.classes), info.mean, info.std)


def torch_dropout(model: nn.Module) -> nn.Module:
    """``model`` with every nas Dropout swapped back for ``torch.nn.Dropout``: the trainer before."""
    from nas.dropout import Dropout

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is Dropout:
                setattr(parent, name, nn.Dropout(child.p))
    return model


def trainer_epochs(spec_analysis, steps: int, repeats: int) -> dict:
    """Seconds per step of ``nas.train.train`` (1 epoch of ``steps`` batches, evaluation excluded),
    with torch's dropout (before), nas's (after) and nas's compiled, alternated ``repeats`` times."""
    from dataclasses import replace

    from nas.build import build
    from nas.train import TrainConfig, train

    data = random_cifar(BATCH * steps)
    config = TrainConfig(epochs=1, batch_size=BATCH, progress=False, bn_recalibrate=0, eval_each_epoch=False)
    configs = {"before": config, "after": config, "compiled": replace(config, compile=True)}
    models = {"before": torch_dropout(build(spec_analysis.spec, spec_analysis)),
              "after": build(spec_analysis.spec, spec_analysis), "compiled": build(spec_analysis.spec, spec_analysis)}
    times = {k: [] for k in models}
    warmup = {}
    for k, model in models.items():
        t0 = time.perf_counter()
        train(model, data, configs[k])  # warm-up: allocator, kernels, and the compile itself
        warmup[k] = time.perf_counter() - t0
    for _ in range(repeats):
        for k, model in models.items():
            times[k].append(train(model, data, configs[k]).epoch_seconds[0] / steps)
    out = {}
    for k, ts in times.items():
        step = statistics.median(ts)
        out[k] = {"step_seconds": step, "epoch_seconds": step * (EPOCH // BATCH), "step_seconds_all": ts,
                  "warmup_seconds": warmup[k]}
    return out


def evaluation_seconds(spec_analysis, repeats: int, recal: int = 10_000, val: int = 5_000) -> float:
    """What a search epoch adds after training: BatchNorm re-estimated on ``recal`` training images,
    then ``val`` validation images scored (the trainer's defaults, at its evaluation batch)."""
    from nas.build import build
    from nas.train import TrainConfig, _Normalise, accuracy, recalibrate_bn

    data = random_cifar(recal)
    model = build(spec_analysis.spec, spec_analysis).to(memory_format=torch.channels_last)
    norm = _Normalise(data, torch.device("cpu"), TrainConfig().channels_last)

    def once():
        recalibrate_bn(model, data.x_train, norm, BATCH)
        accuracy(model, data.x_train[:val], data.y_train[:val], norm, BATCH)
    return timed(once, repeats)


def profile(model: nn.Module, steps: int = 5, top: int = 10) -> list[dict]:
    """Self CPU time by op over ``steps`` training steps (forward, loss, backward, SGD step)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.nll_loss(model(x), y).backward()
        opt.step()
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows)
    rows.sort(key=lambda r: -r[1])
    return [{"op": k, "share": t / total} for k, t in rows[:top]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="trainer steps timed per point")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per conv layer")
    p.add_argument("--trainer-repeats", type=int, default=3, help="timed trainer epochs per variant, alternated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_cifar_limits")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    info = machine()
    bandwidth = copy_bandwidth()
    points = [point("cifar_small", params=141_930), point("cifar_dws", design="seed004"),
              point("cifar_dws", params=169_450)]
    report = {"command": "python bench/cifar_limits.py " + shlex.join(sys.argv[1:]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "copy_gb_per_s": bandwidth, "points": []}
    for name, a in points:
        from nas.build import build

        seen = layers(build(a.spec, a).eval(), a.spec.input)
        convs = conv_rates(seen, args.repeats)
        best = {}
        for c in convs:
            best[c["kind"]] = max(best.get(c["kind"], 0.0), c["gflop_per_s"])
        steps_per_epoch = EPOCH // BATCH
        arithmetic = steps_per_epoch * sum(c["gflops"] / best[c["kind"]] for c in convs)
        memory = steps_per_epoch * traffic_bytes(seen) / (bandwidth * 1e9)
        measured = trainer_epochs(a, args.steps, args.trainer_repeats)
        evaluation = evaluation_seconds(a, max(1, args.repeats // 2))
        report["points"].append({
            "name": name, "params": a.params, "macs": a.macs, "convs": convs, "best_gflop_per_s": best,
            "conv_seconds_per_epoch_as_measured": steps_per_epoch * sum(c["seconds"] for c in convs),
            "arithmetic_floor_s": arithmetic, "memory_floor_s": memory,
            "traffic_mb_per_step": traffic_bytes(seen) / 1e6, "trainer": measured,
            "evaluation_seconds": evaluation, "profile_before": profile(torch_dropout(build(a.spec, a))),
            "profile": profile(build(a.spec, a))})
    report["seconds"] = time.perf_counter() - started

    md = ["# A CIFAR-10 epoch against this machine's limits, before and after\n",
          f"`{report['command']}`, {report['date']}, {info['cpu']}, {info['cores']} cores, "
          f"{args.threads} threads, load average at start {', '.join(f'{v:.2f}' for v in info['loadavg_at_start'])}; "
          f"{report['seconds']:.0f} s.\n",
          f"Copy bandwidth: **{bandwidth:.1f} GB/s** (a 256 MiB float32 copy, bytes read plus written).\n",
          "Seconds per 50,000-image epoch at batch 128 (390 steps). Before: torch's `nn.Dropout`; after: "
          f"`nas.dropout.Dropout`; the trainer's median of {args.trainer_repeats} epochs of {args.steps} steps each, "
          "compiled: after, with `TrainConfig(compile=True)`; alternated in this run:\n",
          "| point | params | MMACs/image | arithmetic floor | memory floor | convs alone, as measured | "
          "trainer before | trainer after | after / before | compiled | compiled / after | binds |",
          "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :--- |"]
    for pt in report["points"]:
        binds = "memory" if pt["memory_floor_s"] > pt["arithmetic_floor_s"] else "arithmetic"
        before, after = pt["trainer"]["before"]["epoch_seconds"], pt["trainer"]["after"]["epoch_seconds"]
        compiled = pt["trainer"]["compiled"]["epoch_seconds"]
        md.append(f"| {pt['name']} | {pt['params']:,} | {pt['macs'] / 1e6:.1f} | {pt['arithmetic_floor_s']:.0f} s | "
                  f"{pt['memory_floor_s']:.0f} s | {pt['conv_seconds_per_epoch_as_measured']:.0f} s | "
                  f"{before:.0f} s | {after:.0f} s | {after / before:.2f} | {compiled:.0f} s | "
                  f"{compiled / after:.2f} | {binds} |")
    md.append("\nCompiling (the compiled arm's first, untimed epoch, less the eager one's): "
              + ", ".join(f"{pt['name']} {pt['trainer']['compiled']['warmup_seconds'] - pt['trainer']['after']['warmup_seconds']:.0f} s"
                          for pt in report["points"]) + ".")
    md.append("\nThe arithmetic floor runs every conv at the best GFLOP/s measured for its kind in that net; "
              "the memory floor moves every layer's input and output three times at the copy bandwidth. "
              "Each conv timed alone also pays its own call and allocation, and its sum can exceed the trainer's "
              "whole step; why has not been measured. "
              "Best GFLOP/s by kind (forward and backward of that layer alone):\n")
    for pt in report["points"]:
        md.append(f"- {pt['name']}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(pt["best_gflop_per_s"].items())))
    md.append("\nEvaluation after each search epoch (BatchNorm re-estimated on 10,000 training images, then 5,000 "
              "validation images scored), against training one epoch of the 45,000 images left (after):\n")
    for pt in report["points"]:
        share = pt["evaluation_seconds"] / (pt["trainer"]["after"]["epoch_seconds"] * 45_000 / EPOCH)
        md.append(f"- {pt['name']}: {pt['evaluation_seconds']:.1f} s, {share:.0%} of the epoch's training")
    for pt in report["points"]:
        for key, when in (("profile_before", "before"), ("profile", "after")):
            md.append(f"\nProfile of a training step, {pt['name']}, {when} (self CPU time):\n\n| op | share |\n| :--- | ---: |")
            md += [f"| `{r['op']}` | {r['share']:.0%} |" for r in pt[key]]
    write(report, "\n".join(md) + "\n", args.out, args.name)


if __name__ == "__main__":
    main()
