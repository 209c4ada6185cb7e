"""The constraint-first search: Optuna proposes a point, the analysis checks it, only valid ones train.

The search weighs validation accuracy against the task's cost (``params``, ``macs`` or ``latency``)
in a two-objective Optuna study. Rejected candidates are stored with a positive constraint value
(``trial.set_constraint``), which the sampler reads to learn where the feasible region is; they cost
a few milliseconds and no training. Trained candidates learn on the training images less a
validation split held out with a seed stored in the study (every worker holds out the same one);
:class:`~nas.sampler.Halving` scores them at rungs of training images seen and stops those that
cheaper candidates beat there, and :class:`~nas.sampler.TargetPruner` stops those whose validation
curve cannot reach the target.
The test set is never read here: :mod:`nas.confirm` reads it, once per seed, for the chosen designs.

``--trials N`` counts trained candidates across the whole study, so running the same command again
resumes a study (or extends it with a larger N), and several workers share one count.

Several workers (processes, machines; ``nas search --jobs N`` starts N on this machine, see
:mod:`nas.jobs`) running the same command share the study through its storage:
trial k's random draws depend only on the seed and k, so workers sample different candidates; a
net that another worker is training now is waited for, not trained twice; a dead worker's trial is
queued again (see :mod:`nas.study`); and each worker stops once the study holds N trained
candidates and none is still training.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import TrialState

from . import registry
from . import study as studies
from . import trials
from .build import build
from .errors import NasError
from .feasibility import check, feasibility, require_feasible
from .sampler import Halving, Sampler, TargetPruner
from .space import Space, fingerprint
from .trials import TRAINED_STATES, counts
from .workers import Interrupted, Stop, worker_name

DIRECTIONS = ("maximize", "minimize")  # validation accuracy, cost


@dataclass
class SearchConfig:
    space: Space
    study_name: str | None = None
    storage: str | None = None
    trials: int = 20
    timeout: float | None = None
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
    halving: int = 3  # successive halving: keep the best 1/halving at each rung of images seen (0: off)
    quiet: bool = False  # a worker of `--jobs N`: the coordinator prints warnings and the summary
    started: float | None = None  # time.perf_counter() when the command began: --timeout counts from it

    @property
    def name(self) -> str:
        return self.study_name or self.space.name


@dataclass
class Outcome:
    study: optuna.Study
    trained: int = 0
    rejected: int = 0
    pruned: int = 0
    duplicates: int = 0
    failed: int = 0
    reached: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    check_ms: list[float] = field(default_factory=list)
    front: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    confirmed: Any = None  # a nas.confirm.Confirmed, when the search went on to confirm


def open_study(cfg: SearchConfig) -> optuna.Study:
    """Create or resume the study; its attributes record the task and the validation split."""
    space, task = cfg.space, cfg.space.task
    try:
        study = optuna.create_study(study_name=cfg.name, storage=studies.storage(cfg.storage),
                                    directions=list(DIRECTIONS), sampler=Sampler(seed=cfg.seed, n_startup_trials=8),
                                    load_if_exists=True)
    except ValueError as err:  # an existing study with other directions
        raise NasError(f"study {cfg.name!r} cannot be resumed by this version of nas ({err}); pass another --study") from None
    if len(study.directions) != len(DIRECTIONS):
        raise NasError(f"study {cfg.name!r} was made by an older nas that chose on one objective; "
                       "pass another --study to start a new one")
    if study.user_attrs.get("space", space.name) != space.name:
        raise NasError(f"study {cfg.name!r} was made for space {study.user_attrs['space']!r}, not {space.name!r}; "
                       "pass another --study")
    wanted = {"space": space.name, "space_file": str(space.source), "target": task.target,
              "dataset": task.dataset, "max_epochs": task.max_epochs, "epochs": train_config(cfg).epochs,
              "constraints": task.constraints.to_dict(), "cost": task.cost, "seeds": task.seeds}
    if "split" not in study.user_attrs:  # drawn once: every worker and every resume holds out the same images
        wanted["split"] = {"validation": task.validation, "seed": cfg.seed}
    for key, value in wanted.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def validation_data(study: optuna.Study, data, train_limit: int | None = None, seed: int = 0):
    """What search trials train and evaluate on: the training images less the study's validation split."""
    split = study.user_attrs["split"]
    held = data.held_out(split["validation"], split["seed"])
    return held.subset(train=train_limit, seed=seed) if train_limit else held


