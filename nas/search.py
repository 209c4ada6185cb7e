"""The constraint-first search: Optuna proposes a point, the analysis checks it, only valid ones train.

The search weighs validation accuracy against the task's cost (``params``, ``macs`` or ``latency``)
in a two-objective Optuna study. Rejected candidates are stored with a positive constraint value
(``trial.set_constraint``), which the sampler reads to learn where the feasible region is; they cost
a few milliseconds and no training. The sampler (:mod:`nas.sampler`) proposes only nets not tried
yet, and once a net reaches the target on validation, only cheaper ones.

Trained candidates learn on the training images less a validation split held out with a seed
stored in the study (every worker holds out the same one), on the very schedule that confirms
(:mod:`nas.schedule`). They are scored on the validation split at rungs of training images seen and
after every epoch, and stopped only when even an optimistic forecast of their own end point misses
the target (:mod:`nas.forecast`); a stopped candidate's forecast is its value, and its shortfall a
constraint (``short``), so the sampler learns from it and proposes nets that may reach the target. The test set is never read here: :mod:`nas.confirm` reads it, once per seed, for the
chosen designs.

``--trials N`` counts trained candidates across the whole study, so running the same command again
resumes a study (or extends it with a larger N), and several workers share one count. The search
also ends at its time budget (``--timeout``, else the task's ``search_minutes``) and once every
distinct feasible net under the cost cap has been tried.

Several workers (processes, machines; ``nas search --jobs N`` starts N on this machine, see
:mod:`nas.jobs`) running the same command share the study through its storage:
trial k's random draws depend only on the seed and k, so workers sample different candidates; a
net that another worker is training now is waited for, not trained twice; a dead worker's trial is
queued again (see :mod:`nas.study`); and each worker stops once the study holds N trained
candidates and none is still training.
"""
from __future__ import annotations

import itertools
import math
import os
import statistics
import sys
import time
from datetime import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import TrialState

from . import registry
from . import study as studies
from . import trials
from .analysis import analyse
from .build import build
from .confirm import Confirmed
from .confirm import confirm as confirm_runs
from .errors import NasError
from .feasibility import check, feasibility, require_feasible
from .files import save_torch
from .forecast import Forecast, at_chance, rungs, within_noise
from .sampler import Catalogue, Sampler
from .schedule import rates, train_config
from .space import Space, fingerprint
from .train import images_per_epoch
from .train import train as train_run
from .trials import TRAINED_STATES, counts
from .workers import Interrupted, Stop, worker_name

DIRECTIONS = ("maximize", "minimize")  # validation accuracy, cost


@dataclass
class SearchConfig:
    space: Space
    study_name: str | None = None
    storage: str | None = None
    trials: int | None = None  # None: until the time budget ends or the space is covered (20 without a budget)
    timeout: float | None = None  # seconds; None: the task's search_minutes
    seed: int = 0
    finish: bool = False  # train the whole schedule even after the target is met
    enqueue: tuple[str, ...] = ()
    results: Path = field(default_factory=lambda: studies.RESULTS)
    data_dir: str | None = None
    device: str = "auto"
    train_limit: int | None = None  # train on a random slice, for quick looks; None = all
    train_options: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields, over the space's `train:`
    confirm: int = 3  # designs to confirm at the end (cheapest first); 0: none
    seeds: int | None = None  # confirmation seeds [default: the task's]
    halving: int = 3  # rungs of images seen at budget / halving**k, where hopeless candidates stop (0: epochs only)
    quiet: bool = False  # a worker of `--jobs N`: the coordinator prints warnings and the summary
    started: float | None = None  # time.perf_counter() when the command began: --timeout counts from it

    @property
    def name(self) -> str:
        return self.study_name or self.space.name

    @property
    def budget(self) -> float | None:
        """The search's wall-clock budget in seconds: ``timeout``, else the task's ``search_minutes``."""
        minutes = self.space.task.search_minutes
        return self.timeout if self.timeout is not None else minutes * 60 if minutes else None

    def deadline(self) -> float | None:
        """The ``time.perf_counter()`` reading at which the budget runs out, counted from ``started``
        (from now when unset); None without a time budget. Every countdown reads this."""
        return (self.started or time.perf_counter()) + self.budget if self.budget else None

    @property
    def wanted(self) -> int | None:
        """Trained candidates to stop at: ``trials``, else none when a time budget bounds the search, else 20."""
        return self.trials if self.trials is not None else None if self.budget else 20


@dataclass
class Outcome:
    study: optuna.Study
    trained: int = 0
    rejected: int = 0
    dominated: int = 0
    stopped: int = 0
    diverged: int = 0
    stuck: int = 0  # at chance at every learning rate tried
    retried: int = 0  # trained again at a lower learning rate
    duplicates: int = 0
    failed: int = 0
    reached: int = 0
    interrupted: bool = False
    covered: bool = False  # every distinct feasible net under the cost cap was tried
    seconds: float = 0.0
    check_ms: list[float] = field(default_factory=list)
    front: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    confirmed: Confirmed | None = None  # when the search went on to confirm
    results: Path = field(default_factory=lambda: studies.RESULTS)  # where its weights and specs are


