"""Confirmation: retrain the chosen designs on every training image, over several seeds, and test once.

A search chooses on a validation split; the test set is read only here, once per run, after the
last epoch of the task's fixed schedule. A design meets the target only when every seed does
(:mod:`nas.trials`), so confirmation is sequential: designs are queued cheapest first, a design's
remaining seeds are skipped (and a run of it in progress stops) at its first seed below the
target, and once a design meets the target the runs of every dearer design are skipped (cheaper
ones still run: one of them may be the best).

Each run (one design, one seed) is a trial of the companion study ``<study>.confirm`` in the same
storage, queued before anyone trains it. Workers take queued runs one at a time (Optuna hands a
queued trial to exactly one worker), a run whose worker dies is queued again by the heartbeat
machinery of :mod:`nas.study`, a run stopped by Ctrl-C is queued again at once, and running the
command again resumes what is left. The companion keeps test accuracies out of the search study,
whose sampler must never learn from them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from . import study as studies
from . import trials
from .build import build
from .files import save_torch
from .schedule import train_config
from .spec import Spec
from .space import fingerprint
from .workers import Stop, worker_name

LIVE_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


@dataclass
class Confirmed:
    """What a confirmation pass leaves: every design's seeds so far, the ones this pass asked for,
    and the best design."""

    target: float
    cost: str
    epochs: int
    images: int
    found: dict[str, trials.Confirmation] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)  # fingerprints, cheapest first
    best: trials.Confirmation | None = None
    interrupted: bool = False
    trained: int = 0  # runs this worker trained

    def _beaten(self, c: trials.Confirmation) -> bool:
        return (self.best is not None and c.figures.get(self.cost) is not None
                and self.best.figures.get(self.cost) is not None and self.best.figures[self.cost] < c.figures[self.cost])

    def lines(self) -> list[str]:
        shown = self.asked or sorted(self.found, key=lambda fp: self.found[fp].figures.get(self.cost) or 0)
        if not shown:
            return ["nothing to confirm: no trained design on the front yet"]
        out = [f"confirmation: {self.epochs} epochs on all {self.images:,} training images, "
               f"tested once after the last epoch:"]
        failed = 0
        for fp in shown:
            c = self.found.get(fp)
            if c is None:
                out.append(f"  {fp}: no seed finished yet")
                continue
            failed += c.fails(self.target)
            out.append(f"  {c.line(self.target, self.cost)}  -> {c.verdict(self.target, self._beaten(c))}")
        out.append(f"{failed} of {len(shown)} design{'s' if len(shown) > 1 else ''} failed confirmation")
        if self.best is None:
            out.append(f"best: no confirmed design meets the target {self.target:.2%} yet")
        else:
            out.append(f"best: {self.best.line(self.target, self.cost)}")
        return out


def companion(study: optuna.Study, train_limit: int | None = None) -> optuna.Study:
    """The study that holds ``study``'s confirmation runs, in the same storage."""
    return optuna.create_study(study_name=trials.confirm_study_name(study.study_name, train_limit),
                               storage=study._storage, direction="maximize", load_if_exists=True)


def existing(study: optuna.Study) -> optuna.Study | None:
    """The companion study if it exists (reports never create one)."""
    name = trials.confirm_study_name(study.study_name)
    names = {s.study_name for s in optuna.get_all_study_summaries(study._storage, include_best_trial=False)}
    return optuna.load_study(study_name=name, storage=study._storage) if name in names else None


def found(study: optuna.Study) -> tuple[dict[str, trials.Confirmation], trials.Confirmation | None]:
    """Every design's confirmation so far, on the study's own schedule and seed count, and the best
    of them (:func:`nas.trials.best`): what report, export and ``nas.best`` show."""
    task = trials.StudyTask.of(study)
    done = trials.confirmations(existing(study), task.seeds, task.confirm_epochs)
    return done, trials.best(done, task.target if task.target is not None else 1.0, task.cost)


def queue(runs: optuna.Study, spec: dict, source: str, figures: dict, seeds: int, epochs: int,
          every_seed: bool = False, lr: float | None = None) -> str:
    """Queue the runs of one design (on a schedule of ``epochs``) that are not queued, running, done or
    skipped yet; return its fingerprint. ``every_seed``: run all seeds whatever the first ones give
    (a documented design reproduced for its figures), where a searched design stops at its first
    seed below the target. ``lr``: the peak learning rate its search trial settled on."""
    fp = fingerprint(Spec.from_dict(spec))
    have = {r.seed for t in runs.get_trials(deepcopy=False) for r in [trials.Run.of(t)]
            if r.same_run(fp, r.seed, epochs) and (t.state in LIVE_STATES or r.status == "skipped")
            and r.status != "duplicate"}
    for seed in range(seeds):
        if seed not in have:
            runs.enqueue_trial({}, user_attrs=trials.checked({
                "kind": "confirm", "fingerprint": fp, "seed": seed, "epochs": epochs, "spec": spec, "source": source,
                **figures, **({"every_seed": True} if every_seed else {}), **({"lr": lr} if lr is not None else {})}))
    return fp