def enqueue(study: optuna.Study, space: Space, design_or_file: str) -> dict[str, Any]:
    """Queue a documented design (a point of the space) or a params file (its choices) as a fixed trial.

    Strict: an unknown choice or a value outside the space is an error, and a design's spec must be
    the very net its document describes.
    """
    choices, design = point(space, design_or_file)
    study.enqueue_trial(space.encode(choices), user_attrs={"design": design}, skip_if_exists=True)
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
        from . import train as trainer
        self.cfg, self.data, self.stop = cfg, data, stop
        self.train_fn = train_fn or trainer.train
        self.weights_dir = studies.study_dir(cfg.name, cfg.results) / "weights"
        self.worker = worker_name()
        self.poll = min(5.0, studies.heartbeat_settings()[0])
        self.config = train_config(cfg)
        self.pruner = TargetPruner(cfg.space.task.target, self.config.epochs)
        self.halving = Halving(cfg.halving)
        n = len(data.y_train)
        bs = min(self.config.batch_size, n)
        self.rungs = self.halving.rungs(self.config.epochs, n // bs * bs)

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        space, cost = self.cfg.space, self.cfg.space.task.cost
        # Optuna takes plain values only: list-valued choices are proposed by their labels ("8-16-32")
        choices = space.decode({k: trial.suggest_categorical(k, space.labels(k)) for k in space.choices})
        start = time.perf_counter()
        cand = check(space, choices)
        trial.set_user_attr("check_ms", round((time.perf_counter() - start) * 1000, 3))
        trial.set_user_attr("failures", list(cand.failures))
        if cand.analysis is not None:
            for key, value in cand.analysis.figures().items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("spec", cand.analysis.spec.to_dict())
        trial.set_constraint("failures", float(len(cand.failures)))  # > 0 is infeasible
        if not cand.feasible:
            trial.set_user_attr("status", "rejected")
            size = cand.analysis.figures().get(cost) if cand.analysis is not None else None
            return 0.0, float(size) if size is not None else math.inf
        spec = cand.analysis.spec
        fp = fingerprint(spec)
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("fingerprint", fp)
        earlier = self._same_net(trial, fp)
        if earlier is not None:
            trial.set_user_attr("status", "duplicate")
            trial.set_user_attr("duplicate_of", earlier.number)
            if earlier.state == TrialState.PRUNED:
                raise optuna.TrialPruned()
            return tuple(earlier.values)
        if cost == "latency":
            from .train import latency
            trial.set_user_attr("latency", latency(build(spec, cand.analysis), spec.input, self.config.device))
        return self._train(trial, cand.analysis, float(trial.user_attrs[cost]))

    def _same_net(self, trial: optuna.Trial, fp: str):
        """A trained trial of the same net; if another worker is training it now, wait for its result.

        A worker waits for a trial of the same net that is training, or that is still being checked
        and has a lower number (so two workers at the same point never wait for each other). Only
        with heartbeats: without them a dead worker's trial would be waited for forever.
        """
        study = trial.study
        while True:
            same = [t for t in study.get_trials(deepcopy=False)
                    if t.number != trial.number and t.user_attrs.get("fingerprint") == fp]
            for t in same:
                if t.state in TRAINED_STATES and t.user_attrs.get("trained"):
                    return t
            busy = [t for t in same if t.state == TrialState.RUNNING
                    and (t.user_attrs.get("trained") or t.number < trial.number)]
            if not busy or not studies.heartbeat_enabled(study):
                return None
            if self.stop.requested:
                trial.set_user_attr("status", "interrupted")  # the other worker still trains the net
                raise Interrupted()
            time.sleep(self.poll)
            studies.fail_stale(study)  # a dead worker's trial fails here, and this worker trains the net

    def _train(self, trial: optuna.Trial, analysis, cost: float) -> tuple[float, float]:
        accuracies: list[float] = []
        pruned = []

        def on_epoch(epoch: int, acc: float | None) -> bool:
            accuracies.append(acc)
            trial.set_user_attr("accuracies", accuracies)  # persisted as it goes: a killed worker keeps it
            if self.stop.requested:
                return True
            if self.pruner.hopeless(accuracies, self.pruner.references(trial.study)):
                pruned.append(f"epoch {epoch}")
                return True
            return False

        scores: dict[str, float] = {}
        fixed = bool(trial.user_attrs.get("design"))  # a documented design trains its whole schedule

        def on_rung(images: int, acc: float) -> bool:
            scores[str(images)] = acc
            trial.set_user_attr("rungs", scores)
            others = self.halving.scored(trial.study, images, self.cfg.space.task.cost, trial.number)
            if not fixed and self.halving.hopeless(acc, cost, others):
                pruned.append(f"{images:,} images")
                return True
            return False

        trial.set_user_attr("trained", True)
        trial.set_user_attr("threads", torch.get_num_threads())
        torch.manual_seed(self.cfg.seed)
        model = build(analysis.spec, analysis)  # the analysis the check just made: no second pass
        rungs = {"rungs": self.rungs, "on_rung": on_rung} if self.rungs else {}
        try:
            result = self.train_fn(model, self.data, self.config, on_epoch=on_epoch, **rungs)
        except KeyboardInterrupt:  # a second Ctrl-C, or SIGTERM: the trial fails, its params are queued again
            trial.set_user_attr("status", "interrupted")
            self._requeue(trial)
            raise
        reached = result.target_epoch is not None
        trial.set_user_attr("accuracies", list(result.accuracies))
        trial.set_user_attr("target_epoch", result.target_epoch)
        trial.set_user_attr("seconds", round(result.seconds, 2))
        trial.set_user_attr("reached_target", reached)
        trial.set_user_attr("weights", self._save(trial.number, model))
        if result.status == "nan":
            trial.set_user_attr("status", "nan")
            trial.set_user_attr("message", result.message)
            raise optuna.TrialPruned(result.message)
        if self.stop.requested and not pruned and not (reached and not self.cfg.finish):
            trial.set_user_attr("status", "interrupted")
            self._requeue(trial)  # retrained on resume
            raise Interrupted()
        if pruned:
            trial.set_user_attr("status", "pruned")
            trial.set_user_attr("pruned_at", pruned[0])
            raise optuna.TrialPruned(f"pruned at {pruned[0]}")
        trial.set_user_attr("status", "target_met" if reached else "complete")
        return (result.accuracies[-1] if result.accuracies else 0.0), cost

    @staticmethod
    def _requeue(trial: optuna.Trial) -> None:
        trial.study.enqueue_trial(trial.params, user_attrs=trials.carried(trial.user_attrs) or None,
                                  skip_if_exists=False)

    def _save(self, number: int, model: torch.nn.Module) -> str:
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / f"trial_{number}.pt"
        torch.save(model.state_dict(), path)
        return str(path.relative_to(self.weights_dir.parent))


def train_config(cfg: SearchConfig, confirm_seed: int | None = None):
    """The trainer's settings: the task's fixed schedule, the space's ``train:``, the options.

    A search trial evaluates on validation images after every epoch and may stop once the target
    is reached; a confirmation run (``confirm_seed``) trains the whole schedule with that seed and
    is evaluated once, after its last epoch.
    """
    from .train import settings

    task = cfg.space.task
    options = {**cfg.space.train, **cfg.train_options}
    # A space may fix a schedule shorter than the task's epoch budget (train: {epochs: 6}).
    options.setdefault("epochs", task.max_epochs)
    if confirm_seed is None:
        fixed = dict(target=task.target, seed=cfg.seed, stop_at_target=not cfg.finish)
    else:
        fixed = dict(target=None, seed=confirm_seed, stop_at_target=False, eval_each_epoch=False)
        options["epochs"] = task.confirm_epochs or options["epochs"]
    config = settings(options, source=f"{cfg.space.source}: train", device=cfg.device, **fixed)
    if config.epochs > task.max_epochs:
        raise NasError(f"{cfg.space.source}: train.epochs must be at most task.max_epochs ({task.max_epochs}), "
                       f"got {config.epochs}; shorten the schedule or raise the budget")
    return config


def _check_data(cfg: SearchConfig, data) -> None:
    """The dataset must fit the space: image shape and, when the task names it, the number of classes."""
    space, shape = cfg.space, getattr(data, "shape", None)
    if shape is not None and tuple(shape) != tuple(space.input):
        raise NasError(f"dataset {space.task.dataset} has images of shape {list(shape)} but space {space.name} "
                       f"takes input {list(space.input)}; fix 'input:' in {space.source} or use the matching dataset")
    classes, found = space.task.constraints.classes, getattr(data, "num_classes", None)
    if classes is not None and found is not None and classes != found:
        raise NasError(f"dataset {space.task.dataset} has {found} classes but space {space.name} asks for "
                       f"{classes}; fix 'classes' under task.constraints in {space.source}")


def run(cfg: SearchConfig, data=None, train_fn: Callable | None = None, on_trial: Callable | None = None,
        on_run: Callable | None = None) -> Outcome:
    """Run (or resume) the search until the study holds ``cfg.trials`` trained candidates, then
    confirm the cheapest candidates whose validation accuracy reached the target (``cfg.confirm``).

    Everything the user can get wrong (space, enqueued designs, data, results folder, storage) is
    checked before the study is created or changed.
    """
    study, data = prepare(cfg, data)
    search_data = validation_data(study, data, cfg.train_limit, cfg.seed)
    start = time.perf_counter()
    with Stop() as stop:
        _optimize(cfg, study, Objective(cfg, search_data, stop, train_fn), stop, on_trial)
    outcome = _outcome(study, cfg)
    outcome.interrupted = stop.requested
    outcome.seconds = time.perf_counter() - start
    if cfg.confirm and not outcome.interrupted:
        from .confirm import confirm
        outcome.confirmed = confirm(cfg, study, data, train_fn, on_run)
        outcome.interrupted = outcome.confirmed.interrupted
    return outcome


def prepare(cfg: SearchConfig, data=None):
    """Check everything, then create or resume the study and queue the enqueued designs: (study, data)."""
    warning = require_feasible(feasibility(cfg.space, samples=1000, seed=cfg.seed))
    if warning and not cfg.quiet:  # a large space where sampling found nothing: not proof, so the search goes on
        print(warning, file=sys.stderr, flush=True)
    fixed = [point(cfg.space, design) for design in cfg.enqueue]
    train_config(cfg)
    studies.writable(studies.study_dir(cfg.name, cfg.results) / "weights")
    studies.check_url(cfg.storage)
    if data is None:
        data = load_data(cfg)
    check_data(cfg.space, data)
    study = open_study(cfg)
    study.set_user_attr("input_norm", {"mean": list(data.mean), "std": list(data.std)})  # for exported models
    done = counts(study)
    if (done["trained"] or done["failed"] or _queued(study)) and not cfg.quiet:
        print(f"resuming study {cfg.name}: {done['trained']} trained so far", file=sys.stderr, flush=True)
    for choices, design in fixed:
        study.enqueue_trial(cfg.space.encode(choices), user_attrs={"design": design}, skip_if_exists=True)
    return study, data


def _optimize(cfg: SearchConfig, study: optuna.Study, objective: Objective, stop: Stop,
              on_trial: Callable | None) -> None:
    """Start trials until the study holds enough trained ones (or time, Ctrl-C or NaNs stop it)."""
    here = {"rejected": 0, "trained": 0, "nan": 0}
    deadline = (cfg.started or time.perf_counter()) + cfg.timeout if cfg.timeout else None
    max_rejections = 200 * cfg.trials + 1000
    diverged: list[str] = []

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        status = trial.user_attrs.get("status")
        here["rejected"] += status == "rejected"
        if trial.user_attrs.get("trained") and trial.state in TRAINED_STATES and status != "duplicate":
            here["trained"] += 1
            here["nan"] += status == "nan"
        if on_trial:
            on_trial(trial)
        if here["nan"] and here["nan"] == here["trained"] >= min(3, cfg.trials):  # the settings, not the nets
            diverged.append(trial.user_attrs.get("message", ""))
        if stop.requested or diverged or here["rejected"] >= max_rejections or not _to_start(study, cfg.trials):
            study.stop()

    while not (stop.requested or diverged or here["rejected"] >= max_rejections):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            break
        try:
            studies.fail_stale(study)  # a dead worker's trial is queued again before we count
            if _to_start(study, cfg.trials):
                try:
                    study.optimize(objective, timeout=left, callbacks=[after_trial], catch=(Interrupted,),
                                   gc_after_trial=False)
                except ValueError as err:
                    # Our heartbeat lapsed (a stalled machine) and another worker failed the trial and
                    # queued it again: Optuna cannot tell it. Drop it and go on; the copy gets trained.
                    if "Cannot tell a FAIL trial" not in str(err):
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


def _outcome(study: optuna.Study, cfg: SearchConfig) -> Outcome:
    c = counts(study)
    return Outcome(study, trained=c["trained"], rejected=c["rejected"], pruned=c["pruned"],
                   duplicates=c["duplicate"], failed=c["failed"], reached=c["reached"],
                   check_ms=[t.user_attrs["check_ms"] for t in study.get_trials(deepcopy=False)
                             if "check_ms" in t.user_attrs],
                   front=trials.front(study, cfg.space.task.cost))


def _to_start(study: optuna.Study, wanted: int) -> bool:
    """Whether to start another trial: one is queued, or the trained ones (counting those other
    workers train now, when dead workers are detected) are fewer than ``wanted``."""
    c = counts(study)
    training = c["training"] if studies.heartbeat_enabled(study) else 0
    return _queued(study) or c["trained"] + training < wanted


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


def save_spec(study_name: str, trial: optuna.trial.FrozenTrial, results: Path | None = None) -> Path:
    from .spec import Spec
    path = studies.study_dir(study_name, results) / "specs" / f"trial_{trial.number}.yaml"
    spec = Spec.from_dict(trial.user_attrs["spec"])
    return spec.save(path)


def describe(outcome: Outcome, cfg: SearchConfig) -> list[str]:
    """The end-of-search lines: counts, the validation front, then what confirmation found."""
    ms, task = outcome.check_ms, cfg.space.task
    lines = [f"study {cfg.name}: {outcome.trained} trained ({outcome.pruned} pruned), "
             f"{outcome.rejected} rejected before training"
             + (f" (check median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms)" if ms else "")
             + f", {outcome.duplicates} duplicates"
             + (f", {outcome.failed} stopped or lost (queued again)" if outcome.failed else "")
             + f"; {outcome.seconds:.0f} s this run"]
    if not outcome.front:
        return lines + ["no trained candidate on the front yet"]
    lines.append(f"front (validation accuracy against {task.cost}; target {task.target:.2%}):")
    for t in outcome.front:
        a = t.user_attrs
        path = save_spec(cfg.name, t, cfg.results)
        reached = "  reached the target" if trials.val_accuracy(t) >= task.target else ""
        lines.append(f"  trial {t.number:>3}  {_cost(a, task.cost):>14}  RF {a['rf']:>3}  "
                     f"val {trials.val_accuracy(t):.2%}{reached}  {path}")
    if outcome.confirmed is not None:
        lines += outcome.confirmed.lines()
    return lines


def _cost(attrs: dict, cost: str) -> str:
    value = attrs.get(cost)
    if cost == "latency":
        return f"{value * 1e6:,.1f} us/image"
    return f"{value:,} {cost}"