def open_study(cfg: SearchConfig) -> optuna.Study:
    """Create or resume the study; its attributes record the task and the validation split."""
    space, task = cfg.space, cfg.space.task
    try:
        catalogue = Catalogue(space, task.cost, seed=cfg.seed)
        sampler = Sampler(seed=cfg.seed, catalogue=catalogue, cap=lambda s: trials.cost_cap(s, task.cost),
                          n_startup_trials=8)
        study = optuna.create_study(study_name=cfg.name, storage=studies.storage(cfg.storage),
                                    directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True)
    except ValueError as err:  # an existing study with other directions
        raise NasError(f"study {cfg.name!r} cannot be resumed by this version of nas ({err}); pass another --study") from None
    if len(study.directions) != len(DIRECTIONS):
        raise NasError(f"study {cfg.name!r} was made by an older nas that chose on one objective; "
                       "pass another --study to start a new one")
    made = trials.StudyTask.of(study)
    if (made.space or space.name) != space.name:
        raise NasError(f"study {cfg.name!r} was made for space {made.space!r}, not {space.name!r}; "
                       "pass another --study")
    schedule = train_config(cfg).epochs
    if (made.epochs or schedule) != schedule:
        raise NasError(f"study {cfg.name!r} compared its candidates on {made.epochs} epochs, and "
                       f"{space.source} now trains {schedule}; pass another --study to start a new one")
    frozen = check_frozen(study, space, epochs=schedule)
    wanted = {**frozen, "seeds": task.seeds}
    wanted.setdefault("space_file", study.user_attrs.get("space_file", str(space.source)))
    if "split" not in study.user_attrs:  # drawn once: every worker and every resume holds out the same images
        wanted["split"] = {"validation": task.validation, "seed": cfg.seed}
    for key, value in wanted.items():
        if study.user_attrs.get(key) != value:
            trials.write(study, **{key: value})
    return study


def check_frozen(study: optuna.Study, space: Space, **more) -> dict[str, Any]:
    """The task as the study froze it when it was made, checked against ``space`` as loaded now.

    Report, export and confirmation read the task from the study, so an edited space file cannot
    change the target or the limits of trials already judged. The budget and the seed count may
    change between runs; they are not part of it. Returns the frozen fields, for a new study to record.
    """
    task = space.task
    frozen = {"space": space.name, "target": task.target, "dataset": task.dataset, "max_epochs": task.max_epochs,
              "constraints": task.constraints.to_dict(), "cost": task.cost, "space_digest": space.digest(), **more}
    changed = [k for k, v in frozen.items() if study.user_attrs.get(k, v) != v]
    if changed:
        what = ", ".join("nets (choices, blocks, input or train settings)" if k == "space_digest" else k
                         for k in changed)
        raise NasError(f"study {study.study_name!r} was made from another version of {space.source}: its {what} "
                       "changed since; restore the file, or pass another --study to start a new study")
    return frozen


def validation_data(study: optuna.Study, data, train_limit: int | None = None, seed: int = 0):
    """What search trials train and evaluate on: the training images less the study's validation split."""
    split = trials.StudyTask.of(study).split
    held = data.held_out(split["validation"], split["seed"])
    return held.subset(train=train_limit, seed=seed) if train_limit else held


def enqueue(study: optuna.Study, space: Space, design_or_file: str) -> dict[str, Any]:
    """Queue a documented design (a point of the space) or a params file (its choices) as a fixed trial.

    Strict: an unknown choice or a value outside the space is an error, and a design's spec must be
    the very net its document describes.
    """
    choices, design = point(space, design_or_file)
    study.enqueue_trial(space.encode(choices), user_attrs=trials.checked({"design": design}), skip_if_exists=True)
    return choices


def point(space: Space, design_or_file: str) -> tuple[dict[str, Any], str]:
    """The choices and name of a documented design or choices file, checked strictly (see :func:`enqueue`)."""
    if Path(design_or_file).suffix in (".yaml", ".yml", ".json"):
        choices, design = _choices_file(Path(design_or_file), space), Path(design_or_file).stem
    else:
        choices, design = space.point_of(design_or_file), design_or_file
    choices = space.check_params(choices)
    if design in registry.designs():
        expected, got = fingerprint(registry.load_design(design)), fingerprint(space.spec(choices))
        if expected != got:
            raise NasError(f"points.{design} in {space.source} does not give the net of design {design}; "
                           "fix the point's values")
    return choices, design


def _choices_file(path: Path, space: Space) -> dict[str, Any]:
    from .yamlfile import read_yaml

    choices = read_yaml(path, "params file")
    if not isinstance(choices, dict):
        raise NasError(f"{path}: a params file maps each choice of {space.name} to a value")
    return choices