def _source(t: trials.Record) -> str:
    return f"trial {t.number}" + (f" ({t.design})" if t.design else "")


def _figures(attrs: dict) -> dict:
    return {k: list(attrs[k]) if isinstance(attrs[k], tuple) else attrs[k] for k in trials.FIGURES
            if attrs.get(k) is not None}


def confirm(cfg, study: optuna.Study, data, train_fn: Callable | None = None, on_run: Callable | None = None,
            designs: tuple[str, ...] = (), signals: bool = True) -> Confirmed:
    """Queue and train the confirmation runs of the study's chosen candidates (``cfg.confirm`` of
    them) and of the documented ``designs``; return every design's figures so far."""
    from .analysis import analyse
    from . import registry

    task = cfg.space.task
    seeds, epochs = cfg.seeds or task.seeds, train_config(cfg, confirm_seed=0).epochs
    runs = companion(study, cfg.train_limit)
    if not cfg.train_limit and study.user_attrs.get("confirm_epochs") != epochs:
        trials.write(study, confirm_epochs=epochs)  # reports and export count runs of this schedule only
    planned: dict[str, tuple[str, dict]] = {}  # fingerprint -> (source, figures), cheapest first
    for t in map(trials.Record.of, trials.to_confirm(study, task.target, task.cost, cfg.confirm)):
        figures = _figures({k: getattr(t, k) for k in trials.FIGURES})
        planned[queue(runs, t.spec, _source(t), figures, seeds, epochs, lr=t.lr)] = (_source(t), figures)
    for design in designs:
        a = analyse(registry.load_design(design))
        data.check_fits(a.spec.input, a.out_shape, f"design {design}")
        failures = [r.name for r in task.constraints.failures(a)]
        figures = _figures({**a.figures(), "failures": failures})
        planned[queue(runs, a.spec.to_dict(), design, figures, seeds, epochs, every_seed=True)] = (design, figures)
    asked = list(planned)
    data = data.subset(train=cfg.train_limit, seed=cfg.seed) if cfg.train_limit else data
    out = Confirmed(task.target, task.cost, epochs, len(data.y_train), asked=asked)
    with Stop(signals, cfg.quiet) as stop:
        try:
            out.trained = _work(cfg, runs, data, train_fn, stop, on_run, epochs)
        except KeyboardInterrupt:  # from Python: the run in training was queued again on the way out
            if signals:
                raise
            stop.requested = True
    out.interrupted = stop.requested
    out.found = trials.confirmations(runs, seeds, epochs)
    for fp, (source, figures) in planned.items():  # a design all of whose runs were skipped
        out.found.setdefault(fp, trials.Confirmation(fp, source, figures, wanted=seeds, epochs=epochs))
    out.best = trials.best(out.found, task.target, task.cost)
    return out


def _work(cfg, runs: optuna.Study, data, train_fn, stop: Stop, on_run, epochs: int) -> int:
    """Take queued runs until none is left (waiting for other workers' runs, which may need retrying)."""
    poll = min(5.0, studies.heartbeat_settings()[0])
    done = 0
    while not stop.requested:
        studies.fail_stale(runs)  # a dead worker's run is queued again
        trial_id = _claim(cfg, runs, epochs)
        if trial_id is None:
            if runs.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) and studies.heartbeat_enabled(runs):
                time.sleep(poll)
                continue
            break
        trial = optuna.Trial(runs, trial_id)
        with get_heartbeat_thread(trial_id, runs._storage):
            done += _run(cfg, runs, trial, data, train_fn, stop)
        if on_run:
            on_run(runs.trials[trial.number])
    return done


def _claim(cfg, runs: optuna.Study, epochs: int) -> int | None:
    """Take the next queued run, or None. The cheapest design's runs go first: its seeds alone can make
    every dearer design needless. Within a design, a run cut short (it resumes from its checkpoint)
    goes before a fresh one. Claimed as Optuna claims its own queue: of two workers, one wins."""
    cost = cfg.space.task.cost

    def order(t: optuna.trial.FrozenTrial):
        r = trials.Run.of(t)
        size = r.figures.get(cost)
        cut = _checkpoint(cfg, r.fingerprint, r.seed, r.epochs or epochs).is_file()
        return (math.inf if size is None else size, not cut, r.seed, t.number)

    for t in sorted(runs.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=order):
        try:
            if runs._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it and finished it meanwhile
    return None


