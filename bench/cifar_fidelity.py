"""How well cheap CIFAR-10 fidelities rank cifar_small nets: Kendall's tau against the full schedule.

Trains ``--points`` distinct feasible nets of a space (a seeded random sample of those under
``--max-mmacs``), each once on the full schedule (the space's epochs on the training images less
the search's validation split) and once per cheap fidelity, and scores every run on that
validation split after its last epoch (the test set is not read). The full run's own accuracy after
its first epochs counts as a fidelity too: it is what the search's stopping rule reads. Reports
Kendall's tau-b of each fidelity's ranking against the full schedule's final accuracy, and the
cheapest fidelity with tau >= ``--tau``.

The runs take hours on 2 cores, so the bench resumes: every finished run is kept in
``<state>/runs.json`` (and a run cut off keeps its epoch checkpoint), and the same command goes on
where the last one stopped. The chosen points are fixed by the first run.

Usage (from the repository root)::

    python bench/cifar_fidelity.py --data-dir ../shared/data      # resumes; Ctrl-C stops after the epochs under way
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402
from nas.workers import Stop  # noqa: E402


@dataclass(frozen=True)
class Fidelity:
    """One cheap way to train a candidate; None keeps the full schedule's value."""

    name: str
    epochs: int | None = None  # its own one-cycle schedule of this many epochs
    images: float | None = None  # a class-stratified share of the training split
    resolution: int | None = None  # images average-pooled to this side (the nets end in GAP)
    partial: int | None = None  # the full run's validation accuracy after this many epochs (free)

    def cost(self, full_epochs: int) -> float:
        """Training work as a share of the full schedule's (pixels seen)."""
        if self.partial:
            return self.partial / full_epochs
        side = (self.resolution or 32) / 32
        return (self.epochs or full_epochs) / full_epochs * (self.images or 1.0) * side * side


FULL = Fidelity("full")
FIDELITIES = (Fidelity("epoch1", partial=1), Fidelity("epoch2", partial=2), Fidelity("epoch4", partial=4), Fidelity("epoch7", partial=7),
              Fidelity("epoch10", partial=10), Fidelity("res16_4ep", epochs=4, resolution=16),
              Fidelity("short4", epochs=4), Fidelity("subset20", images=0.2))


def fidelities(full_epochs: int) -> tuple[Fidelity, ...]:
    """The fidelities cheaper than a full schedule of ``full_epochs`` (a short smoke drops some)."""
    return tuple(f for f in FIDELITIES if f.cost(full_epochs) < 1)


def choose_points(space, n: int, max_mmacs: float, seed: int) -> list[dict]:
    """``n`` distinct feasible nets of ``space`` under ``max_mmacs``, drawn at random with ``seed``."""
    from nas.sampler import Catalogue
    from nas.feasibility import check

    nets = []
    for entry in Catalogue(space, "params").distinct():
        params = space.decode(dict(entry.labels))
        figures = check(space, params).analysis.figures()
        if figures["macs"] <= max_mmacs * 1e6:
            nets.append({"choices": params, "params": figures["params"], "macs": figures["macs"], "key": entry.key})
    nets.sort(key=lambda p: p["key"])  # the draw must not depend on the enumeration's order
    if len(nets) < n:
        raise SystemExit(f"only {len(nets)} distinct nets under {max_mmacs} MMACs; raise --max-mmacs or lower --points")
    chosen = random.Random(seed).sample(nets, n)
    return [dict(p, id=f"p{i:02d}") for i, p in enumerate(sorted(chosen, key=lambda p: (p["params"], p["macs"])))]


_STOP = None  # this worker's Ctrl-C and SIGTERM handler: the first one finishes the epoch under way