class Objective:
    """One trial: propose, check, (maybe) train, record. Returns (validation accuracy, cost)."""

    def __init__(self, cfg: SearchConfig, data, stop: Stop, train_fn: Callable | None = None):
        self.cfg, self.data, self.stop = cfg, data, stop
        self.train_fn = train_fn or train_run
        self.weights_dir = studies.study_dir(cfg.name, cfg.results) / "weights"
        self.checkpoints = self.weights_dir.parent / "checkpoints"
        self.worker = worker_name()
        self.poll = min(5.0, studies.heartbeat_settings()[0])
        self.config = train_config(cfg)
        self.forecast = Forecast(within_noise(cfg.space.task.target, len(data.y_eval)))
        n = len(data.y_train)
        self.images_per_epoch = images_per_epoch(n, self.config.batch_size)
        self.rungs = rungs(self.config.epochs, self.images_per_epoch, cfg.halving)

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        space, cost = self.cfg.space, self.cfg.space.task.cost
        # Optuna takes plain values only: list-valued choices are proposed by their labels ("8-16-32")
        choices = space.decode({k: trial.suggest_categorical(k, space.labels(k)) for k in space.choices})
        start = time.perf_counter()
        cand = check(space, choices)
        trials.write(trial, check_ms=round((time.perf_counter() - start) * 1000, 3), failures=list(cand.failures))
        figures = cand.analysis.figures() if cand.analysis is not None else {}
        if cand.analysis is not None:
            trials.write(trial, **figures, spec=cand.analysis.spec.to_dict())
        size = figures.get(cost)
        fixed = bool(trials.Record.of(trial).design)  # a documented design trains whatever it costs
        cap = None if fixed or not cand.feasible else trials.cost_cap(trial.study, cost)
        over = cap is not None and size is not None and size >= cap
        trial.set_constraint("failures", float(len(cand.failures) + over))  # > 0: the sampler learns to avoid it
        if not cand.feasible or over:
            trials.write(trial, status="rejected" if not cand.feasible else "dominated")
            return 0.0, float(size) if size is not None else math.inf
        spec = cand.analysis.spec
        fp = fingerprint(spec)
        trials.write(trial, worker=self.worker, fingerprint=fp)
        earlier = self._same_net(trial, fp)
        if earlier is not None:  # another worker proposed the same net at the same moment
            trials.write(trial, status="duplicate", duplicate_of=earlier.number)
            if earlier.state == TrialState.PRUNED:
                raise optuna.TrialPruned()
            return tuple(earlier.values)
        if cost == "latency":
            from .train import latency
            size = latency(build(spec, cand.analysis), spec.input, self.config.device)
            trials.write(trial, latency=size)
        return self._train(trial, cand.analysis, float(size), fixed, fp)

    def _same_net(self, trial: optuna.Trial, fp: str):
        """A trained trial of the same net; if another worker is training it now, wait for its result.

        A worker waits for a trial of the same net that is training, or that is still being checked
        and has a lower number (so two workers at the same point never wait for each other). Only
        with heartbeats: without them a dead worker's trial would be waited for forever.
        """
        study = trial.study
        while True:
            same = [(t, trials.Record.of(t)) for t in study.get_trials(deepcopy=False)
                    if t.number != trial.number and t.user_attrs.get("fingerprint") == fp]  # cheap filter first
            for t, r in same:
                if t.state in TRAINED_STATES and r.trained:
                    return t
            busy = [t for t, r in same if t.state == TrialState.RUNNING and (r.trained or t.number < trial.number)]
            if not busy or not studies.heartbeat_enabled(study):
                return None
            if self.stop.requested:
                trials.write(trial, status="interrupted")  # the other worker still trains the net
                raise Interrupted()
            time.sleep(self.poll)
            studies.fail_stale(study)  # a dead worker's trial fails here, and this worker trains the net

    def _train(self, trial: optuna.Trial, analysis, cost: float, fixed: bool, fp: str) -> tuple[float, float]:
        checkpoint = self.checkpoints / f"{fp}.pt"  # a killed or interrupted run of this net resumes from it
        trials.write(trial, trained=True, threads=torch.get_num_threads())
        forecast = self.forecast.calibrated(trials.full_curves(trial.study))
        tries: list[dict] = []  # each peak rate tried, and how its run ended: kept side by side
        for lr in rates(self.config):  # a net stuck at chance, or diverging, trains again at a lower rate
            trials.write(trial, lr=lr)
            watch = _Watch(trial, forecast, self.config.epochs, self.images_per_epoch, self.data.num_classes,
                           self.config.warmup, fixed, self.stop)
            torch.manual_seed(self.cfg.seed)
            model = build(analysis.spec, analysis)  # the analysis the check just made: no second pass
            result = self._fit(trial, model, watch, replace(self.config, lr=lr), checkpoint)
            tries.append({"lr": lr, "outcome": "nan" if result.status == "nan" else watch.stuck or "learned",
                          "accuracy": watch.curve[-1][1] if watch.curve else None,
                          "at": watch.curve[-1][0] if watch.curve else None})
            trials.write(trial, lr_tries=tries)
            if tries[-1]["outcome"] == "learned" or self.stop.requested:
                break
        tried = [t["lr"] for t in tries]
        reached = result.target_epoch is not None
        interrupted = self.stop.requested and watch.stopped is None and not (reached and not self.cfg.finish)
        if not interrupted:  # the net's run has ended for good; an interrupted one resumes from it
            checkpoint.unlink(missing_ok=True)
        trials.write(trial, accuracies=list(result.accuracies), target_epoch=result.target_epoch)
        trials.write(trial, seconds=round(result.seconds, 2), reached_target=reached)
        if result.status != "nan":  # a diverged net's weights are not kept
            trials.write(trial, weights=self._save(trial.number, model))
        if result.status == "nan":
            trials.write(trial, status="nan", message=result.message + _rates_note(tried))
            raise optuna.TrialPruned(result.message)
        if interrupted:
            trials.write(trial, status="interrupted")
            self._requeue(trial)  # retrained on resume
            raise Interrupted()
        if watch.stuck:
            value = watch.curve[-1][1]
            trials.write(trial, status="stuck", message=f"at chance ({value:.4f}){_rates_note(tried)}")
        elif watch.stopped is not None:
            where, value = watch.stopped[0], round(watch.stopped[1], 6)
            trials.write(trial, status="stopped", stopped_at=where, predicted=value)
        else:
            trials.write(trial, status="target_met" if reached else "complete")
            value = result.accuracies[-1] if result.accuracies else 0.0
        # How far the (forecast) end falls short of what may still mean the target: > 0 makes TPE count
        # the net with the infeasible ones, ranked by the shortfall, so it proposes nets that can reach
        # the target, the cheapest first, rather than the cheapest nets, which the cost objective favours.
        trial.set_constraint("short", max(0.0, self.forecast.target - value) if not reached else 0.0)
        return value, cost

    def _fit(self, trial: optuna.Trial, model: torch.nn.Module, watch: "_Watch", config, checkpoint: Path):
        rung_args = {"rungs": self.rungs, "on_rung": watch.on_rung} if self.rungs else {}
        try:
            return self.train_fn(model, self.data, config, on_epoch=watch.on_epoch,
                                 checkpoint=checkpoint, **rung_args)
        except KeyboardInterrupt:  # a second Ctrl-C, or SIGTERM: the trial fails, its params are queued again
            trials.write(trial, status="interrupted")
            self._requeue(trial)
            raise

    @staticmethod
    def _requeue(trial: optuna.Trial) -> None:
        trial.study.enqueue_trial(trial.params, user_attrs=trials.carried(trial.user_attrs) or None,
                                  skip_if_exists=False)

    def _save(self, number: int, model: torch.nn.Module) -> str:
        path = save_torch(self.weights_dir / f"trial_{number}.pt", model.state_dict(), f"trial {number}'s weights",
                          "free some space or pass another --results, then run the same command to resume")
        return str(path.relative_to(self.weights_dir.parent))


