"""Seed 004's CIFAR-10 design (671,690 params) trained by `nas` for its documented 10 epochs.

Issue 3 asks for >= 80% test accuracy on real CIFAR-10 within 10 epochs (the seed document reports
83.17% at best over its 10 epochs). Writes ``results/bench_cifar_seed004.json`` and ``.md``.

Usage (from the repository root)::

    python bench/cifar_seed004.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas import data as nas_data  # noqa: E402
from nas.analysis import analyse  # noqa: E402
from nas.build import build  # noqa: E402
from nas.registry import load_design  # noqa: E402
from nas.train import settings, train  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from common import machine, write  # noqa: E402

TARGET = 0.80


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--design", default="seed004")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cutout", type=int, default=None, help="default: TrainConfig's")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--name", default="bench_cifar_seed004")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], Path.cwd()), *sys.argv[1:]])
    report = {"command": command, "cwd": os.getcwd(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}

    t = time.perf_counter()
    data = nas_data.load("cifar10", args.data_dir)
    report["data_load_seconds"] = time.perf_counter() - t  # decoding the PNGs once; later loads read the cache
    spec = load_design(args.design)
    options = {} if args.cutout is None else {"cutout": args.cutout}
    config = settings(options, "bench/cifar_seed004.py", epochs=args.epochs, seed=args.seed,
                      progress=not args.no_progress)
    model = build(spec)

    def on_epoch(epoch: int, acc: float) -> None:
        print(f"epoch {epoch:2d}: test {acc:.4f}", flush=True)

    result = train(model, data, config, on_epoch=on_epoch)
    first = next((i + 1 for i, a in enumerate(result.accuracies) if a >= TARGET), None)
    report.update({
        "design": args.design, "params": analyse(spec).params,
        "config": {k: v for k, v in asdict(config).items() if not callable(v)},
        "accuracies": result.accuracies, "losses": result.losses, "epoch_seconds": result.epoch_seconds,
        "seconds": result.seconds, "status": result.status, "message": result.message,
        "summary": {"median_epoch_seconds": statistics.median(result.epoch_seconds) if result.epoch_seconds else None,
                    "final_accuracy": result.final_accuracy, "best_accuracy": max(result.accuracies, default=0.0),
                    "first_epoch_ge_80": first, "final_ge_80": result.final_accuracy >= TARGET},
    })
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    write(report, markdown(report), args.out, args.name)


def markdown(r: dict) -> str:
    s, m = r["summary"], r["machine"]
    return "\n".join([
        f"# Seed 004 ({r['params']:,} params) on real CIFAR-10, trained by nas", "",
        f"- command: `{r['command']}`", f"- date: {r['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"CUDA {'yes' if m['cuda'] else 'no'}; load average at start {', '.join('%.2f' % v for v in m['loadavg_at_start'])}, "
        f"at end {', '.join('%.2f' % v for v in m['loadavg_at_end'])}",
        f"- dataset load: {r['data_load_seconds']:.1f} s (decoding the PNG folder the first time; then one cached file)", "",
        "| epochs | seconds per epoch (median) | total | final test accuracy | best | first epoch >= 80% |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {len(r['accuracies'])} | {s['median_epoch_seconds']:.1f} | {r['seconds']:.0f} s | {s['final_accuracy']:.4f} | "
        f"{s['best_accuracy']:.4f} | {s['first_epoch_ge_80']} |", "",
        "Per epoch: " + ", ".join(f"{a:.4f} ({t:.0f}s)" for a, t in zip(r["accuracies"], r["epoch_seconds"])), "",
        f"Status: {r['status']} ({r['message']}). Config: `{json.dumps(r['config'])}`", ""])


if __name__ == "__main__":
    main()
