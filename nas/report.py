"""Reports on a study: one table of every trial and its confirmation, and the pictures that explain the search.

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
import statistics
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from . import trials
from .errors import NasError

COLUMNS = ["trial", "design", "status", "params", "rf", "macs", "epochs", "val_acc", "target_epoch", "seconds",
           "meets_constraints", "reached_target", "on_front", "seeds", "test_mean", "test_min", "test_max",
           "meets_target", "trained", "note", "choices"]
TEXT_COLUMNS = {"design", "status", "note", "choices", "seeds"}  # left-aligned in printed tables
STATUS_ORDER = ("target_met", "complete", "pruned", "nan", "interrupted", "duplicate", "rejected")
LEARNING_CURVES = 5  # front trials drawn, besides the documented designs

# Marker shapes differ as well as colours, so the plots survive greyscale printing and colour blindness.
STYLE = {
    "target_met": ("#2ca02c", "o", "validation reached the target"),
    "complete": ("#1f77b4", "s", "trained, validation below the target"),
    "pruned": ("#7f7f7f", "X", "pruned (stopped early)"),
    "nan": ("#d62728", "D", "diverged (NaN loss)"),
    "interrupted": ("#ff7f0e", "P", "interrupted"),
}
OTHER_STYLE = ("#9467bd", "d", "other")


# -- the table ---------------------------------------------------------------------------------

def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: designs confirmed to meet the target first, then by validation accuracy,
    then fewer params.

    Rejected candidates are rows too (accuracy empty); ``df[df.status != "rejected"]`` drops them.
    """
    found = _confirmations(study)
    front = {t.number for t in trials.front(study, study.user_attrs.get("cost", "params"))}
    rows = [_row(t, found, front, study.user_attrs.get("target")) for t in study.get_trials(deepcopy=False)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype({"trial": "int64", "params": "Int64", "rf": "Int64", "macs": "Int64", "epochs": "int64",
                    "val_acc": "float64", "target_epoch": "Int64", "seconds": "float64",
                    "meets_constraints": "boolean", "reached_target": "bool", "on_front": "bool",
                    "test_mean": "float64", "test_min": "float64", "test_max": "float64",
                    "meets_target": "boolean", "trained": "bool"})
    df = df.sort_values(["meets_target", "val_acc", "params", "trial"], ascending=[False, False, True, True],
                        na_position="last", kind="stable")
    return df.reset_index(drop=True)


def _confirmations(study: optuna.Study) -> dict[str, trials.Confirmation]:
    from .confirm import existing

    return trials.confirmations(existing(study), study.user_attrs.get("seeds", 3))


def _row(t: optuna.trial.FrozenTrial, found: dict, front: set, target: float | None) -> dict[str, Any]:
    a = t.user_attrs
    accs = list(a.get("accuracies") or [])
    failures = a.get("failures")
    c = found.get(a.get("fingerprint")) if a.get("status") != "duplicate" else None
    return {
        "trial": t.number, "design": a.get("design", ""),
        "status": a.get("status") or t.state.name.lower(),
        "params": a.get("params"), "rf": a.get("rf"), "macs": a.get("macs"), "epochs": len(accs),
        "val_acc": accs[-1] if accs else math.nan,
        "target_epoch": a.get("target_epoch"), "seconds": a.get("seconds", math.nan),
        "meets_constraints": None if failures is None else not failures,
        "reached_target": bool(a.get("reached_target")), "on_front": t.number in front,
        "seeds": f"{c.passed(target)}/{len(c.accuracies)}" if c and target is not None and c.accuracies else "",
        "test_mean": c.mean if c and c.accuracies else math.nan, "test_min": c.min if c and c.accuracies else math.nan,
        "test_max": c.max if c and c.accuracies else math.nan,
        "meets_target": c.meets(target) if c and target is not None and c.done else None,
        "trained": bool(a.get("trained")),
        "note": _note(t), "choices": " ".join(f"{k}={v}" for k, v in t.params.items()),
    }


def _note(t: optuna.trial.FrozenTrial) -> str:
    """Why a row looks the way it does: failed constraints, a duplicate, a NaN message, a retry."""
    a = t.user_attrs
    parts = []
    if a.get("failures"):
        parts.append("fails " + "; ".join(a["failures"]))
    if "duplicate_of" in a:
        parts.append(f"same net as trial {a['duplicate_of']}")
    if a.get("message"):
        parts.append(str(a["message"]))
    if a.get("retry_of") is not None:
        parts.append(f"repeats trial {a['retry_of']}, whose worker died")
    return "; ".join(parts)


def without_rejected(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.status != "rejected"]


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: thousands separators, percentages, ✓/✗, and no empty columns."""
    out = pd.DataFrame({
        "trial": df.trial.astype(str), "design": df.design, "status": df.status,
        "params": df.params.map(_count), "RF": df.rf.map(_count), "MACs": df.macs.map(_count),
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


def format_table(df: pd.DataFrame) -> str:
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
    if _trained(df).empty:
        return lines + ["no trained trial yet"]
    target, cost = study.user_attrs.get("target", 1.0), study.user_attrs.get("cost", "params")
    front = df[df.on_front].sort_values("params")
    reached = front[front.val_acc >= target]
    lines.append(f"front: {len(front)} trials (validation accuracy against {cost}); {len(reached)} reached the "
                 f"target on validation" + (f", the cheapest is trial {reached.trial.iloc[0]}" if len(reached) else ""))
    found = _confirmations(study)
    for c in sorted(found.values(), key=lambda c: (c.figures.get(cost) or 0)):
        verdict = "meets the target" if c.meets(target) else "not done" if not c.done else "fails the target"
        lines.append(f"confirmed {c.line(target, cost)} -> {verdict}")
    best = trials.best(found, target, cost)
    lines.append(f"best: {best.line(target, cost)}" if best else
                 "best: none yet (no design confirmed to meet the target in every seed)")
    return lines


def _trained(df: pd.DataFrame) -> pd.DataFrame:
    """Trials with a learning curve of their own: not duplicates (they point at another trial's)
    and not failed ones (a killed worker's trial is retried; the retry carries the curve)."""
    return df[df.trained & df.val_acc.notna() & ~df.status.isin(["duplicate", "fail", "interrupted"])]


# -- files -------------------------------------------------------------------------------------

def write(study: optuna.Study, out_dir: Path, include_rejected: bool = False,
          df: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the CSV (every trial), the Markdown table (rejected ones only if asked) and the PNGs."""
    df = trials_frame(study) if df is None else df
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NasError(f"cannot create report folder {out_dir}: {err.strerror}; pass a writable --results") from None
    paths = {"csv": out_dir / "trials.csv", "markdown": out_dir / "trials.md"}
    df.to_csv(paths["csv"], index=False)
    paths["markdown"].write_text(_markdown_report(study, df, include_rejected), encoding="utf-8")
    for name, draw in (("accuracy_vs_params", accuracy_vs_params), ("learning_curves", learning_curves),
                       ("history", history)):
        paths[name] = out_dir / f"{name}.png"
        draw(study, df, paths[name])
    return paths


def _markdown_report(study: optuna.Study, df: pd.DataFrame, include_rejected: bool) -> str:
    shown = df if include_rejected else without_rejected(df)
    lines = summary(study, df)
    text = f"**{lines[0]}**\n\n" + "  \n".join(lines[1:]) + "\n\n"
    omitted = len(df) - len(shown)
    if omitted:
        text += f"{omitted} rejected candidates are left out here; `trials.csv` lists every trial.\n\n"
    return text + (markdown(shown) if len(shown) else "(no trials)") + "\n"


# -- plots -------------------------------------------------------------------------------------
# Each picture must explain itself: the study and its task in the title, units on the axes, the
# target and the constraint limits drawn in. Accuracy axes are zoomed near the target (a pruned
# 30% net would squash the interesting range), and points below the axis sit on its bottom edge
# as ▼ so none disappears.

def _figure(strip: bool, rows: int = 1):
    """A figure drawn by Agg directly, leaving pyplot's global state (and any notebook backend) alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    if not strip:
        return fig, fig.subplots(), None
    ax, low = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [6, max(1.0, 0.6 * rows)]})
    return fig, ax, low


def _titles(fig, ax, study: optuna.Study, what: str) -> None:
    import textwrap

    fig.suptitle(f"{study.study_name}: {what}", fontsize=14, fontweight="bold")
    task = task_line(study).split(": ", 1)[-1] if ": " in task_line(study) else ""
    if task:
        ax.set_title(textwrap.fill(task, 120), fontsize=9, color="#444444")


def _limits(study: optuna.Study) -> tuple[float | None, int | None, int | None]:
    u = study.user_attrs
    return u.get("target"), (u.get("constraints") or {}).get("max_params"), u.get("max_epochs")


def _zoom(values: list[float], target: float | None) -> tuple[float, float]:
    """Accuracy range to show: the target and the better half of the values, at least."""
    values = [v for v in values if not math.isnan(v)]
    ref = values + ([target] if target is not None else [])
    if not ref:
        return 0.0, 1.0
    top = max(ref)
    floor = target - 3 * (1 - target) if target is not None else min(ref)
    low = max(min(ref), min(floor, statistics.median(values) if values else top))
    pad = max((top - low) * 0.08, 0.002)
    step = 10 ** math.floor(math.log10(top - low + pad)) / 2  # a round floor: 97.5%, not 97.43%
    return max(math.floor((low - pad) / step) * step, 0.0), (top + pad if top + pad <= 1 else max(top, 1.0) + pad / 4)


def _percent_axis(axis) -> None:
    from matplotlib.ticker import PercentFormatter
    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))