class _Watch:
    """The trainer's callbacks for one trial: record its curve as it goes (a killed worker keeps it)
    and stop it where even the optimistic forecast of its end misses the target."""

    def __init__(self, trial: optuna.Trial, forecast: Forecast, epochs: int, images_per_epoch: int, classes: int,
                 warmup: float, fixed: bool, stop: Stop):
        self.trial, self.forecast, self.epochs, self.per_epoch = trial, forecast, epochs, images_per_epoch
        self.classes, self.warmup = classes, warmup
        self.fixed, self.stop = fixed, stop  # a documented design trains its whole schedule
        self.started = False  # left chance at some checkpoint
        # "never left chance" (at its peak rate) or "fell back to chance" (dead units): its learning
        # rate, not its size, is at fault, so no forecast judges it
        self.stuck = ""
        self.curve: list[tuple[float, float]] = []
        self.accuracies: list[float] = []
        self.scores: dict[str, float] = {}
        self.stopped: tuple[str, float] | None = None  # (where, forecast final accuracy)

    def on_rung(self, images: int, acc: float) -> bool:
        self.scores[str(images)] = acc
        trials.write(self.trial, rungs=self.scores)
        return self._judge(images / (self.epochs * self.per_epoch), acc, f"{images:,} images")

    def on_epoch(self, epoch: int, acc: float | None) -> bool:
        self.accuracies.append(acc)
        trials.write(self.trial, accuracies=self.accuracies)
        return self.stop.requested or (acc is not None and self._judge(epoch / self.epochs, acc, f"epoch {epoch}"))

    def _judge(self, fraction: float, acc: float, where: str) -> bool:
        self.curve.append((round(fraction, 6), acc))
        trials.write(self.trial, curve=self.curve)
        if at_chance(acc, self.classes) and acc < self.forecast.target:
            if self.started:
                self.stuck = "fell back to chance"
            elif fraction >= self.warmup:  # the rate has reached its peak, and still nothing
                self.stuck = "never left chance"
            return bool(self.stuck)  # while the rate still rises, a net at chance has not started yet
        self.started = True
        if self.fixed or self.forecast.reachable(fraction, acc):
            return False
        self.stopped = (where, self.forecast.expected(fraction, acc))
        return True


