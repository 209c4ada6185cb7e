"""Search quality: which search finds the smallest net that reliably meets the target?

Three arms on mnist_squeeze, one after the other on this machine, each with the same wall-clock
budget (``--minutes``) and at the same reduced fidelity, so that all three fit about 45 minutes on
2 cores: every candidate trains on ``--train-limit`` images of the training split (the space's
5,000 validation images held out first) with a ``--epochs`` one-cycle schedule, and the target is
``--target`` (the space's 99.4% is out of reach there; a copy of the space gets the bench's target
and schedule):

* ``nas``: ``nas search`` with its defaults (forecast stops, no repeats, the cost cap, 2 workers on
  a 2-core CPU), its own confirmation off;
* ``optuna``: Optuna out of the box on the same space, data and trainer: ``TPESampler`` and
  ``MedianPruner`` with their defaults, one objective (validation accuracy), the constraints as a
  penalty (a point over the params limit scores 0 without training), one process;
* ``random``: ``RandomSampler``, no pruner, the same penalty, one process.

Then every arm gets the same confirmation: its trained candidates whose final validation accuracy
is within noise of the target (``nas.forecast.within_noise``), cheapest first, each retrained on
the ``--train-limit`` training images with seeds 0, 1, 2 and tested once on the 10,000 test
images; a design stops at its first seed below the target, and the first design to pass all
seeds is the arm's answer. Reported for each arm: the params of the smallest confirmed design,
candidates trained, duplicates proposed (a trial whose net an earlier trial already had), and
false stops (of up to ``--false-stops`` stopped candidates, spread over their sizes and trained to
the end: how many end within noise of the target). Writes ``results/bench_search_quality.json`` and
``.md``.

Usage (from the repository root)::

    python bench/search_quality.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402
from false_stops import spread  # noqa: E402

from nas import trials as records  # noqa: E402
from nas.build import build  # noqa: E402
from nas.data import load  # noqa: E402
from nas.forecast import within_noise  # noqa: E402
from nas.space import Space, fingerprint  # noqa: E402
from nas.spec import Spec  # noqa: E402
from nas.train import settings, train  # noqa: E402

SPACE = "mnist_squeeze"


def bench_space(folder: Path, target: float, epochs: int) -> Path:
    """A copy of the space with the bench's target and schedule, and no time budget of its own."""
    doc = yaml.safe_load(Path(Space.load(SPACE).source).read_text())
    doc["task"].update(target=target, confirm_epochs=epochs)
    doc["task"].pop("search_minutes", None)
    path = folder / f"{SPACE}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def candidate(spec: dict, params: int, val: float | None, stopped: bool) -> dict:
    return {"spec": spec, "params": params, "val": val, "stopped": stopped,
            "fingerprint": fingerprint(Spec.from_dict(spec))}


def nas_arm(space: Path, args, folder: Path) -> dict:
    results = folder / "nas"
    cmd = [sys.executable, "-m", "nas", "search", "--space", str(space), "--trials", "100000",
           "--timeout", str(args.minutes * 60), "--train-limit", str(args.train_limit), "--confirm", "0",
           "--results", str(results), "--data-dir", str(args.data_dir)]
    env = {k: v for k, v in os.environ.items() if k not in ("NAS_JOBS", "OMP_NUM_THREADS")}
    print(f"[nas] {' '.join(cmd[2:])}", flush=True)
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"arm nas failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    study = optuna.load_study(study_name=SPACE, storage=f"sqlite:///{results}/studies.db")
    all_trials = study.get_trials(deepcopy=False)
    done = [t for t in all_trials if records.trained(t) and t.state.is_finished()]
    cands = [candidate(t.user_attrs["spec"], t.user_attrs["params"], records.val_accuracy(t),
                       t.user_attrs.get("status") in records.EARLY_STOPS) for t in done]
    duplicates = sum(t.user_attrs.get("status") == "duplicate" for t in all_trials)
    return {"arm": "nas", "command": " ".join(shlex.quote(c) for c in cmd[2:]), "wall_s": round(time.time() - started, 1),
            "candidates": cands, "proposed": len(all_trials), "duplicates": duplicates}


def optuna_arm(name: str, space_path: Path, args, data) -> dict:
    """Optuna's own defaults, constraints as a penalty, the same trainer and data as nas."""
    space = Space.load(str(space_path))
    limit = space.task.constraints.max_params
    config = settings(space.train, epochs=args.epochs, target=space.task.target, device="auto", progress=False)
    cands: list[dict] = []
    seen: set[str] = set()
    counts = {"duplicates": 0}

    def objective(trial: optuna.Trial) -> float:
        choices = space.decode({k: trial.suggest_categorical(k, space.labels(k)) for k in space.choices})
        spec = space.spec(choices)
        model = build(spec)
        params = sum(p.numel() for p in model.parameters())
        if params >= limit:
            return 0.0  # the penalty: an infeasible point scores nothing
        fp = fingerprint(spec)
        counts["duplicates"] += fp in seen  # trained again: out of the box, Optuna does not know nets repeat
        seen.add(fp)

        def on_epoch(epoch, acc):
            trial.report(acc, epoch)
            return name == "optuna" and trial.should_prune()

        result = train(model, data, config, on_epoch=on_epoch)
        cands.append(candidate(spec.to_dict(), params, result.accuracies[-1] if result.accuracies else None,
                               result.status == "stopped"))
        if result.status == "stopped":
            raise optuna.TrialPruned()
        return result.accuracies[-1]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=0) if name == "optuna" else optuna.samplers.RandomSampler(seed=0)
    pruner = optuna.pruners.MedianPruner() if name == "optuna" else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    print(f"[{name}] {type(sampler).__name__} + {type(pruner).__name__}, penalty for constraints", flush=True)
    started = time.time()
    study.optimize(objective, timeout=args.minutes * 60)
    return {"arm": name, "command": f"optuna.create_study(sampler={type(sampler).__name__}(seed=0), "
            f"pruner={type(pruner).__name__}())", "wall_s": round(time.time() - started, 1), "candidates": cands,
            "proposed": len(study.trials), "duplicates": counts["duplicates"]}


