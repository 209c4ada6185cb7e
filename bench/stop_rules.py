"""Stop rules replayed on a study's recorded curves: how many good nets would each rule have stopped?

A search records each candidate's validation accuracy at every rung and epoch end. For the
candidates that trained to the end of the schedule (so their final accuracy is known), this
replays, in trial order, the rule that ``nas`` used before issue 17 and counts the nets it would
have stopped although they ended within noise of the target (false stops):

* successive halving against cheaper nets (``eta`` 3): at a rung, a net goes on only if it is among
  the best third of the nets no dearer than it that were scored there before it (the best, while
  fewer than three were);
* the target pruner: after an epoch, a net stops if its accuracy is below the lowest accuracy that
  any earlier net that reached the target had at that epoch, by more than 0.003, or if halving its
  error every remaining epoch could not reach the target.

The forecast rule the search applied is replayed too (with the exponents as calibrated at the end
of the study), as a check that it stops none of these nets. No training: it reads the study only.
Writes ``results/bench_stop_rules.json`` and ``.md``.

Usage (from the repository root)::

    python bench/stop_rules.py --study mnist_squeeze --results runs
"""
from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, write  # noqa: E402

from nas import study as studies  # noqa: E402
from nas import trials  # noqa: E402
from nas.forecast import Forecast  # noqa: E402


def halving_stops(rungs: dict, cost: float, earlier: list[tuple[float, dict]], eta: int = 3) -> str | None:
    """Where the old successive halving would have stopped a net, or None."""
    for images in sorted(rungs, key=int):
        acc = rungs[images]
        rivals = sorted([r[images] for c, r in earlier if c <= cost and images in r] + [acc], reverse=True)
        if acc < rivals[max(1, len(rivals) // eta) - 1]:
            return f"{int(images):,} images"
    return None


def pruner_stops(curve: list[float], refs: list[list[float]], target: float, epochs: int,
                 slack: float = 0.003, decay: float = 0.5) -> str | None:
    """Where the old target pruner would have stopped a net, or None."""
    for epoch, acc in enumerate(curve[:-1], start=1):
        if (1 - acc) * decay ** (epochs - epoch) > 1 - target:
            return f"epoch {epoch}"
        at = [r[epoch - 1] for r in refs if len(r) >= epoch]
        if at and acc < min(at) - slack:
            return f"epoch {epoch}"
    return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--results", default="runs")
    p.add_argument("--storage")
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--name", default="bench_stop_rules")
    args = p.parse_args(argv)
    storage = args.storage or f"sqlite:///{Path(args.results) / 'studies.db'}"
    study = studies.load(args.study, storage)
    a = study.user_attrs
    target, epochs, cost = a["target"], a["epochs"], a.get("cost", "params")
    threshold = a.get("val_threshold", target)
    forecast = Forecast(threshold).calibrated(trials.full_curves(study))
    rows, earlier, refs = [], [], []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        u = t.user_attrs
        if not trials.trained(t) or not u.get("curve"):
            continue
        full = trials.finished(t) and (u["status"] == "target_met" or len(u.get("accuracies") or []) == epochs)
        accs = [x for x in u.get("accuracies") or [] if x is not None]
        if full:
            final = accs[-1]
            old = halving_stops(u.get("rungs") or {}, u[cost], earlier) or pruner_stops(accs, refs, target, epochs)
            new = next((f"{fr:.3f}" for fr, acc in u["curve"] if not forecast.reachable(fr, acc)), None)
            rows.append({"trial": t.number, "params": u[cost], "final": final, "good": final >= threshold,
                         "reached": bool(u.get("reached_target")), "old_stop": old, "forecast_stop": new})
        earlier.append((u[cost], u.get("rungs") or {}))
        if u.get("reached_target") and accs:
            refs.append(accs)
    good = [r for r in rows if r["good"]]
    old_false = [r for r in good if r["old_stop"]]
    new_false = [r for r in good if r["forecast_stop"]]
    command = "python bench/stop_rules.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    m = machine()
    lines = [f"# Stop rules replayed on study {args.study}", "",
             f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC (reads the study only; {m['cpu']}).", "",
             f"{len(rows)} candidates trained to the end of the {epochs}-epoch schedule (or to the target); "
             f"{len(good)} of them ended within noise of the target (validation >= {threshold:.2%}, target "
             f"{target:.2%}). Of those, the rule before issue 17 (halving against cheaper nets + the target pruner) "
             f"would have stopped **{len(old_false)}**; the forecast rule, replayed with its final calibration, "
             f"**{len(new_false)}**.", "",
             "| trial | params | final validation | within noise | old rule stops at | forecast stops at |",
             "| ---: | ---: | ---: | :---: | :--- | :--- |"]
    lines += [f"| {r['trial']} | {r['params']:,} | {r['final']:.2%} | {'✓' if r['good'] else ''} | {r['old_stop'] or ''} "
              f"| {r['forecast_stop'] or ''} |" for r in rows]
    write({"command": command, "study": args.study, "target": target, "threshold": threshold, "rows": rows,
           "old_false_stops": len(old_false), "forecast_false_stops": len(new_false)},
          "\n".join(lines) + "\n", args.out, args.name)


if __name__ == "__main__":
    main()