def run(cfg: SearchConfig, data=None, train_fn: Callable | None = None, on_trial: Callable | None = None,
        on_run: Callable | None = None, signals: bool = True) -> Outcome:
    """Run (or resume) the search until its budget ends (``cfg.trials`` trained candidates, the time
    budget, or every distinct net under the cost cap tried), then confirm the cheapest candidates
    whose validation accuracy reached the target (``cfg.confirm``).

    Everything the user can get wrong (space, enqueued designs, data, results folder, storage) is
    checked before the study is created or changed. ``signals``: take over Ctrl-C and SIGTERM (a
    command does; :func:`search`, called from Python, leaves the caller's interrupt alone).
    """
    study, data = prepare(cfg, data)
    search_data = validation_data(study, data, cfg.train_limit, cfg.seed)
    threshold = round(within_noise(cfg.space.task.target, len(search_data.y_eval)), 6)
    if study.user_attrs.get("val_threshold") != threshold:  # what confirmation picks its candidates by
        trials.write(study, val_threshold=threshold)
    start = time.perf_counter()
    with Stop(signals, cfg.quiet) as stop:
        try:
            covered = _optimize(cfg, study, Objective(cfg, search_data, stop, train_fn), stop, on_trial)
        except KeyboardInterrupt:  # from Python: the trial in training was queued again on the way out
            if signals:
                raise
            stop.requested, covered = True, False
    outcome = _outcome(study, cfg)
    outcome.interrupted, outcome.covered = stop.requested, covered
    outcome.seconds = time.perf_counter() - start
    if cfg.confirm and not outcome.interrupted:
        outcome.confirmed = confirm_runs(cfg, study, data, train_fn, on_run, signals=signals)
        outcome.interrupted = outcome.confirmed.interrupted
    return outcome


def prepare(cfg: SearchConfig, data=None):
    """Check everything, then create or resume the study and queue the enqueued designs: (study, data)."""
    warning = require_feasible(feasibility(cfg.space, samples=1000, seed=cfg.seed))
    if warning:  # not proof, but the sampler would do no better than the walk: every proposal would fail
        raise NasError(warning.removeprefix("warning: ").replace("; hint: ", "; ")
                       + "; the search would propose only nets that fail: loosen the constraints or change the space")
    fixed = [point(cfg.space, design) for design in cfg.enqueue]
    train_config(cfg)
    studies.writable(studies.study_dir(cfg.name, cfg.results) / "weights")
    studies.check_url(cfg.storage)
    if data is None:
        data = load_data(cfg)
    check_data(cfg.space, data)
    data.validation_count(cfg.space.task.validation)  # before the study is made, so a bad split writes nothing
    study = open_study(cfg)
    trials.write(study, input_norm={"mean": list(data.mean), "std": list(data.std)})  # for exported models
    done = counts(study)
    if (done["trained"] or done["failed"] or _queued(study)) and not cfg.quiet:
        print(f"resuming study {cfg.name}: {done['trained']} trained so far", file=sys.stderr, flush=True)
    for choices, design in fixed:
        study.enqueue_trial(cfg.space.encode(choices), user_attrs=trials.checked({"design": design}), skip_if_exists=True)
    return study, data


def _optimize(cfg: SearchConfig, study: optuna.Study, objective: Objective, stop: Stop,
              on_trial: Callable | None) -> bool:
    """Start trials until the study holds enough trained ones, the budget ends, every net under the
    cost cap was tried, or Ctrl-C or NaNs stop it. Returns whether the space was covered."""
    here = {"rejected": 0, "trained": 0, "nan": 0}
    deadline = cfg.deadline()
    max_rejections = 200 * (cfg.wanted or 100) + 1000
    diverged: list[str] = []
    sampler: Sampler = study.sampler

    def covered() -> bool:
        return sampler.remaining(study) == 0 and not _queued(study)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = trials.Record.of(trial)
        status = record.status
        here["rejected"] += status == "rejected"
        if trials.trained(trial):
            here["trained"] += 1
            here["nan"] += status == "nan"
        if on_trial:
            on_trial(trial)
        if here["nan"] and here["nan"] == here["trained"] >= min(3, cfg.wanted or 3):  # the settings, not the nets
            diverged.append(record.message)
        if (stop.requested or diverged or here["rejected"] >= max_rejections or not _to_start(study, cfg.wanted)
                or covered()):
            study.stop()

    while not (stop.requested or diverged or here["rejected"] >= max_rejections):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            break
        try:
            studies.fail_stale(study)  # a dead worker's trial is queued again before we count
            if covered():
                _drain(study, stop, objective.poll)
                return True
            if _to_start(study, cfg.wanted):
                try:
                    study.optimize(objective, timeout=left, callbacks=[after_trial], catch=(Interrupted,),
                                   gc_after_trial=False)
                except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as err:
                    # Our heartbeat lapsed (a stalled machine) and another worker failed the trial and
                    # queued it again: Optuna can neither update nor tell it. Drop it and go on; the
                    # copy gets trained.
                    if isinstance(err, ValueError) and "Cannot tell a FAIL trial" not in str(err):
                        raise
            elif counts(study)["training"] and studies.heartbeat_enabled(study):
                time.sleep(objective.poll)  # others still train: their results (or their failure) may need us
            else:
                break
        except Exception:
            lost = studies.lost_connection(study)
            if lost is not None:
                raise lost from None
            raise
    if diverged:
        why = diverged[0].split(":")[0] or "the loss became NaN"
        raise NasError(f"every candidate trained in this run diverged ({why}); lower 'lr' under 'train:' in "
                       f"{cfg.space.source} and rerun the same command")
    _drain(study, stop, objective.poll)
    return covered()


