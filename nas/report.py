"""The table of a study: one row per trial and its confirmation, printed, as Markdown and as CSV.

The pictures drawn from this table live in :mod:`nas.plots`; :func:`write` writes both.

Everything is read through :mod:`nas.trials`, so a report can be made at any time, also while
workers are still searching. Validation figures (what the search chose on) and test figures (what
confirmation measured, over several seeds, at the final epoch) sit in separate columns.

>>> import optuna
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> study = optuna.create_study(study_name="demo", directions=["maximize", "minimize"])
>>> study.add_trial(optuna.trial.create_trial(values=[0.995, 9000], user_attrs={
...     "status": "target_met", "params": 9000, "rf": 30, "macs": 10**6, "failures": [],
...     "trained": True, "accuracies": [0.98, 0.995], "target_epoch": 2, "seconds": 12.5,
...     "reached_target": True}))
>>> study.add_trial(optuna.trial.create_trial(values=[0.0, 25000], user_attrs={
...     "status": "rejected", "params": 25000, "rf": 30, "macs": 10**6, "failures": ["params < 20,000"]}))
>>> df = trials_frame(study)
>>> df[["trial", "status", "params", "epochs", "val_acc", "on_front", "meets_constraints", "seeds"]].values.tolist()
[[0, 'target_met', 9000, 2, 0.995, True, True, ''], [1, 'rejected', 25000, 0, nan, False, False, '']]

From the shell, ``nas report --study mnist_squeeze`` prints the table and writes ``trials.csv``,
``trials.md``, ``accuracy_vs_params.png``, ``learning_curves.png`` and ``history.png`` under
``runs/mnist_squeeze/``; in Python, ``write(study, Path("runs/mnist_squeeze"))``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from . import trials
from . import plots
from .errors import NasError
from .files import write_atomic

COLUMNS = ["trial", "design", "status", "params", "rf", "macs", "lr", "epochs", "val_acc", "target_epoch", "seconds",
           "meets_constraints", "reached_target", "on_front", "seeds", "test_mean", "test_min", "test_max",
           "meets_target", "trained", "note", "choices"]
TEXT_COLUMNS = {"design", "status", "note", "choices", "seeds"}  # left-aligned in printed tables
STATUS_ORDER = ("target_met", "complete", "stopped", "stuck", "pruned", "nan", "interrupted", "duplicate", "dominated",
                "rejected")

# -- the table ---------------------------------------------------------------------------------

def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: designs confirmed to meet the target first, then by validation accuracy,
    then fewer params.

    Rejected candidates are rows too (accuracy empty); ``df[df.status != "rejected"]`` drops them.

    >>> import optuna
    >>> from nas import trials_frame
    >>> study = optuna.load_study(study_name="mnist_squeeze", storage="sqlite:///results/studies.db")
    >>> df = trials_frame(study)
    >>> int(df[df.status != "rejected"].params.min()) > 0
    True
    """
    task = trials.StudyTask.of(study)
    found = _confirmations(study)
    front = {t.number for t in trials.front(study, task.cost)}
    rows = [_row(t, found, front, task.target) for t in study.get_trials(deepcopy=False)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype({"trial": "int64", "params": "Int64", "rf": "Int64", "macs": "Int64", "lr": "float64",
                    "epochs": "int64",
                    "val_acc": "float64", "target_epoch": "Int64", "seconds": "float64",
                    "meets_constraints": "boolean", "reached_target": "bool", "on_front": "bool",
                    "test_mean": "float64", "test_min": "float64", "test_max": "float64",
                    "meets_target": "boolean", "trained": "bool"})
    answers = df.meets_target.fillna(False).astype(bool)  # unconfirmed and failed alike come after the answers
    order = df.assign(_answer=answers).sort_values(["_answer", "val_acc", "params", "trial"],
                                                   ascending=[False, False, True, True], na_position="last",
                                                   kind="stable")
    return df.loc[order.index].reset_index(drop=True)


def _confirmations(study: optuna.Study) -> dict[str, trials.Confirmation]:
    from .confirm import found

    return found(study)[0]


def _row(t: optuna.trial.FrozenTrial, found: dict, front: set, target: float | None) -> dict[str, Any]:
    r = trials.Record.of(t)
    c = found.get(r.fingerprint) if r.status != "duplicate" else None
    return {
        "trial": t.number, "design": r.design, "status": r.status,
        "params": r.params, "rf": r.rf, "macs": r.macs,
        "lr": math.nan if r.lr is None else r.lr, "epochs": len(r.accuracies),
        "val_acc": math.nan if r.val_accuracy is None else r.val_accuracy,
        "target_epoch": r.target_epoch, "seconds": math.nan if r.seconds is None else r.seconds,
        "meets_constraints": None if r.failures is None else not r.failures,
        "reached_target": r.reached_target, "on_front": t.number in front,
        "seeds": f"{c.passed(target)}/{len(c.accuracies)}" if c and target is not None and c.accuracies else "",
        "test_mean": c.mean if c and c.accuracies else math.nan, "test_min": c.min if c and c.accuracies else math.nan,
        "test_max": c.max if c and c.accuracies else math.nan,
        "meets_target": (c.meets(target) if c.done or c.fails(target) else None) if c and target is not None else None,
        "trained": r.trained,
        "note": _note(t), "choices": " ".join(f"{k}={v}" for k, v in t.params.items()),
    }


def _note(t: optuna.trial.FrozenTrial) -> str:
    """Why a row looks the way it does: failed constraints, a duplicate, a NaN message, a retry."""
    r = trials.Record.of(t)
    parts = []
    if r.failures:
        parts.append("fails " + "; ".join(r.failures))
    if r.duplicate_of is not None:
        parts.append(f"same net as trial {r.duplicate_of}")
    if r.message:
        parts.append(r.message)
    first = r.first_try
    if first is not None and r.status != "stuck":
        parts.append(f"{_try(first)}: trained again at lr {r.lr:g}")
    if r.retry_of is not None:
        parts.append(f"repeats trial {r.retry_of}, whose worker died")
    stop = r.rung_stop
    if r.status == "stopped":
        where = f"after {stop[0]:,} images (val {stop[1]:.2%})" if stop else f"at {r.stopped_at}"
        parts.append(f"stopped {where}: forecast end {r.predicted or 0:.2%}, short of the target")
    elif stop:
        parts.append(f"stopped by halving after {stop[0]:,} images (val {stop[1]:.2%})")
    return "; ".join(parts)


def _try(first: dict) -> str:
    if first["outcome"] == "nan":
        return f"diverged at lr {first['lr']:g}"
    return f"{first['outcome']} at lr {first['lr']:g} ({first['accuracy']:.2%} after {first['at']:.0%} of the schedule)"


def without_rejected(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.status != "rejected"]


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: thousands separators, percentages, ✓/✗, and no empty columns."""
    out = pd.DataFrame({
        "trial": df.trial.astype(str), "design": df.design, "status": df.status,
        "params": df.params.map(_count), "RF": df.rf.map(_count), "MACs": df.macs.map(_count),
        "lr": df.lr.map(lambda v: "" if math.isnan(v) else f"{v:g}"),
        "epochs": df.epochs.map(lambda n: str(n) if n else ""),
        "val acc": df.val_acc.map(_percent), "val target at epoch": df.target_epoch.map(_count),
        "train s": df.seconds.map(_seconds), "constraints": df.meets_constraints.map(_mark),
        "front": df.on_front.map(lambda v: "◆" if v else ""),
        "test seeds ≥ target": df.seeds, "test mean": df.test_mean.map(_percent),
        "test min": df.test_min.map(_percent), "test max": df.test_max.map(_percent),
        "confirmed": df.meets_target.map(_mark), "note": df.note, "choices": df.choices,
    })
    return out[[c for c in out.columns if c in ("trial", "status") or (out[c] != "").any()]]


def _count(v) -> str:
    return "" if pd.isna(v) else f"{int(v):,}"


def _percent(v) -> str:
    return "" if pd.isna(v) else f"{v:.2%}"


def _seconds(v) -> str:
    return "" if pd.isna(v) else f"{v:.1f}"


def _mark(v) -> str:
    return "" if pd.isna(v) else ("✓" if v else "✗")


def format_trials(df: pd.DataFrame) -> str:
    """The table for a terminal: words left-aligned, numbers right-aligned."""
    if df.empty:
        return "(no trials)"
    shown = display_frame(df)
    widths = {c: max([len(c)] + [len(v) for v in shown[c]]) for c in shown.columns}

    def line(cells) -> str:
        return "  ".join(v.ljust(widths[c]) if c in TEXT_COLUMNS else v.rjust(widths[c])
                         for c, v in zip(shown.columns, cells)).rstrip()
    return "\n".join([line(shown.columns)] + [line(row) for row in shown.itertuples(index=False)])


def markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned (no ``tabulate`` needed)."""
    shown = display_frame(df)
    cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(shown.columns) + " |",
             "| " + " | ".join(":---" if c in TEXT_COLUMNS else "---:" for c in shown.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines)


# -- summary -----------------------------------------------------------------------------------

def task_line(study: optuna.Study) -> str:
    """What the study was asked: dataset, target, epoch budget and the hard constraints."""
    u = study.user_attrs
    head = f"study {study.study_name}" + (f" (space {u['space']})" if u.get("space") else "")
    if "target" not in u:
        return head
    budget = f" within {u['max_epochs']} epochs" if u.get("max_epochs") else ""
    return (f"{head}: " + (f"{u['dataset']}, " if u.get("dataset") else "") + f"target {u['target']:.2%} "
            f"test accuracy{budget}; " + (", ".join(_limit_names(u.get("constraints") or {})) or "no constraints"))


def _limit_names(c: dict[str, Any]) -> list[str]:
    from .constraints import Constraints

    return Constraints.from_dict(c).names()


def summary(study: optuna.Study, df: pd.DataFrame | None = None) -> list[str]:
    """Lines under the table: what was asked, counts by status, the front's size, every
    confirmation, and the one best design (:func:`nas.trials.best`)."""
    df = trials_frame(study) if df is None else df
    counts = df.status.value_counts()
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts.index) - set(STATUS_ORDER))
    lines = [task_line(study),
             f"{len(df)} trials: " + (", ".join(f"{counts[s]} {s}" for s in order) or "none yet")]
    if trained_only(df).empty:
        return lines + ["no trained trial yet"]
    task = trials.StudyTask.of(study)
    target, cost = (task.target if task.target is not None else 1.0), task.cost
    front = df[df.on_front].sort_values("params")
    reached = front[front.val_acc >= target]
    lines.append(f"front: {len(front)} trials (validation accuracy against {cost}); {len(reached)} reached the "
                 f"target on validation" + (f", the cheapest is trial {reached.trial.iloc[0]}" if len(reached) else ""))
    from .confirm import found as confirmed

    found, best = confirmed(study)
    for c in sorted(found.values(), key=lambda c: (c.figures.get(cost) or 0)):
        beaten = best is not None and c is not best and (best.figures.get(cost) or 0) < (c.figures.get(cost) or 0)
        lines.append(f"confirmed {c.line(target, cost)} -> {c.verdict(target, beaten)}")
    lines.append(f"best: {best.line(target, cost)}" if best else
                 "best: none yet (no design confirmed to meet the target in every seed)")
    return lines


