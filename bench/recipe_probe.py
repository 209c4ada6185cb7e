"""Recipes compared on one design, on the validation split (the test set is not read).

Trains the design of a study's trial with the space's schedule, once per recipe (each a set of
``nas.train.TrainConfig`` changes) and seed, and reports the final-epoch validation accuracy. Runs
the recipes in parallel worker processes, one thread each. Writes ``results/<name>.json`` and ``.md``.

Usage (from the repository root)::

    python bench/recipe_probe.py --study mnist_6k --trial 10 --results results --data-dir ../shared/data \\
        --recipe base: --recipe wd1e-4,ls0:weight_decay=1e-4,label_smoothing=0 --recipe bs64:batch_size=64
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402


def parse(recipe: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` (values read as JSON, else kept as text).

    >>> parse("bs64:batch_size=64,ema=0.999"), parse("base:")
    (('bs64', {'batch_size': 64, 'ema': 0.999}), ('base', {}))
    """
    name, _, body = recipe.partition(":")
    changes = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        try:
            changes[key] = json.loads(value)
        except ValueError:
            changes[key] = value
    return name, changes


def run_one(job: tuple) -> dict:
    import torch

    torch.set_num_threads(1)
    from nas import study as studies
    from nas.build import build
    from nas.schedule import train_config
    from nas.search import SearchConfig, load_data, validation_data
    from nas.space import Space
    from nas.spec import Spec
    from nas.train import settings, train

    storage, study_name, trial, data_dir, name, changes, seed = job
    study = studies.load(study_name, storage, heartbeat=False)
    a = study.user_attrs
    space = Space.load(a.get("space_file", a["space"]))
    cfg = SearchConfig(space, study_name, storage, data_dir=data_dir, seed=a["split"]["seed"])
    data = validation_data(study, load_data(cfg), None, cfg.seed)
    config = settings({**vars(train_config(cfg)), **changes}, source=f"recipe {name}")  # checked like a space's
    config = replace(config, seed=seed, stop_at_target=False, progress=False)
    spec = Spec.from_dict(study.trials[trial].user_attrs["spec"])
    start = time.perf_counter()
    result = train(build(spec), data, config)
    return {"recipe": name, "changes": changes, "seed": seed, "final": result.accuracies[-1],
            "accuracies": result.accuracies, "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--results", default="runs")
    p.add_argument("--data-dir")
    p.add_argument("--recipe", action="append", required=True, help="name:key=value,... (TrainConfig fields)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_recipe_probe")
    args = p.parse_args(argv)
    storage = f"sqlite:///{Path(args.results) / 'studies.db'}"
    jobs = [(storage, args.study, args.trial, args.data_dir, *parse(r), seed)
            for r in args.recipe for seed in range(args.seeds)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, jobs))
    for r in rows:
        print(r, flush=True)
    command = "python bench/recipe_probe.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    m = machine()
    lines = [f"# Recipes on trial {args.trial} of study {args.study}, validation split", "",
             f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {m['cpu']}, {m['cores']} cores, "
             f"{args.jobs} single-threaded processes; {time.perf_counter() - started:.0f} s.", "",
             "Final-epoch validation accuracy of the space's schedule, changed as each recipe says.", "",
             "| recipe | changes | seed | final validation | seconds |", "| :--- | :--- | ---: | ---: | ---: |"]
    lines += [f"| {r['recipe']} | {r['changes'] or '(the space’s)'} | {r['seed']} | {r['final']:.2%} | {r['seconds']:.0f} |"
              for r in rows]
    write({"command": command, "machine": m, "rows": rows}, "\n".join(lines) + "\n", args.out, args.name)


if __name__ == "__main__":
    main()