def _drain(study: optuna.Study, stop: Stop, poll: float) -> None:
    """Wait until no other worker is training (their results may change what is worth confirming),
    failing dead workers' trials as it waits; only with heartbeats, which tell the dead from the slow."""
    while not stop.requested and studies.heartbeat_enabled(study) and counts(study)["training"]:
        time.sleep(poll)
        studies.fail_stale(study)


def _outcome(study: optuna.Study, cfg: SearchConfig) -> Outcome:
    c = counts(study)
    return Outcome(study, trained=c["trained"], rejected=c["rejected"], dominated=c["dominated"],
                   stopped=c["stopped"], diverged=c["nan"], stuck=c["stuck"],
                   retried=c["retried"], duplicates=c["duplicate"], failed=c["failed"],
                   reached=c["reached"],
                   check_ms=[r.check_ms for r in map(trials.Record.of, study.get_trials(deepcopy=False))
                             if r.check_ms is not None],
                   front=trials.front(study, cfg.space.task.cost), results=cfg.results)


def _to_start(study: optuna.Study, wanted: int | None) -> bool:
    """Whether to start another trial: one is queued, or the trained ones (counting those other
    workers train now, when dead workers are detected) are fewer than ``wanted`` (None: no limit)."""
    if wanted is None or _queued(study):
        return True
    c = counts(study)
    training = c["training"] if studies.heartbeat_enabled(study) else 0
    return c["trained"] + training < wanted


