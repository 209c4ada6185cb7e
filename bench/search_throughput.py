"""Candidates per hour: `nas search` against its own earlier setting and Optuna out of the box.

Superseded by ``bench/search_quality.py`` (issue 17): its ``before`` arm and the figures in
``results/bench_search_throughput*.md`` are of the 4-epoch, successive-halving search of issue 12;
now every arm trains the space's one schedule (``nas.schedule.epochs``), 15 epochs for mnist_squeeze.

Issue 12 asks how many candidates a search trains in the time a designer will wait, and how soon
one reaches the target. Each arm runs for ``--minutes`` of wall time on mnist_squeeze, one after the
other on this machine, at a reduced fidelity that fits a 2-core CPU: every candidate trains on
``--train-limit`` images of the training split (the 5,000 validation images held out first) with
the space's own 4-epoch schedule, and the target is ``--target`` validation accuracy (the space's
99.4% is out of reach on so few images; it is replaced in a copy of the space for every arm).

Arms:

* ``before``: ``nas search --jobs 1 --halving 0``: one process, every candidate trains its whole
  schedule (the target pruner still stops hopeless curves): the search as it was before issue 12.
* ``jobs1`` (any ``jobsN``): ``nas search --jobs N``: successive halving, N worker processes.
* ``nas``: ``nas search`` with its defaults (successive halving, ``--jobs`` by device).
* ``optuna``: Optuna's out-of-the-box setup on the same space, data and trainer: ``TPESampler``
  and ``MedianPruner`` with their defaults, one objective (validation accuracy) with the
  constraints as a penalty (a point over 20,000 params scores 0 without training), one process.

Then each arm's winner (nas: the cheapest front candidate that reached the target on validation,
else the most accurate; Optuna: its best trial) is confirmed: retrained on ``--train-limit``
training images over 3 seeds with the same schedule and tested once on the 10,000 test images.

Usage (from the repository root)::

    python bench/search_throughput.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402

from nas import trials as records  # noqa: E402
from nas.analysis import analyse  # noqa: E402
from nas.build import build  # noqa: E402
from nas.data import load  # noqa: E402
from nas.schedule import epochs as schedule_epochs  # noqa: E402
from nas.space import Space  # noqa: E402
from nas.train import settings, train  # noqa: E402

SPACE = "mnist_squeeze"
ARMS = {"before": ["--jobs", "1", "--halving", "0"], "nas": []}  # and jobsN: --jobs N


def arm_options(name: str) -> list[str]:
    if name.startswith("jobs") and name[4:].isdigit():
        return ["--jobs", name[4:]]
    if name not in ARMS:
        raise SystemExit(f"unknown arm {name!r}: use before, nas, optuna or jobsN")
    return ARMS[name]


def bench_space(folder: Path, target: float) -> Path:
    """A copy of the space whose target is the bench's."""
    source = Space.load(SPACE).source
    doc = yaml.safe_load(Path(source).read_text())
    doc["task"]["target"] = target
    path = folder / f"{SPACE}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def nas_arm(name: str, extra: list[str], space: Path, args, folder: Path) -> dict:
    results = folder / name
    cmd = [sys.executable, "-m", "nas", "search", "--space", str(space), "--trials", "100000",
           "--timeout", str(args.minutes * 60), "--train-limit", str(args.train_limit), "--confirm", "0",
           "--results", str(results), "--data-dir", str(args.data_dir), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("NAS_JOBS", "OMP_NUM_THREADS")}
    print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"arm {name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    study = optuna.load_study(study_name=SPACE, storage=f"sqlite:///{results}/studies.db")
    done = [t for t in study.get_trials(deepcopy=False) if records.trained(t) and t.state.is_finished()
            and t.user_attrs.get("status") != "duplicate"]
    reached = [t.datetime_complete.timestamp() - started for t in done if t.user_attrs.get("reached_target")]
    winner = records.to_confirm(study, args.target, "params", 1)
    return arm_figures(name, " ".join(shlex.quote(c) for c in cmd[2:]), wall, done, reached,
                       winner[0].user_attrs["spec"] if winner else None,
                       records.val_accuracy(winner[0]) if winner else None,
                       threads=sorted({t.user_attrs.get("threads") for t in done}))


def optuna_arm(space_path: Path, args, data) -> dict:
    """Optuna's defaults, constraints as a penalty, the same trainer and data as nas."""
    space = Space.load(str(space_path))
    limit = space.task.constraints.max_params
    config = settings(space.train, epochs=schedule_epochs(space), target=args.target, device="auto")
    trained: list[dict] = []
    started = time.time()

    def objective(trial: optuna.Trial) -> float:
        choices = space.decode({k: trial.suggest_categorical(k, space.labels(k)) for k in space.choices})
        spec = space.spec(choices)
        model = build(spec)
        if sum(p.numel() for p in model.parameters()) > limit:
            return 0.0  # the penalty: an infeasible point scores nothing

        def on_epoch(epoch, acc):
            trial.report(acc, epoch)
            return trial.should_prune()

        result = train(model, data, config, on_epoch=on_epoch)
        trained.append({"end": time.time() - started, "acc": result.accuracies[-1], "spec": spec.to_dict(),
                        "reached": result.target_epoch is not None})
        if result.status == "stopped":
            raise optuna.TrialPruned()
        return result.accuracies[-1]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner())
    print("[optuna] TPESampler + MedianPruner, penalty for constraints", flush=True)
    study.optimize(objective, timeout=args.minutes * 60)
    wall = time.time() - started
    best = max(trained, key=lambda r: r["acc"]) if trained else None
    return arm_figures("optuna", "optuna.create_study(sampler=TPESampler(seed=0), pruner=MedianPruner())", wall,
                       trained, [r["end"] for r in trained if r["reached"]], best and best["spec"],
                       best and best["acc"], threads=[torch.get_num_threads()])