def _count_axis(axis, log: bool) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    if log:  # a log axis labels only powers of ten by default: too few to read a count from
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axis.set_minor_formatter(NullFormatter())


def _target_line(ax, target: float | None) -> None:
    if target is not None:
        ax.axhline(target, color="#d62728", linestyle="--", linewidth=1.2, label=f"target {target:.2%}")


def _by_status(ax, xs: pd.Series, ys: pd.Series, statuses: pd.Series, lo: float, hi: float) -> None:
    """Scatter one series per status (colour and marker), clipped points as ▼ on the bottom edge."""
    clipped_y = lo + (hi - lo) * 0.02
    n_clipped = 0
    for status in [s for s in STYLE if s in set(statuses)] + sorted(set(statuses) - set(STYLE)):
        colour, marker, label = STYLE.get(status, (*OTHER_STYLE[:2], status))
        mask = statuses == status
        x, y = xs[mask].astype(float), ys[mask].astype(float)
        ax.scatter(x[y >= lo], y[y >= lo], color=colour, marker=marker, s=46, alpha=0.85, zorder=3,
                   edgecolors="white", linewidths=0.5, label=f"{label} ({int(mask.sum())})")
        below = y < lo
        n_clipped += int(below.sum())
        ax.scatter(x[below], [clipped_y] * int(below.sum()), color=colour, marker="v", s=40, zorder=3, clip_on=False)
    if n_clipped:
        ax.scatter([], [], color="#555555", marker="v", label=f"below {lo:.1%}, drawn at the bottom ({n_clipped})")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # a study without target or trained trials has nothing to key
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="#777777")


