"""What the field does to speed up small convolutions on a CPU, measured on this machine.

Issue 12 asks to try each and keep only what measures faster. One training step (forward,
backward, SGD) of a net on random MNIST-shaped batches, timed as the median of ``--steps`` steps
after warm-up, the two settings of each comparison interleaved step by step so that a busy machine
slows both alike. Reported as milliseconds per step and seconds per 60,000-image epoch:

* batch size 32 / 64 / 128 / 256 (seed 001, channels-last, all threads);
* channels-last against NCHW for mnist_squeeze nets of width 4 to 12 (seed 001's other choices);
* bf16 autocast against fp32 (seed 001, batch 128);
* ``torch.compile`` against eager (seed 001, batch 128), with the compile time;
* one process with every thread against one single-threaded process per core, in images a second
  of all processes together (seed 001, batch 128): the choice behind ``nas search --jobs``.

Usage (from the repository root)::

    python bench/cpu_options.py
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402
from nas.build import build  # noqa: E402
from nas.registry import load_design  # noqa: E402
from nas.space import Space  # noqa: E402


def squeeze_net(width: int | None = None):
    """Seed 001, or the mnist_squeeze point with seed 001's choices and another width."""
    if width is None:
        return build(load_design("seed001"))
    space = Space.load("mnist_squeeze")
    choices = dict(space.point_of("seed001"), w=width)
    return build(space.spec(space.check_params(choices)))


def stepper(model, batch: int = 128, channels_last: bool = True, bf16: bool = False, compiled: bool = False):
    """A function that runs one training step and returns its seconds."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    net = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=gen).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def compare(settings: dict, steps: int, warmup: int = 3) -> dict:
    """Median step seconds of each named stepper, interleaved; plus each one's warm-up seconds."""
    warm = {}
    for name, step in settings.items():
        start = time.perf_counter()
        for _ in range(warmup):
            step()
        warm[name] = time.perf_counter() - start
    times = {name: [] for name in settings}
    for _ in range(steps):
        for name, step in settings.items():
            times[name].append(step())
    return {name: {"step_ms": statistics.median(t) * 1000, "warmup_s": warm[name]} for name, t in times.items()}


def _images_per_second(threads: int, seconds: float, queue) -> None:
    torch.set_num_threads(threads)
    step = stepper(squeeze_net())
    for _ in range(3):
        step()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += 128
    queue.put(done / (time.perf_counter() - start))