def confirm(arm: dict, space: Space, full, args, threshold: float) -> None:
    """The same sequential confirmation for every arm (see the module's docstring)."""
    data = full.subset(train=args.train_limit, seed=0)
    best: dict[str, dict] = {}
    for c in arm["candidates"]:  # one entry per net: its best validation accuracy
        if c["val"] is not None and c["val"] >= threshold and not c["stopped"]:
            if c["fingerprint"] not in best or c["val"] > best[c["fingerprint"]]["val"]:
                best[c["fingerprint"]] = c
    arm["confirmations"], arm["answer"] = [], None
    for c in sorted(best.values(), key=lambda c: (c["params"], -c["val"]))[:args.confirm]:
        accs = []
        for seed in range(args.seeds):
            config = settings(space.train, epochs=args.epochs, seed=seed, eval_each_epoch=False, device="auto",
                              progress=False)
            accs.append(train(build(Spec.from_dict(c["spec"])), data, config).accuracies[-1])
            if accs[-1] < space.task.target:
                break  # one short seed decides
        passed = len(accs) == args.seeds and min(accs) >= space.task.target
        arm["confirmations"].append({"params": c["params"], "val": c["val"], "test": accs, "meets": passed})
        print(f"[{arm['arm']}] confirm {c['params']:,} params (val {c['val']:.4f}): test "
              f"{['%.4f' % a for a in accs]} -> {'meets' if passed else 'fails'}", flush=True)
        if passed:
            arm["answer"] = c["params"]
            break


def false_stops(arm: dict, space: Space, data, args, threshold: float) -> None:
    """Train up to ``--false-stops`` of the arm's stopped candidates to the end; count those within noise."""
    stopped = sorted((c for c in arm["candidates"] if c["stopped"]), key=lambda c: c["params"])
    ends = []
    config = settings(space.train, epochs=args.epochs, device="auto", progress=False)
    for c in spread(stopped, args.false_stops):
        result = train(build(Spec.from_dict(c["spec"])), data, config)
        ends.append({"params": c["params"], "stopped_at_val": c["val"], "final": result.accuracies[-1]})
    arm["false_stop_checks"] = ends
    arm["false_stops"] = sum(e["final"] >= threshold for e in ends)
    print(f"[{arm['arm']}] false stops: {arm['false_stops']} of {len(ends)} stopped candidates checked", flush=True)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Search quality: {SPACE} at reduced fidelity", "",
             f"- command: `{report['command']}`", f"- date: {report['date']}",
             f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, GPU {m.get('gpu') or 'none'}",
             f"- fidelity: {report['train_limit']:,} training images a candidate, a {report['epochs']}-epoch schedule, "
             f"target {report['target']:.2%} (validation threshold {report['threshold']:.2%}); "
             f"{report['minutes']} minutes an arm", "",
             "| arm | smallest confirmed (params) | candidates trained | proposed | duplicates proposed | "
             "stopped | false stops (checked) | wall s |", "|" + " --- |" * 8]
    for a in report["arms"]:
        stopped = sum(c["stopped"] for c in a["candidates"])
        lines.append(f"| {a['arm']} | {a['answer'] if a['answer'] is not None else 'none'} | {len(a['candidates'])} | "
                     f"{a['proposed']} | {a['duplicates']} | {stopped} | {a['false_stops']} "
                     f"({len(a['false_stop_checks'])}) | {a['wall_s']:.0f} |")
    lines += ["", "Confirmations (test accuracy per seed; a design stops at its first seed below the target):", ""]
    for a in report["arms"]:
        for c in a["confirmations"]:
            lines.append(f"- {a['arm']}: {c['params']:,} params, val {c['val']:.2%}, test "
                         f"{', '.join('%.2f%%' % (100 * t) for t in c['test'])} -> {'meets' if c['meets'] else 'fails'}")
    lines += ["", "Arms: " + "; ".join(f"`{a['arm']}`: `{a['command']}`" for a in report["arms"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=10.0, help="wall time of each arm's search")
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--target", type=float, default=0.985)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--confirm", type=int, default=3, help="designs each arm may confirm")
    p.add_argument("--false-stops", type=int, default=4, help="stopped candidates each arm trains to the end")
    p.add_argument("--arms", default="nas,optuna,random")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--name", default="bench_search_quality")
    args = p.parse_args()
    full = load("mnist", data_dir=args.data_dir)
    searched = full.held_out(5000, 0)
    threshold = within_noise(args.target, len(searched.y_eval))
    searched = searched.subset(train=args.train_limit, seed=0)  # what nas's arm trains on (--train-limit)
    report = {"command": "python bench/search_quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "train_limit": args.train_limit, "epochs": args.epochs, "target": args.target, "threshold": threshold,
              "minutes": args.minutes, "arms": []}
    with tempfile.TemporaryDirectory(prefix="nas-bench-quality-") as tmp:
        space_path = bench_space(Path(tmp), args.target, args.epochs)
        for name in args.arms.split(","):
            arm = nas_arm(space_path, args, Path(tmp)) if name == "nas" else optuna_arm(name, space_path, args, searched)
            report["arms"].append(arm)
        space = Space.load(str(space_path))
        for arm in report["arms"]:
            confirm(arm, space, full, args, threshold)
            false_stops(arm, space, searched, args, threshold)
    write(report, markdown(report), args.out, args.name)


if __name__ == "__main__":
    main()