def _queued(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def load_data(cfg: SearchConfig):
    """The task's whole dataset (training and test images) on the training device."""
    from . import data as datasets
    from .train import pick_device
    return datasets.load(cfg.space.task.dataset, data_dir=cfg.data_dir, device=pick_device(cfg.device))


def check_data(space: Space, data) -> None:
    """The dataset must fit the space: image shape and, when the task names it, the number of classes."""
    shape = tuple(data.shape)
    if shape != tuple(space.input):
        raise NasError(f"dataset {space.task.dataset} has images of shape {list(shape)} but space {space.name} "
                       f"takes input {list(space.input)}; fix 'input:' in {space.source} or use the matching dataset")
    classes, found = space.task.constraints.classes, data.num_classes
    if classes is not None and classes != found:
        raise NasError(f"dataset {space.task.dataset} has {found} classes but space {space.name} asks for "
                       f"{classes}; fix 'classes' under task.constraints in {space.source}")
    if classes is None:  # a space shares its head: one net that builds shows whether the outputs fit
        for choices in itertools.islice(space.enumerate(), 64):
            try:
                a = analyse(space.spec(choices))
            except NasError:
                continue
            data.check_fits(space.input, a.out_shape, f"space {space.name}'s head")
            break


def save_spec(study_name: str, trial: optuna.trial.FrozenTrial, results: Path | None = None) -> Path:
    from .spec import Spec
    path = studies.study_dir(study_name, results) / "specs" / f"trial_{trial.number}.yaml"
    spec = Spec.from_dict(trials.Record.of(trial).spec)
    return spec.save(path)


def describe(outcome: Outcome, cfg: SearchConfig) -> list[str]:
    """The end-of-search lines: counts, the validation front, then what confirmation found."""
    ms, task = outcome.check_ms, cfg.space.task
    lines = [f"study {cfg.name}: {outcome.trained} trained ({outcome.stopped} stopped early"
             + (f", {outcome.diverged} diverged" if outcome.diverged else "")
             + (f", {outcome.stuck} at chance at every learning rate" if outcome.stuck else "")
             + (f", {outcome.retried} trained again at a lower learning rate" if outcome.retried else "") + "), "
             f"{outcome.rejected} rejected before training"
             + (f" (check median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms)" if ms else "")
             + (f", {outcome.dominated} no cheaper than a net at the target" if outcome.dominated else "")
             + (f", {outcome.duplicates} duplicates" if outcome.duplicates else "")
             + (f", {outcome.failed} stopped or lost (queued again)" if outcome.failed else "")
             + f"; {outcome.seconds:.0f} s this run"]
    if outcome.covered:
        cap = trials.cost_cap(outcome.study, task.cost)
        lines.append("every distinct feasible net of the space" + (f" cheaper than {cap:,} {task.cost}" if cap else "")
                     + " has been tried")
    if not outcome.front:
        return lines + ["no trained candidate on the front yet"]
    lines.append(f"front (validation accuracy against {task.cost}; target {task.target:.2%}):")
    for t in outcome.front:
        r = trials.Record.of(t)
        path = save_spec(cfg.name, t, cfg.results)
        reached = "  reached the target" if r.val_accuracy >= task.target else ""
        lines.append(f"  trial {t.number:>3}  {_cost(r, task.cost):>14}  RF {r.rf:>3}  "
                     f"val {r.val_accuracy:.2%}{reached}  {path}")
    if outcome.confirmed is not None:
        lines += outcome.confirmed.lines()
    return lines


def _rates_note(tried: list[float]) -> str:
    return f" at lr {' and '.join(f'{lr:g}' for lr in tried)}"


def _cost(record: trials.Record, cost: str) -> str:
    value = record.cost(cost)
    if cost == "latency":
        return f"{value * 1e6:,.1f} us/image"
    return f"{value:,} {cost}"


# ---- the library's entry points: what `nas search` and `nas confirm` call ---------------------------

def search(space: Space | str, *, trials: int | None = None, minutes: float | None = None,
           study: str | None = None, storage: str | None = None, results: str | Path | None = None,
           data_dir: str | None = None, device: str = "auto", train_limit: int | None = None, seed: int = 0,
           confirm: int = 3, seeds: int | None = None, jobs: int = 1, halving: int = 3,
           enqueue: tuple[str, ...] = (), finish: bool = False, train_options: dict | None = None,
           on_trial: Callable | None = None, on_run: Callable | None = None) -> Outcome:
    """Search ``space`` (a name from :func:`nas.list_spaces`, a YAML file, or a :class:`Space`), then
    confirm its cheapest candidates on the test set: what ``nas search`` does, from Python.

    The options are the command's (``minutes`` is ``--timeout`` in minutes). The result is the
    :class:`Outcome`: ``.study`` is the Optuna study, ``.front`` its validation front, and
    ``.confirmed`` what confirmation found; :func:`nas.best` turns it into the trained model. The
    same call again resumes the study. Ctrl-C (a notebook's interrupt button) stops it cleanly: the
    candidate in training is queued again, everything finished is kept, and the outcome comes back
    with ``interrupted`` set. ``jobs`` > 1 runs that many worker processes on this machine.

    >>> import tempfile
    >>> from nas import search
    >>> out = search("mnist_tiny", data_dir="../shared/data", results=tempfile.mkdtemp(), trials=1, confirm=0,
    ...              train_limit=256, train_options={"epochs": 1})  # a glimpse: 1 epoch on 256 images
    >>> out.trained, out.study.study_name
    (1, 'mnist_tiny')
    """
    space = space if isinstance(space, Space) else Space.load(str(space))
    cfg = SearchConfig(space, study, studies.url_for(storage, results),
                       trials, None if minutes is None else minutes * 60, seed, finish, tuple(enqueue),
                       data_dir=data_dir, device=device, train_limit=train_limit,
                       train_options=dict(train_options or {}), confirm=confirm, seeds=seeds, halving=halving,
                       **({"results": Path(results)} if results else {}))
    with studies.quiet():
        return execute(cfg, jobs, on_trial=on_trial, on_run=on_run, signals=False)


STARTED_ENV = "NAS_SEARCH_STARTED"  # wall-clock start of a --jobs coordinator, for its workers


def started_here(environ=None) -> float | None:
    """This process's ``time.perf_counter()`` reading at its coordinator's start (None: not a worker).

    >>> import time
    >>> round(time.perf_counter() - started_here({STARTED_ENV: repr(time.time() - 30)}))
    30
    """
    wall = (os.environ if environ is None else environ).get(STARTED_ENV)
    return None if wall is None else time.perf_counter() - (time.time() - float(wall))


def execute(cfg: SearchConfig, jobs: int = 1, data=None, train_fn: Callable | None = None,
            on_trial: Callable | None = None, on_run: Callable | None = None, signals: bool = True) -> Outcome:
    """One worker here, or ``jobs`` worker processes (``nas search --worker``) and then a last pass
    here that finishes whatever they left (a killed worker's trial) and confirms."""
    from . import jobs as workers

    started = time.perf_counter()
    cfg = replace(cfg, started=cfg.started or started)  # the last pass starts nothing once the budget is spent
    if jobs > 1:
        _, data = prepare(cfg)  # every check once, here, and the study made before the workers race to it
        store = {"NAS_STORAGE": cfg.storage} if cfg.storage else {}  # a password in argv is visible in `ps`
        # the workers' budget counts from this command's start, not from theirs (after imports and a data load)
        store[STARTED_ENV] = repr(time.time() - (time.perf_counter() - cfg.started))
        codes = workers.run_workers(worker_args(cfg), jobs, env=store, signals=signals,
                                    status=_watch(cfg, train_config(cfg).epochs))
        if 130 in codes or -2 in codes:
            return replace(_outcome(open_study(cfg), cfg), interrupted=True, seconds=time.perf_counter() - started)
        if any(code != 0 for code in codes):
            worst = next(c for c in codes if c != 0)
            raise NasError(f"{sum(c != 0 for c in codes)} of {len(codes)} workers failed (exit code {worst}, see "
                           f"above); fix what they said and run the same command to resume study {cfg.name}")
        cfg = replace(cfg, quiet=True)
    outcome = run(cfg, data=data, train_fn=train_fn, on_trial=on_trial, on_run=on_run, signals=signals)
    outcome.seconds = time.perf_counter() - started
    return outcome


def budget_left(seconds: float) -> str:
    """How much of the search's time budget is left, in words: the trial lines' and the status block's.

    >>> budget_left(600), budget_left(20.4), budget_left(-1)
    ('search: 10 min left', 'search: 20 s left', 'search budget spent: finishing')
    """
    if seconds <= 0:
        return "search budget spent: finishing"
    return f"search: {seconds / 60:.0f} min left" if seconds >= 90 else f"search: {seconds:.0f} s left"


def _watch(cfg: SearchConfig, epochs: int) -> Callable[[list[int]], list[str]]:
    """The status block under the trial lines of ``--jobs`` workers: the search's time left and
    counts, then what each worker is training (read from the study, where workers record each epoch)."""
    store = studies.storage(cfg.storage, heartbeat=False)
    ends = cfg.deadline()

    def rows(pids: list[int]) -> list[str]:
        study = optuna.load_study(study_name=cfg.name, storage=store)
        c = counts(study)
        left = "" if ends is None else f"; {budget_left(ends - time.perf_counter())}"
        lines = [f"study {cfg.name}: {c['trained']} trained, {c['stopped']} stopped early, "
                 f"{c['duplicate'] + c['rejected'] + c['dominated']} not trained{left}"]
        running = {r.worker.rpartition(":")[2]: (t, r) for t in study.get_trials(deepcopy=False, states=(
            TrialState.RUNNING,)) for r in [trials.Record.of(t)]}
        for n, pid in enumerate(pids, start=1):
            t, r = running.get(str(pid), (None, None))
            if r is None or not r.trained:
                lines.append(f"  worker {n}: checking the next candidate")
                continue
            seen = f"{len(r.accuracies)}/{epochs} epochs"
            if r.curve:  # rungs inside an epoch are scored too
                seen += f", val {r.curve[-1][1]:.4f} at {r.curve[-1][0]:.0%} of the schedule"
            since = (datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else 0
            lines.append(f"  worker {n}: trial {t.number:>3}  {r.params or 0:>7,} params  {seen}  {since:.0f} s")
        return lines
    return rows


def worker_args(cfg: SearchConfig) -> list[str]:
    """The ``nas`` arguments of one ``--jobs`` worker of ``cfg`` (its storage goes in its environment)."""
    space = cfg.space
    if space.source == "<dict>":
        raise NasError(f"space {space.name} was made in Python, so worker processes cannot load it; save it to a "
                       "YAML file and pass its path, or use jobs=1")
    if cfg.train_options:
        raise NasError("train_options cannot be passed to worker processes; put them under 'train:' in "
                       f"{space.source}, or use jobs=1")
    known = registry.spaces().get(space.name)
    args = ["search", "--worker", "--space", space.name if known and known.resolve() == Path(space.source).resolve()
            else str(Path(space.source).resolve()), "--study", cfg.name, "--results", str(cfg.results),
            "--seed", str(cfg.seed), "--device", cfg.device, "--halving", str(cfg.halving),
            "--confirm", str(cfg.confirm)]
    for option, value in (("--trials", cfg.trials), ("--timeout", cfg.timeout), ("--data-dir", cfg.data_dir),
                          ("--train-limit", cfg.train_limit), ("--seeds", cfg.seeds)):
        if value is not None:
            args += [option, str(value)]
    return args + (["--finish"] if cfg.finish else [])


def space_of(study: optuna.Study) -> Space:
    """The space a study was made for: by name, else by the file it was loaded from."""
    name = study.user_attrs.get("space")
    if name is None:
        raise NasError(f"study {study.study_name} records no search space; it was not made by `nas search`")
    space = Space.load(name) if name in registry.spaces() else Space.load(study.user_attrs.get("space_file", name))
    check_frozen(study, space)
    return space


def confirm(study: optuna.Study | str | None = None, *, storage: str | None = None,
            results: str | Path | None = None, data_dir: str | None = None, device: str = "auto",
            train_limit: int | None = None, designs: int = 3, seeds: int | None = None,
            on_run: Callable | None = None, signals: bool = False) -> Confirmed:
    """Confirm a study's chosen designs (up to ``designs`` of them, cheapest first): retrain each on
    every training image over ``seeds`` seeds and test once; what ``nas confirm`` does, from Python.
    Runs already done are kept; the same call resumes.

    >>> import tempfile
    >>> from nas import confirm, search
    >>> runs = tempfile.mkdtemp()
    >>> out = search("mnist_tiny", data_dir="../shared/data", results=runs, trials=1, confirm=0,
    ...              train_limit=256, train_options={"epochs": 1})
    >>> done = confirm(out.study, data_dir="../shared/data", results=runs, seeds=1, train_limit=256)
    >>> done.best is None  # one epoch on 256 images: nothing near the target to confirm
    True
    """
    url = studies.url_for(storage, results)
    s = study if isinstance(study, optuna.Study) else studies.load(study, url, heartbeat=True)
    cfg = SearchConfig(space_of(s), s.study_name, url, data_dir=data_dir, device=device, train_limit=train_limit,
                       confirm=designs, seeds=seeds, **({"results": Path(results)} if results else {}))
    data = load_data(cfg)
    check_data(cfg.space, data)
    with studies.quiet():
        return confirm_runs(cfg, s, data, on_run=on_run, signals=signals)