def processes_vs_threads(seconds: float) -> dict:
    cores = len(os.sched_getaffinity(0))
    ctx = mp.get_context("spawn")
    out = {}
    for procs, threads in ((1, cores), (cores, 1)):
        queue = ctx.Queue()
        workers = [ctx.Process(target=_images_per_second, args=(threads, seconds, queue)) for _ in range(procs)]
        for w in workers:
            w.start()
        rates = [queue.get() for _ in workers]
        for w in workers:
            w.join()
        out[f"{procs} x {threads} threads"] = {"images_per_s": sum(rates)}
        print(f"  {procs} process(es) x {threads} thread(s): {sum(rates):.0f} images/s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--seconds", type=float, default=40, help="length of each processes-vs-threads run")
    p.add_argument("--skip", default="", help="comma-separated: batch,format,bf16,compile,processes")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--name", default="bench_cpu_options")
    args = p.parse_args()
    skip = set(args.skip.split(","))
    report = {"command": " ".join(["python bench/cpu_options.py", *map(shlex.quote, sys.argv[1:])]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "native_bf16": __import__("nas.train", fromlist=["native_bf16"]).native_bf16(torch.device("cpu"))}
    if "batch" not in skip:
        print("batch size (seed 001, channels-last):", flush=True)
        report["batch"] = compare({b: stepper(squeeze_net(), batch=b) for b in (32, 64, 128, 256)}, args.steps)
        for b, r in report["batch"].items():
            r["epoch_s"] = r["step_ms"] / 1000 / b * 60000
            print(f"  batch {b}: {r['step_ms']:.1f} ms a step, {r['epoch_s']:.1f} s an epoch", flush=True)
    if "format" not in skip:
        print("memory format (mnist_squeeze, seed 001's choices, width w):", flush=True)
        report["format"] = {}
        for w in (4, 6, 8, 10, 12):
            r = compare({"channels_last": stepper(squeeze_net(w)), "nchw": stepper(squeeze_net(w), channels_last=False)},
                        args.steps)
            report["format"][w] = r
            print(f"  w={w}: channels-last {r['channels_last']['step_ms']:.1f} ms, NCHW {r['nchw']['step_ms']:.1f} ms",
                  flush=True)
    if "bf16" not in skip:
        r = compare({"fp32": stepper(squeeze_net()), "bf16": stepper(squeeze_net(), bf16=True)}, args.steps)
        report["bf16"] = r
        print(f"bf16 autocast: fp32 {r['fp32']['step_ms']:.1f} ms, bf16 {r['bf16']['step_ms']:.1f} ms", flush=True)
    if "compile" not in skip:
        r = compare({"eager": stepper(squeeze_net()), "compiled": stepper(squeeze_net(), compiled=True)}, args.steps)
        report["compile"] = r
        print(f"torch.compile: eager {r['eager']['step_ms']:.1f} ms, compiled {r['compiled']['step_ms']:.1f} ms "
              f"(compile and warm-up {r['compiled']['warmup_s']:.0f} s)", flush=True)
    if "processes" not in skip:
        print("processes against threads (seed 001, batch 128):", flush=True)
        report["processes"] = processes_vs_threads(args.seconds)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    write(report, markdown(report), args.out, args.name)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# CPU options for small convolutions", "", f"- command: `{r['command']}`", f"- date: {r['date']}",
             f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); native bf16 "
             f"(AMX): {r['native_bf16']}; load average at start {', '.join('%.2f' % v for v in m['loadavg_at_start'])}, "
             f"at the end {', '.join('%.2f' % v for v in m['loadavg_at_end'])}", "",
             "Median of the interleaved steps; an epoch is 60,000 images.", ""]
    if "batch" in r:
        lines += ["| batch | ms a step | s an epoch |", "| --- | --- | --- |"]
        lines += [f"| {b} | {v['step_ms']:.1f} | {v['epoch_s']:.1f} |" for b, v in r["batch"].items()] + [""]
    if "format" in r:
        lines += ["| width | channels-last ms | NCHW ms | NCHW / channels-last |", "| --- | --- | --- | --- |"]
        lines += [f"| {w} | {v['channels_last']['step_ms']:.1f} | {v['nchw']['step_ms']:.1f} | "
                  f"{v['nchw']['step_ms'] / v['channels_last']['step_ms']:.2f} |" for w, v in r["format"].items()] + [""]
    if "bf16" in r:
        b = r["bf16"]
        lines += [f"bf16 autocast: fp32 {b['fp32']['step_ms']:.1f} ms, bf16 {b['bf16']['step_ms']:.1f} ms a step "
                  f"(bf16 / fp32 = {b['bf16']['step_ms'] / b['fp32']['step_ms']:.2f}).", ""]
    if "compile" in r:
        c = r["compile"]
        lines += [f"torch.compile: eager {c['eager']['step_ms']:.1f} ms, compiled {c['compiled']['step_ms']:.1f} ms a step "
                  f"(eager / compiled = {c['eager']['step_ms'] / c['compiled']['step_ms']:.2f}); compiling and 3 warm-up "
                  f"steps took {c['compiled']['warmup_s']:.0f} s.", ""]
    if "processes" in r:
        lines += ["| processes x threads | images a second, all together |", "| --- | --- |"]
        lines += [f"| {k} | {v['images_per_s']:.0f} |" for k, v in r["processes"].items()] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
