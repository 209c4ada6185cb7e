"""How nets without BatchNorm start: PyTorch's default init against He init, at two peak rates.

Trains BN-free points of ``mnist_squeeze`` for the first ``--epochs`` epochs of the space's
15-epoch one-cycle schedule on the search's data (training images less the 5,000-image validation
split, seed 0), and records the validation accuracy at the first rung and after each epoch. A net
"at chance" scores about 10%. Writes ``results/bench_bn_free_start.json`` and ``.md``.

Usage (from the repository root)::

    python bench/bn_free_start.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402

from nas.build import build  # noqa: E402
from nas.forecast import rungs  # noqa: E402
from nas.schedule import train_config  # noqa: E402
from nas.search import SearchConfig, load_data  # noqa: E402
from nas.space import Space  # noqa: E402
from nas.train import _reinit, train  # noqa: E402

POINTS = {  # BN-free points of mnist_squeeze that the search found at chance
    "same w4": dict(layout="same", w=4, convs1=2, dropout=0.1, drop_where="squeeze", bn=False, bn_after_pool=False,
                    head="gap"),
    "valid w4": dict(layout="valid", w=4, convs1=2, dropout=0.1, drop_where="squeeze", bn=False, bn_after_pool=False,
                     head="gap"),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lrs", default="0.1,0.01")
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_bn_free_start")
    args = p.parse_args(argv)
    space = Space.load("mnist_squeeze")
    cfg = SearchConfig(space, "bench", "sqlite:///unused.db", data_dir=args.data_dir)
    data = load_data(cfg).held_out(space.task.validation, seed=0)
    per_epoch = len(data.y_train) // 128 * 128
    ladder = rungs(train_config(cfg).epochs, per_epoch, 3)
    rows = []
    for name, point in POINTS.items():
        for init in ("default", "he"):
            for lr in (float(x) for x in args.lrs.split(",")):
                torch.manual_seed(0)
                model = build(space.spec(point))  # PyTorch's default init, drawn from seed 0
                if init == "he":
                    _reinit(model, 0)  # what nas.train does for a net without BatchNorm
                seen: list[tuple[str, float]] = []
                config = replace(train_config(cfg), lr=lr, reinit=False, progress=False)
                start = time.perf_counter()
                train(model, data, config, rungs=ladder[:1],
                      on_rung=lambda images, acc: seen.append((f"{images:,} images", acc)) and False,
                      on_epoch=lambda epoch, acc: seen.append((f"epoch {epoch}", acc)) or epoch >= args.epochs)
                rows.append({"net": name, "init": init, "lr": lr, "checks": seen,
                             "seconds": round(time.perf_counter() - start, 1)})
                print(rows[-1], flush=True)
    command = "python bench/bn_free_start.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    m = machine()
    heads = [c for c, _ in rows[0]["checks"]]
    lines = ["# How nets without BatchNorm start: default init against He init", "",
             f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {m['cpu']}, {m['cores']} cores, "
             f"{m['torch_threads']} threads, torch {m['torch']}.", "",
             f"Validation accuracy (5,000 held-out training images) in the first {args.epochs} epochs of the "
             "15-epoch one-cycle schedule (warmup over its first 20%); chance is about 10%.", "",
             "| net | init | peak lr | " + " | ".join(heads) + " |",
             "| :--- | :--- | ---: | " + " | ".join("---:" for _ in heads) + " |"]
    lines += [f"| {r['net']} | {r['init']} | {r['lr']:g} | " + " | ".join(f"{a:.2%}" for _, a in r["checks"]) + " |"
              for r in rows]
    write({"command": command, "machine": m, "rows": rows}, "\n".join(lines) + "\n", args.out, args.name)


if __name__ == "__main__":
    main()
