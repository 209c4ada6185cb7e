"""False stops: would the candidates a search stopped early have reached the target?

Takes ``--count`` of a study's stopped candidates, spread evenly over their size range, trains each
to the end of the study's schedule on the same validation split (the search's own data, seed and
settings; the test set is not read), and counts how many end at or above the target, and at or
above the validation threshold the search stops against (the target less two binomial standard
errors, ``nas.forecast.within_noise``). Writes ``results/bench_false_stops.json`` and ``.md``.

Usage (from the repository root)::

    python bench/false_stops.py --study mnist_squeeze --results runs --data-dir ../shared/data --count 8 --jobs 2
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas import study as studies  # noqa: E402
from nas import trials  # noqa: E402
from nas.build import build  # noqa: E402
from nas.schedule import train_config  # noqa: E402
from nas.search import SearchConfig, load_data, validation_data  # noqa: E402
from nas.space import Space  # noqa: E402
from nas.spec import Spec  # noqa: E402
from nas.train import train  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from common import machine, write  # noqa: E402


def spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them when there are fewer).

    >>> spread(list(range(10)), 3), spread([1, 2], 5), spread(list(range(5)), 1)
    ([0, 4, 9], [1, 2], [2])
    """
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[len(items) // 2]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _one_thread(jobs: int) -> None:
    import torch
    torch.set_num_threads(max(1, torch.get_num_threads() // jobs))


def _final(job) -> tuple[float, float]:
    """Train one stopped candidate to the end of its study's schedule: (final validation accuracy, seconds)."""
    spec, storage, name, data_dir, train_limit = job
    study = studies.load(name, storage, heartbeat=False)
    a = study.user_attrs
    cfg = SearchConfig(Space.load(a.get("space_file", a["space"])), name, storage, data_dir=data_dir,
                       seed=a["split"]["seed"])
    config = replace(train_config(cfg), stop_at_target=False, progress=False)  # to the end, even past the target
    data = validation_data(study, load_data(cfg), train_limit, cfg.seed)
    result = train(build(Spec.from_dict(spec)), data, config)
    return (result.accuracies[-1] if result.accuracies else 0.0), result.seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--results", default="runs", help="the study's results folder (its studies.db)")
    p.add_argument("--storage", help="storage URL [default: sqlite:///RESULTS/studies.db]")
    p.add_argument("--data-dir")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--include", default="", help="comma-separated trial numbers to train as well as the spread")
    p.add_argument("--jobs", type=int, default=1, help="train this many at once, one thread each (2 cores: 2)")
    p.add_argument("--train-limit", type=int, help="train on this many images (a smoke test of the script)")
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_false_stops")
    args = p.parse_args(argv)

    storage = args.storage or f"sqlite:///{Path(args.results) / 'studies.db'}"
    study = studies.load(args.study, storage, heartbeat=False)
    a = study.user_attrs
    space = Space.load(a.get("space_file", a["space"]))
    cfg = SearchConfig(space, args.study, storage, data_dir=args.data_dir, seed=a["split"]["seed"])
    config = train_config(cfg)
    threshold = a.get("val_threshold", space.task.target)
    stopped = sorted((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") in trials.EARLY_STOPS),
                     key=lambda t: (t.user_attrs["params"], t.number))
    wanted = {int(n) for n in args.include.split(",") if n.strip()}
    picked = sorted({t.number: t for t in spread(stopped, args.count) + [t for t in stopped if t.number in wanted]}
                    .values(), key=lambda t: (t.user_attrs["params"], t.number))
    print(f"{len(stopped)} stopped candidates in {args.study}; training {len(picked)} of them to epoch {config.epochs}",
          flush=True)
    rows, started = [], time.perf_counter()
    jobs = max(1, min(args.jobs, len(picked)))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_one_thread,
                             initargs=(jobs,)) as pool:
        finals = pool.map(_final, [(t.user_attrs["spec"], storage, args.study, args.data_dir, args.train_limit)
                                   for t in picked])
        for t, (final, seconds) in zip(picked, finals):
            row = {"trial": t.number, "params": t.user_attrs["params"], "bn": t.params.get("bn"),
                   "stopped_at": t.user_attrs.get("stopped_at"), "predicted": t.user_attrs.get("predicted"),
                   "final": final, "seconds": round(seconds, 1),
                   "reaches_target": final >= space.task.target, "reaches_threshold": final >= threshold}
            rows.append(row)
            print(f"trial {t.number:>3} {row['params']:>7,} params  stopped at {row['stopped_at']}, forecast "
                  f"{row['predicted'] or 0:.4f}; trained to the end: {final:.4f}", flush=True)
    command = "python bench/false_stops.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    false_target = sum(r["reaches_target"] for r in rows)
    false_threshold = sum(r["reaches_threshold"] for r in rows)
    m = machine()
    lines = [f"# False stops in study {args.study}", "",
             f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {m['cpu']}, {m['cores']} cores, "
             f"{jobs} at once with {max(1, m['torch_threads'] // jobs)} thread(s) each, torch {m['torch']}; {time.perf_counter() - started:.0f} s.", "",
             f"Of {len(rows)} stopped candidates (of {len(stopped)}) trained to the end of the {config.epochs}-epoch "
             f"schedule on the validation split: **{false_target}** end at or above the target "
             f"{space.task.target:.2%}, {false_threshold} at or above the stop threshold {threshold:.2%}.", "",
             "| trial | params | BN | stopped at | forecast end | final validation accuracy | seconds |",
             "| ---: | ---: | :--- | :--- | ---: | ---: | ---: |"]
    lines += [f"| {r['trial']} | {r['params']:,} | {r['bn']} | {r['stopped_at']} | {r['predicted'] or 0:.2%} "
              f"| {r['final']:.2%} | {r['seconds']:.0f} |" for r in rows]
    write({"command": command, "machine": m, "study": args.study, "target": space.task.target,
           "threshold": threshold, "epochs": config.epochs, "rows": rows}, "\n".join(lines) + "\n", args.out, args.name)


if __name__ == "__main__":
    main()