def trained_only(df: pd.DataFrame) -> pd.DataFrame:
    """Trials with a learning curve of their own: not duplicates (they point at another trial's)
    and not failed ones (a killed worker's trial is retried; the retry carries the curve)."""
    return df[df.trained & df.val_acc.notna() & ~df.status.isin(["duplicate", "fail", "interrupted"])]


# -- files -------------------------------------------------------------------------------------

def write(study: optuna.Study, out_dir: Path, include_rejected: bool = False,
          df: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the CSV (every trial), the Markdown table (rejected ones only if asked) and the PNGs
    of :mod:`nas.plots`."""
    df = trials_frame(study) if df is None else df
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NasError(f"cannot create report folder {out_dir}: {err.strerror}; pass a writable --results") from None
    paths = {"csv": out_dir / "trials.csv", "markdown": out_dir / "trials.md"}
    fix = "free some space or pass a writable --results"
    write_atomic(paths["csv"], df.to_csv(index=False), "the trials table", fix)
    write_atomic(paths["markdown"], _markdown_report(study, df, include_rejected), "the report", fix)
    return paths | plots.write(study, plots.Table(df, trained_only(df), task_line(study)), out_dir)


def _markdown_report(study: optuna.Study, df: pd.DataFrame, include_rejected: bool) -> str:
    shown = df if include_rejected else without_rejected(df)
    lines = summary(study, df)
    text = f"**{lines[0]}**\n\n" + "  \n".join(lines[1:]) + "\n\n"
    omitted = len(df) - len(shown)
    if omitted:
        text += f"{omitted} rejected candidates are left out here; `trials.csv` lists every trial.\n\n"
    return text + (markdown(shown) if len(shown) else "(no trials)") + "\n"