def run_one(job: tuple) -> dict:
    """Train one point at one fidelity in this process (one thread); returns its record, whose status
    is ``complete`` unless a stop was asked for (then its checkpoint holds the epochs done)."""
    global _STOP
    import torch
    import torch.nn.functional as F

    if _STOP is None:
        _STOP = Stop(signals=True, quiet=True).__enter__()
    space_file, data_dir, point, fid, limit, full_epochs, checkpoint = job
    if _STOP.requested:  # a job queued before the stop: it would only train one epoch
        return {"point": point["id"], "fidelity": fid["name"], "status": "not started"}
    torch.set_num_threads(1)
    from nas.build import build
    from nas.schedule import train_config
    from nas.search import SearchConfig, load_data
    from nas.space import Space
    from nas.train import settings, train

    fid = Fidelity(**fid)
    space = Space.load(space_file)
    cfg = SearchConfig(space, data_dir=data_dir, seed=0)
    data = load_data(cfg).held_out(space.task.validation, 0)  # the split a search with --seed 0 holds out
    if limit:
        data = data.subset(train=limit, seed=0)
    if fid.images:
        data = data.subset(train=round(fid.images * len(data.y_train)), seed=0)
    base = train_config(cfg)
    epochs = fid.epochs or full_epochs or base.epochs
    changes = dict(epochs=epochs, target=None, stop_at_target=False, progress=False)
    if fid.resolution:
        k = data.shape[-1] // fid.resolution
        down = {name: F.avg_pool2d(getattr(data, name).float(), k).round_().to(torch.uint8) for name in ("x_train", "x_eval")}
        data = replace(data, **down)
        changes["crop_padding"] = max(1, base.crop_padding // k)
    config = settings({**vars(base), **changes}, source=f"fidelity {fid.name}")
    result = train(build(space.spec(point["choices"])), data, config, checkpoint=checkpoint,
                   on_epoch=lambda epoch, acc: _STOP.requested)
    # result.seconds counts the epochs a resumed run restored from its checkpoint too
    return {"point": point["id"], "fidelity": fid.name, "accuracies": result.accuracies, "status": result.status,
            "images": len(data.y_train), "epochs": epochs, "seconds": round(result.seconds, 1),
            "cpu": machine()["cpu"]}  # runs span sessions, whose CPUs may differ


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def interval(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 90% bootstrap interval of Kendall's tau over the points: with about ten points one tau is a
    coarse figure, and this says how coarse."""
    rng, n = np.random.default_rng(seed), len(a)
    a, b = np.asarray(a), np.asarray(b)
    taus = [kendall(a[i], b[i]) for i in (rng.integers(0, n, n) for _ in range(resamples))]
    taus = [t for t in taus if not np.isnan(t)]  # a resample of one repeated point has no tau
    lo, hi = np.percentile(taus, [5, 95])
    return float(lo), float(hi)


def score(fid: Fidelity, runs: dict, point: str) -> float | None:
    """The validation accuracy ``fid`` gives ``point``, or None while its run is not done."""
    full = runs.get(f"{point}/full")
    if fid.partial:
        return full["accuracies"][fid.partial - 1] if full else None
    run = runs.get(f"{point}/{fid.name}")
    return run["accuracies"][-1] if run else None


def summary(points: list[dict], runs: dict, full_epochs: int, tau_min: float) -> tuple[list[dict], str | None]:
    """Per fidelity: its cost, the points it and the full schedule both scored, and Kendall's tau."""
    rows = []
    for fid in fidelities(full_epochs):
        pairs = [(score(fid, runs, p["id"]), score(FULL, runs, p["id"])) for p in points]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        tau = kendall(*zip(*pairs)) if len(pairs) >= 3 else None
        band = interval(*zip(*pairs)) if len(pairs) >= 5 else None
        own = "full" if fid.partial else fid.name  # a partial fidelity's seconds: its share of the full run's
        share = fid.cost(full_epochs) if fid.partial else 1.0
        seconds = [runs[f"{p['id']}/{own}"]["seconds"] * share for p in points if f"{p['id']}/{own}" in runs]
        rows.append({"fidelity": fid.name, "cost": fid.cost(full_epochs), "points": len(pairs), "tau": tau, "interval": band,
                     "partial": fid.partial is not None,
                     "median_seconds": sorted(seconds)[len(seconds) // 2] if seconds else None})
    passing = [r for r in rows if r["tau"] is not None and r["tau"] >= tau_min and r["points"] >= len(points)]
    # at equal cost a partial fidelity wins: its work is not lost, since a net it keeps goes on training
    best = min(passing, key=lambda r: (r["cost"], not r["partial"]))["fidelity"] if passing else None
    return rows, best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="cifar_small")
    p.add_argument("--data-dir")
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--max-mmacs", type=float, default=40.0, help="draw points only among nets this cheap")
    p.add_argument("--seed", type=int, default=0, help="seed of the points' draw")
    p.add_argument("--tau", type=float, default=0.6, help="the rank correlation a fidelity must reach")
    p.add_argument("--jobs", type=int, default=2, help="single-threaded worker processes")
    p.add_argument("--train-limit", type=int, help="train every run on this many images (a quick smoke)")
    p.add_argument("--full-epochs", type=int, help="the full schedule's epochs [default: the space's]")
    p.add_argument("--state", default=str(ROOT / "results" / "cifar_fidelity"), help="folder of finished runs")
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_cifar_fidelity")
    args = p.parse_args(argv)

    from nas import registry
    from nas.schedule import epochs as schedule_epochs
    from nas.space import Space

    space_file = str(registry.space_path(args.space)) if not args.space.endswith((".yaml", ".yml")) else args.space
    space = Space.load(space_file)
    full_epochs = args.full_epochs or schedule_epochs(space)
    state = Path(args.state)
    (state / "checkpoints").mkdir(parents=True, exist_ok=True)
    runs_file, points_file = state / "runs.json", state / "points.json"
    if points_file.exists():
        points = json.loads(points_file.read_text())
    else:
        points = choose_points(space, args.points, args.max_mmacs, args.seed)
        points_file.write_text(json.dumps(points, indent=1))
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    todo = [(p, f) for p in points for f in (FULL, *fidelities(full_epochs)) if not f.partial and f"{p['id']}/{f.name}" not in runs]
    print(f"{len(points)} points, {len(runs)} runs done, {len(todo)} to go", flush=True)

    started = time.perf_counter()
    interrupted = False
    # Ctrl-C (or SIGTERM, to the process group): every worker finishes the epoch under way and keeps
    # its checkpoint, the jobs not started return at once, and the report covers the runs done.
    # A second Ctrl-C aborts the epochs under way.
    with Stop(signals=True) as stop, ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, (space_file, args.data_dir, p, asdict(f), args.train_limit, full_epochs,
                                         str(state / "checkpoints" / f"{p['id']}_{f.name}.pt"))) for p, f in todo]
        try:
            for future in as_completed(futures):
                try:
                    r = future.result()
                except KeyboardInterrupt:  # a worker aborted by a second Ctrl-C
                    continue
                if r["status"] in ("stopped", "not started"):  # its checkpoint holds the epochs done
                    continue
                runs[f"{r['point']}/{r['fidelity']}"] = r
                tmp = runs_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(runs, indent=1))
                os.replace(tmp, runs_file)  # a kill mid-write never loses the runs already done
                print(f"{r['point']} {r['fidelity']}: {r['accuracies'][-1]:.2%} in {r['seconds']:.0f} s", flush=True)
        except KeyboardInterrupt:
            for f in futures:
                f.cancel()
        interrupted = stop.requested
    rows, best = summary(points, runs, full_epochs, args.tau)

    command = "python bench/cifar_fidelity.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    m = machine()
    done = sum(f"{p['id']}/full" in runs for p in points)
    lines = [f"# CIFAR-10 fidelities against the full schedule: {args.space}", "",
             f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {m['cpu']}, {m['cores']} cores, "
             f"{args.jobs} single-threaded processes; this invocation {time.perf_counter() - started:.0f} s"
             + (" (interrupted)" if interrupted else "")
             + f"; the {len(runs)} runs so far, over every invocation, {sum(r['seconds'] for r in runs.values()) / 3600:.1f} "
             "training hours.", "",
             f"{len(points)} nets drawn at random (seed {args.seed}) among the distinct feasible nets under "
             f"{args.max_mmacs:g} MMACs; {done} of them trained on the full schedule ({full_epochs} epochs) so far. "
             "Every figure is validation accuracy after a run's last epoch (the search's split; the test set "
             "is not read). Cost: training pixels seen, as a share of the full schedule's. Seconds: the median "
             "run's, a partial fidelity's as its share of the full run's; runs made in different sessions may "
             "have had different CPUs (runs.json names each run's where recorded), so no speed is compared. The interval: "
             "5th to 95th percentile of tau over 2,000 bootstrap resamples of the points.", "",
             "| fidelity | cost | points | Kendall's tau | 90% interval | median seconds |",
             "| :--- | ---: | ---: | ---: | :---: | ---: |"]
    lines += [f"| {r['fidelity']} | {r['cost']:.2f} | {r['points']} | "
              + (f"{r['tau']:.2f}" if r["tau"] is not None else "n/a") + " | "
              + ("{:.2f} to {:.2f}".format(*r["interval"]) if r["interval"] else "") + " | "
              + (f"{r['median_seconds']:.0f}" if r["median_seconds"] else "") + " |" for r in rows]
    lines += ["", (f"Cheapest fidelity with tau >= {args.tau} on all {len(points)} points: **{best}**." if best else
                   f"No fidelity has reached tau >= {args.tau} on all {len(points)} points yet.")]
    shown = (FULL, *fidelities(full_epochs))
    names = [f.name for f in shown]
    lines += ["", "| point | params | MMACs | " + " | ".join(names) + " |", "| :--- | ---: | ---: |" + " ---: |" * len(names)]
    for pt in points:
        cells = [score(f, runs, pt["id"]) for f in shown]
        lines.append(f"| {pt['id']} {pt['choices']} | {pt['params']:,} | {pt['macs'] / 1e6:.1f} | "
                     + " | ".join(f"{c:.2%}" if c is not None else "" for c in cells) + " |")
    write({"command": command, "machine": m, "points": points, "runs": runs, "summary": rows, "best": best},
          "\n".join(lines) + "\n", args.out, args.name)
    if interrupted:
        raise SystemExit(130)


if __name__ == "__main__":
    main()