def accuracy_vs_params(study: optuna.Study, df: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy of each trained trial against its parameter count, the validation front,
    and each confirmed design's test accuracy over its seeds (mean, with min..max as a bar)."""
    target, max_params, _ = _limits(study)
    trained = _trained(df)
    rejected = df[(df.status == "rejected") & df.params.notna()]
    confirmed = df[df.test_mean.notna()].drop_duplicates("params")
    fig, ax, strip = _figure(strip=True)
    _titles(fig, ax, study, "accuracy against parameters: validation (search) and test (confirmation)")
    lo, hi = _zoom(trained.val_acc.tolist() + confirmed.test_min.tolist(), target)
    if trained.empty:
        _empty(ax, "no trained trial yet")
    else:
        _by_status(ax, trained.params, trained.val_acc, trained.status, lo, hi)
        front = trained[trained.on_front].sort_values("params")
        if not front.empty:
            right = float(max(trained.params.max(), max_params or 0))
            ax.step(list(front.params.astype(float)) + [right], list(front.val_acc) + [front.val_acc.iloc[-1]],
                    where="post", color="#2ca02c", linewidth=1.4, alpha=0.7, zorder=2,
                    label="validation front: nothing has fewer params\nand higher validation accuracy (#trial)")
    _confirmed_bars(ax, confirmed)
    _target_line(ax, target)
    if max_params is not None:
        for a in (ax, strip):
            a.axvline(max_params, color="#444444", linestyle=":", linewidth=1.4,
                      label=f"limit: params < {max_params:,}" if a is ax else None)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("accuracy (%)")
    _percent_axis(ax.yaxis)
    ax.grid(alpha=0.3)
    _strip(strip, {"rejected before\ntraining": rejected.params.astype(float)},
           "no candidate was rejected" if rejected.empty else None)
    xs = pd.concat([trained.params, rejected.params]).astype(float)
    log = bool(len(xs)) and xs.min() > 0 and max(xs.max(), max_params or 0) / xs.min() > 10
    if log:
        ax.set_xscale("log")  # rejected giants would squash the trained nets into one corner
    _count_axis(ax.xaxis, log)
    if xs.empty:
        ax.set_xticks([])  # nothing to count: ticks on an arbitrary range would only read as "-0, 0"
    _goal(ax, target, max_params, hi)
    if not trained.empty:
        _label_front(ax, trained[trained.on_front], lo)
    strip.set_xlabel("parameters (count; fewer is better)" + (", log scale" if log else ""))
    _legend(ax)
    fig.savefig(path)
    return path


def _confirmed_bars(ax, confirmed: pd.DataFrame) -> None:
    """Each confirmed design: its mean final test accuracy, with a bar from the worst to the best seed."""
    for meets, colour, label in ((True, "#006400", "confirmed on test: every seed meets the target"),
                                 (False, "#b22222", "confirmed on test: some seed misses the target")):
        rows = confirmed[confirmed.meets_target.fillna(False) == meets]
        if rows.empty:
            continue
        ax.errorbar(rows.params.astype(float), rows.test_mean,
                    yerr=[(rows.test_mean - rows.test_min).clip(lower=0), (rows.test_max - rows.test_mean).clip(lower=0)],
                    fmt="*", markersize=13,
                    color=colour, ecolor=colour, elinewidth=2, capsize=5, zorder=5,
                    label=f"{label}\n(mean; bar: min..max over seeds) ({len(rows)})")


def _goal(ax, target: float | None, max_params: int | None, hi: float) -> None:
    """Shade where a net meets both the target and the params limit: the answers live there."""
    if target is None:
        return
    left, right = ax.get_xlim()
    edge = right if max_params is None else min(max_params, right)
    what = f"goal: accuracy ≥ {target:.2%}" + (f"\nand params < {max_params:,}" if max_params is not None else "")
    ax.fill_between([left, edge], target, hi, color="#2ca02c", alpha=0.07, linewidth=0, label=what, zorder=0)
    ax.set_xlim(left, right)


def _label_front(ax, front: pd.DataFrame, lo: float) -> None:
    """Trial numbers on the front, skipping any that would overprint one already placed.

    First the answers the summary names (the most accurate trial, the smallest that meets the
    target), then the rest by accuracy.
    """
    ax.get_xlim(), ax.get_ylim()  # settle autoscaling, so data-to-pixel positions are final
    by_acc = front.sort_values("val_acc", ascending=False)
    smallest = front[front.meets_target.fillna(False)].sort_values("params").head(1)
    placed: list[tuple[float, float]] = []
    for row in pd.concat([by_acc.head(1), smallest, by_acc]).drop_duplicates("trial").itertuples():
        if row.val_acc < lo:
            continue
        x, y = ax.transData.transform((row.params, row.val_acc))
        if any(abs(x - px) < 34 and abs(y - py) < 14 for px, py in placed):
            continue
        placed.append((x, y))
        ax.annotate(f"#{row.trial}", (row.params, row.val_acc), xytext=(4, 5),
                    textcoords="offset points", fontsize=8, color="#1a6e1a")


def _strip(ax, rows: dict[str, pd.Series], empty_text: str | None) -> None:
    """A thin band under the main plot: one row of | ticks per kind of untrained trial."""
    rows = {k: v for k, v in rows.items() if len(v)}
    for y, (label, xs) in enumerate(rows.items()):
        ax.scatter(xs, [y] * len(xs), marker="|", s=140, color="#8c564b", alpha=0.6)
    ax.set_yticks(range(len(rows)), [f"{k} ({len(v)})" for k, v in rows.items()], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    if empty_text:
        _empty(ax, empty_text)


def learning_curves(study: optuna.Study, df: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy per epoch of the front's best trials and of every trained documented design."""
    target, _, max_epochs = _limits(study)
    trained = _trained(df)
    ranked = trained.sort_values(["on_front", "val_acc"], ascending=[False, False])
    picked = pd.concat([ranked.head(LEARNING_CURVES), trained[trained.design != ""]]).drop_duplicates("trial")
    curves = {t.number: list(t.user_attrs.get("accuracies") or []) for t in study.get_trials(deepcopy=False)
              if t.number in set(picked.trial)}
    fig, ax, _ = _figure(strip=False)
    designs = " and documented designs" if (picked.design != "").any() else ""
    _titles(fig, ax, study, f"validation accuracy per epoch, {min(len(trained), LEARNING_CURVES)} front trials{designs}")
    # early epochs may fall below the axis, but a documented design's best epoch stays in view:
    # it is the reference the search is compared with
    lo, hi = _zoom([v for c in curves.values() for v in c], target)
    lo = min([lo] + [max(curves[n]) - 0.04 * (hi - max(curves[n])) for n in picked[picked.design != ""].trial
                     if curves[n]])
    longest = max([len(c) for c in curves.values()] + [max_epochs or 1])
    palette = ["C0", "C1", "C2", "C4", "C5", "C6", "C8", "C9", "C7"]  # no red: red is the target line
    for i, row in enumerate(picked.itertuples()):
        accs = curves[row.trial]
        hidden = "\n  (entirely below the axis)" if max(accs, default=0) < lo else ""
        epochs = range(1, len(accs) + 1)
        name = f"trial {row.trial}" + (f" ({row.design})" if row.design else "")
        met = f", target at epoch {row.target_epoch}" if not pd.isna(row.target_epoch) else ", target not met"
        line, = ax.plot(epochs, accs, marker="o", markersize=3.5, linewidth=1.6,
                        linestyle="--" if row.design else "-", color=palette[i % len(palette)],
                        label=f"{name}: {row.params:,} params, RF {row.rf}\n  final {row.val_acc:.2%}{met}{hidden}")
        if not pd.isna(row.target_epoch):
            e = int(row.target_epoch)
            ax.scatter([e], [accs[e - 1]], marker="*", s=180, color=line.get_color(), edgecolors="black",
                       linewidths=0.6, zorder=4)
    if picked.empty:
        _empty(ax, "no trained trial yet")
    else:
        ax.scatter([], [], marker="*", s=120, color="white", edgecolors="black", label="first epoch at the target")
    _target_line(ax, target)
    if max_epochs:
        ax.axvline(max_epochs, color="#444444", linestyle=":", linewidth=1.4, label=f"epoch budget ({max_epochs})")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, longest + 0.5)
    ax.set_ylim(lo, hi)
    _percent_axis(ax.yaxis)
    ax.set_xlabel("epoch")
    below = any(v < lo for c in curves.values() for v in c)
    ax.set_ylabel("validation accuracy (%)" + (", zoomed: early epochs run below" if below else ""))
    ax.grid(alpha=0.3)
    _legend(ax)
    fig.savefig(path)
    return path


def history(study: optuna.Study, df: pd.DataFrame, path: Path) -> Path:
    """Final validation accuracy of each trial in the order sampled, the best so far, and the untrained ones."""
    target, _, _ = _limits(study)
    trained = _trained(df).sort_values("trial")
    fig, ax, strip = _figure(strip=True, rows=df[~df.trial.isin(trained.trial)].status.nunique())
    _titles(fig, ax, study, "optimisation history")
    lo, hi = _zoom(trained.val_acc.tolist(), target)
    if trained.empty:
        _empty(ax, "no trained trial yet")
    else:
        _by_status(ax, trained.trial, trained.val_acc, trained.status, lo, hi)
        last = float(df.trial.max())
        ax.step(list(trained.trial.astype(float)) + [last], list(trained.val_acc.cummax()) + [trained.val_acc.max()],
                where="post", color="black", linewidth=1.3, alpha=0.7, label="best so far")
    _target_line(ax, target)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("final validation accuracy of the trial (%)")
    _percent_axis(ax.yaxis)
    ax.grid(alpha=0.3)
    untrained = df[~df.trial.isin(trained.trial)]
    names = {"rejected": "rejected before\ntraining", "duplicate": "duplicate net\n(not retrained)"}
    kinds = {names.get(status, status): untrained[untrained.status == status].trial.astype(float)
             for status in ["rejected", "duplicate"] + sorted(set(untrained.status) - set(names))}
    _strip(strip, kinds, ("every trial was trained" if len(df) else "no trials yet") if untrained.empty else None)
    from matplotlib.ticker import MaxNLocator
    strip.xaxis.set_major_locator(MaxNLocator(integer=True))
    if df.empty:
        strip.set_xticks([])
    strip.set_xlabel("trial number (order sampled)")
    _legend(ax)
    fig.savefig(path)
    return path
