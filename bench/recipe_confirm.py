"""A recipe kept on validation (``recipe_probe.py``), confirmed on the test set: a documented design
trained on every training image with that recipe, once per seed, and tested once after the last
epoch (the schedule is fixed in advance; no epoch is picked on the test set).

Runs the seeds in parallel worker processes, one thread each. Writes ``results/<name>.json`` and ``.md``.

Usage (from the repository root)::

    python bench/recipe_confirm.py --design seed001 --data-dir ../shared/data --target 0.994 \\
        --recipe ema8:epochs=8,ema=0.999 --seeds 3
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402
from recipe_probe import parse  # noqa: E402


def run_one(job: tuple) -> dict:
    import torch

    torch.set_num_threads(1)
    from nas.train import design_run

    design, data_dir, limit, name, changes, seed = job
    run = design_run(design, data_dir=data_dir, train_limit=limit, source=f"recipe {name}", **{**changes, "seed": seed,
                     "eval_each_epoch": False, "progress": False})
    result = run.train()
    return {"recipe": name, "changes": changes, "seed": seed, "test": result.accuracies[-1],
            "epochs": run.config.epochs, "seconds": round(result.seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--design", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--recipe", required=True, help="name:key=value,... (TrainConfig fields)")
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-limit", type=int, help="train on this many images (a quick look, not a confirmation)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_recipe_confirm")
    args = p.parse_args(argv)
    name, changes = parse(args.recipe)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, [(args.design, args.data_dir, args.train_limit, name, changes, s)
                                       for s in range(args.seeds)]))
    for r in rows:
        print(r, flush=True)
    tests = [r["test"] for r in rows]
    passed = sum(t >= args.target for t in tests)
    command = "python bench/recipe_confirm.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    m = machine()
    lines = [f"# {args.design} with recipe {name}, confirmed on the test set", "",
             f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {m['cpu']}, {m['cores']} cores, "
             f"{args.jobs} single-threaded processes; {time.perf_counter() - started:.0f} s.", "",
             ("Every training image" if not args.train_limit else f"{args.train_limit:,} training images (a quick look)")
             + f", {rows[0]['epochs']} epochs, tested once after the last epoch; "
             f"changes to TrainConfig's defaults: {changes or 'none'}.", "",
             "| seed | final test accuracy | seconds |", "| ---: | ---: | ---: |"]
    lines += [f"| {r['seed']} | {r['test']:.2%} | {r['seconds']:.0f} |" for r in rows]
    lines += ["", f"{passed}/{len(tests)} seeds >= {args.target:.2%}; mean {statistics.fmean(tests):.2%}, "
                  f"min {min(tests):.2%}, max {max(tests):.2%}."]
    write({"command": command, "machine": m, "target": args.target, "rows": rows}, "\n".join(lines) + "\n",
          args.out, args.name)


if __name__ == "__main__":
    main()