def arm_figures(name, command, wall, done, reached, spec, val, threads) -> dict:
    figures = {"arm": name, "command": command, "wall_s": round(wall, 1), "candidates": len(done),
               "per_hour": round(len(done) / wall * 3600, 1), "threads_per_worker": threads,
               "first_target_s": round(min(reached), 1) if reached else None, "reached": len(reached),
               "winner_spec": spec, "winner_val": val,
               "winner_params": analyse(_spec(spec)).params if spec else None}
    print(f"[{name}] {figures['candidates']} candidates in {wall:.0f} s = {figures['per_hour']}/hour; "
          f"first at the target after {figures['first_target_s']} s; winner {figures['winner_params']} params", flush=True)
    return figures


def _spec(spec: dict):
    from nas.spec import Spec
    return Spec.from_dict(spec)


def confirm(arm: dict, space: Space, full, args) -> None:
    """Retrain the arm's winner on --train-limit training images over the seeds; test once each."""
    if not arm["winner_spec"]:
        return
    data = full.subset(train=args.train_limit, seed=0)
    accs = []
    for seed in range(args.seeds):
        config = settings(space.train, epochs=schedule_epochs(space), seed=seed, eval_each_epoch=False,
                          device="auto")
        accs.append(train(build(_spec(arm["winner_spec"])), data, config).accuracies[-1])
    arm["confirmed"] = {"test": accs, "mean": statistics.mean(accs), "min": min(accs)}
    print(f"[{arm['arm']}] winner confirmed: test {['%.4f' % a for a in accs]}", flush=True)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Search throughput: {SPACE} at reduced fidelity", "",
             f"- command: `{report['command']}`", f"- date: {report['date']}",
             f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, GPU {m.get('gpu') or 'none'}; load average at start "
             f"{', '.join('%.2f' % v for v in m['loadavg_at_start'])}, at the end {', '.join('%.2f' % v for v in m['loadavg_at_end'])}",
             f"- fidelity: {report['train_limit']:,} training images a candidate, the space's 4-epoch schedule, "
             f"target {report['target']:.2%} on the 5,000 held-out validation images; {report['minutes']} minutes an arm",
             ""]
    base = next((a for a in report["arms"] if a["arm"] == "before"), report["arms"][0])
    lines += [f"| arm | candidates | wall s | candidates/hour | vs {base['arm']} | threads/worker | first at target (s) "
              "| reached | winner params | winner val | confirmed test mean / min |", "|" + " --- |" * 11]
    for a in report["arms"]:
        c, val = a.get("confirmed"), a["winner_val"]
        lines.append(f"| {a['arm']} | {a['candidates']} | {a['wall_s']:.0f} | {a['per_hour']:.1f} | "
                     f"{a['per_hour'] / base['per_hour']:.2f}x | {a['threads_per_worker']} | {a['first_target_s']} | "
                     f"{a['reached']} | {a['winner_params']} | {'-' if val is None else format(val, '.4f')} | "
                     + (f"{c['mean']:.4f} / {c['min']:.4f} |" if c else "- |"))
    lines += ["", "Arms: " + "; ".join(f"`{a['arm']}`: `{a['command']}`" for a in report["arms"]), "",
              "A candidate is a trained one (completed or stopped early; rejected and duplicate points are not "
              "counted). Wall time is the whole command: data loading, workers starting and the candidates still "
              "training when the time ran out."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=5.0, help="wall time of each arm")
    p.add_argument("--train-limit", type=int, default=8000)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", default="before,jobs1,nas,optuna")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--name", default="bench_search_throughput")
    args = p.parse_args()
    report = {"command": "python bench/search_throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "train_limit": args.train_limit, "target": args.target, "minutes": args.minutes, "arms": []}
    full = load("mnist", data_dir=args.data_dir)
    with tempfile.TemporaryDirectory(prefix="nas-bench-search-") as tmp:
        folder = Path(tmp)
        space_path = bench_space(folder, args.target)
        for name in args.arms.split(","):
            if name == "optuna":
                searched = full.held_out(5000, 0).subset(train=args.train_limit, seed=0)  # what nas's arms train on
                report["arms"].append(optuna_arm(space_path, args, searched))
            else:
                report["arms"].append(nas_arm(name, arm_options(name), space_path, args, folder))
        space = Space.load(str(space_path))
        for arm in report["arms"]:
            confirm(arm, space, full, args)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    write(report, markdown(report), args.out, args.name)


if __name__ == "__main__":
    main()
