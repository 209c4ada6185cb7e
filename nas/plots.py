"""The pictures of a study: accuracy against parameters, learning curves and the optimisation history.

Each picture must explain itself: the study and its task in the title, units on the axes, the
target and the constraint limits drawn in. Accuracy axes are zoomed near the target (a pruned
30% net would squash the interesting range), and points below the axis sit on its bottom edge
as ▼ so none disappears.

Every picture is drawn from the table of :func:`nas.report.trials_frame`; :func:`nas.report.write`
calls :func:`write` here, so ``nas report`` writes the PNGs beside ``trials.csv``.
"""
from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd

from . import trials
from .files import write_atomic

LEARNING_CURVES = 5  # trials drawn (the front first), besides the documented designs

# Marker shapes differ as well as colours, so the plots survive greyscale printing and colour blindness.
STYLE = {
    "target_met": ("#2ca02c", "o", "validation reached the target"),
    "complete": ("#1f77b4", "s", "trained, validation below the target"),
    "stopped": ("#7f7f7f", "X", "stopped early (forecast short of the target)"),
    "stuck": ("#8c564b", "v", "at chance at every learning rate tried"),
    "pruned": ("#bcbd22", "x", "pruned (an older nas's halving)"),
    "nan": ("#d62728", "D", "diverged (NaN loss)"),
    "interrupted": ("#ff7f0e", "P", "interrupted"),
}
OTHER_STYLE = ("#9467bd", "d", "other")


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_atomic(path, buf.getvalue(), f"the plot {Path(path).name}", "free some space or pass a writable --results")


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


@dataclass
class Table:
    """What the pictures draw, as :mod:`nas.report` makes it: a row per trial (``report.trials_frame``),
    the rows with a learning curve of their own, and the line that states the study's task."""

    rows: pd.DataFrame
    trained: pd.DataFrame
    task: str


def _titles(fig, ax, study: optuna.Study, table: Table, what: str) -> None:
    import textwrap

    fig.suptitle(f"{study.study_name}: {what}", fontsize=14, fontweight="bold")
    task = table.task.split(": ", 1)[-1] if ": " in table.task else ""
    if task:
        ax.set_title(textwrap.fill(task, 120), fontsize=9, color="#444444")


def _limits(study: optuna.Study) -> tuple[float | None, int | None, int | None]:
    task = trials.StudyTask.of(study)
    return task.target, task.constraints.get("max_params"), task.max_epochs


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


def accuracy_vs_params(study: optuna.Study, table: Table, path: Path) -> Path:
    """Validation accuracy of each trained trial against its parameter count, the validation front,
    and each confirmed design's test accuracy over its seeds (mean, with min..max as a bar)."""
    target, max_params, _ = _limits(study)
    df, trained = table.rows, table.trained
    rejected = df[(df.status == "rejected") & df.params.notna()]
    confirmed = df[df.test_mean.notna()].drop_duplicates("params")
    fig, ax, strip = _figure(strip=True)
    _titles(fig, ax, study, table, "accuracy against parameters: validation (search) and test (confirmation)")
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
    return _save(fig, path)


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


def learning_curves(study: optuna.Study, table: Table, path: Path) -> Path:
    """Validation accuracy per epoch of the front's best trials and of every trained documented design."""
    target, _, max_epochs = _limits(study)
    trained = table.trained
    ranked = trained.sort_values(["on_front", "val_acc"], ascending=[False, False])
    picked = pd.concat([ranked.head(LEARNING_CURVES), trained[trained.design != ""]]).drop_duplicates("trial")
    curves = {t.number: list(trials.Record.of(t).accuracies) for t in study.get_trials(deepcopy=False)
              if t.number in set(picked.trial)}
    fig, ax, _ = _figure(strip=False)
    designs = " and documented designs" if (picked.design != "").any() else ""
    _titles(fig, ax, study, table, f"validation accuracy per epoch, {min(len(trained), LEARNING_CURVES)} trials (the front first){designs}")
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
    return _save(fig, path)


def history(study: optuna.Study, table: Table, path: Path) -> Path:
    """Final validation accuracy of each trial in the order sampled, the best so far, and the untrained ones."""
    target, _, _ = _limits(study)
    df, trained = table.rows, table.trained.sort_values("trial")
    fig, ax, strip = _figure(strip=True, rows=df[~df.trial.isin(trained.trial)].status.nunique())
    _titles(fig, ax, study, table, "optimisation history")
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
    return _save(fig, path)


def write(study: optuna.Study, table: Table, out_dir: Path) -> dict[str, Path]:
    """Draw every picture of the study as a PNG in ``out_dir``; returns the paths by picture name."""
    paths = {}
    for name, draw in (("accuracy_vs_params", accuracy_vs_params), ("learning_curves", learning_curves),
                       ("history", history)):
        paths[name] = Path(out_dir) / f"{name}.png"
        draw(study, table, paths[name])
    return paths