def _run(cfg, runs: optuna.Study, trial: optuna.Trial, data, train_fn, stop: Stop) -> int:
    """Train one design with one seed on every training image; test once. Returns 1 if it trained."""
    from .train import train

    a = trials.Run.of(trial)
    trials.write(trial, worker=worker_name())
    config = train_config(cfg, confirm_seed=a.seed, lr=a.lr)  # the recipe its search trial used
    if _taken(runs, trial, a.fingerprint, a.seed, config.epochs):
        trials.write(trial, status="duplicate")
        runs.tell(trial, state=TrialState.PRUNED)
        return 0
    task, seeds = cfg.space.task, cfg.seeds or cfg.space.task.seeds
    why = _needless(runs, a, task.target, task.cost, seeds, config.epochs)
    if why:
        trials.write(trial, status="skipped", message=why)
        runs.tell(trial, state=TrialState.PRUNED)
        return 0
    model = build(Spec.from_dict(a.spec))

    decided: list[str] = []  # why this run became needless while it trained

    def on_epoch(epoch: int, acc) -> bool:  # another worker's seed of this design may have failed meanwhile
        if not stop.requested:
            decided[:] = [_needless(runs, a, task.target, task.cost, seeds, config.epochs)]
        return stop.requested or bool(decided and decided[0])

    checkpoint = _checkpoint(cfg, a.fingerprint, a.seed, config.epochs)
    try:
        result = (train_fn or train)(model, data, config, on_epoch=on_epoch, checkpoint=checkpoint)
    except BaseException:  # a second Ctrl-C, or an error: the run is queued again, and the worker stops
        _requeue(runs, trial, quietly=True)
        raise
    if stop.requested and result.status == "stopped":
        _requeue(runs, trial)
        return 0
    checkpoint.unlink(missing_ok=True)  # an interrupted run, requeued above, resumes from it
    if result.status == "stopped":  # decided without this run
        trials.write(trial, status="skipped", message=decided[0])
        runs.tell(trial, state=TrialState.PRUNED)
        return 0
    accuracy = result.accuracies[-1] if result.status != "nan" and result.accuracies else 0.0
    trials.write(trial, accuracy=accuracy, epochs=config.epochs, seconds=round(result.seconds, 2))
    if result.status != "nan":  # a diverged net's weights are not kept
        trials.write(trial, weights=_save(cfg, a.fingerprint, a.seed, config.epochs, model))
    trials.write(trial, status="nan" if result.status == "nan" else "confirmed")
    if result.status == "nan":
        trials.write(trial, message=result.message)
    runs.tell(trial, accuracy)
    return 1


def _needless(runs: optuna.Study, run: trials.Run, target: float, cost: str, seeds: int, epochs: int) -> str:
    """Why ``run`` need not train, or '': a seed of its design already fell short of the target, or
    a cheaper design already meets it (so this one cannot be the best)."""
    if run.every_seed:
        return ""
    found = trials.confirmations(runs, seeds, epochs)
    mine = found.get(run.fingerprint)
    if mine is not None and mine.fails(target):
        return "a seed of this design fell short of the target"
    size = run.figures.get(cost)
    cheaper = [c.figures[cost] for c in found.values() if c.meets(target) and c.figures.get(cost) is not None
               and size is not None and c.figures[cost] < size]
    return f"a design of {min(cheaper):,} {cost} meets the target" if cheaper else ""


def _taken(runs: optuna.Study, trial: optuna.Trial, fp: str, seed: int, epochs: int) -> bool:
    """Another worker has done this run, or is doing it and took it first (a run queued twice)."""
    for t in runs.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
        r = trials.Run.of(t)
        if t.number == trial.number or not r.same_run(fp, seed, epochs) or r.status == "duplicate":
            continue
        if t.state == TrialState.COMPLETE or t.number < trial.number:
            return True
    return False


def _requeue(runs: optuna.Study, trial: optuna.Trial, quietly: bool = False) -> None:
    """Queue the run again and fail this trial. ``quietly``: on the way out with another error, which
    matters more than a failure here (a lost database, say: the heartbeat then retries the run)."""
    try:
        trials.write(trial, status="interrupted")
        runs.enqueue_trial({}, user_attrs=trials.carried(trial.user_attrs))
        runs.tell(trial, state=TrialState.FAIL)
    except Exception:
        if not quietly:
            raise


def _checkpoint(cfg, fp: str, seed: int, epochs: int) -> Path:
    """Where a run keeps its state between epochs, so a killed one resumes (nas.train's ``checkpoint``)."""
    return studies.study_dir(cfg.name, cfg.results) / "checkpoints" / f"confirm_{fp}_e{epochs}_seed{seed}.pt"


def _save(cfg, fp: str, seed: int, epochs: int, model: torch.nn.Module) -> str:
    folder = studies.study_dir(cfg.name, cfg.results) / "confirm"
    # a longer schedule's runs keep the shorter one's weights
    path = save_torch(folder / f"{fp}_e{epochs}_seed{seed}.pt", model.state_dict(), "confirmation weights",
                      "free some space or pass a writable --results, and rerun the same command (finished runs are kept)")
    return str(path.relative_to(folder.parent))
