"""The constraint-first search: Optuna samples a point, the analysis checks it, only valid ones train.

Rejected candidates are stored as completed trials with a positive constraint value
(``trial.set_constraint``), which the TPE sampler reads to learn where the feasible region is; they cost a few
milliseconds and no training. Trained candidates report test accuracy each epoch to
:class:`TargetPruner`, which stops those that cannot reach the task's target in the epoch budget.

``--trials N`` counts trained candidates across the whole study, so running the same command again
resumes a study (or extends it with a larger N), and several workers share one count.

Several workers (processes, machines) running the same command share the study through its storage:
trial k's random draws depend only on the seed and k, so workers sample different candidates; a
net that another worker is training now is waited for, not trained twice; a dead worker's trial is
queued again (see :mod:`nas.study`); and each worker stops once the study holds N trained
candidates and none is still training.
"""
from __future__ import annotations

import os
import signal
import socket
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
from .build import build
from .errors import NasError
from .feasibility import check, feasibility, require_feasible
from .space import Space, fingerprint

TRAINED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


class TargetPruner(optuna.pruners.BasePruner):
    """Prune a trial whose learning curve cannot reach ``target`` within ``max_epochs``.

    Two tests, after ``warmup`` epochs:

    * behind every curve that met the target: accuracy at this epoch is below the lowest accuracy
      that any target-meeting trial had at the same epoch, by more than ``slack``;
    * out of reach even optimistically: the error rate, shrinking by ``decay`` every remaining
      epoch, would still be above ``1 - target`` at the last epoch.
    """

    def __init__(self, target: float, max_epochs: int, warmup: int = 1, slack: float = 0.003, decay: float = 0.5):
        self.target, self.max_epochs, self.warmup, self.slack, self.decay = target, max_epochs, warmup, slack, decay

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        epoch = trial.last_step
        if epoch is None or epoch < self.warmup or epoch >= self.max_epochs:
            return False  # the last epoch ends the schedule anyway: it completes, met or not
        acc = trial.intermediate_values[epoch]
        if (1 - acc) * self.decay ** (self.max_epochs - epoch) > 1 - self.target:
            return True
        refs = [t.intermediate_values[epoch] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("meets_target") and epoch in t.intermediate_values]
        return bool(refs) and acc < min(refs) - self.slack


class Sampler(optuna.samplers.TPESampler):
    """TPE whose random draws for trial k depend only on ``(seed, k)``.

    One worker repeats its candidates exactly, also across a resume; several workers started with
    the same ``--seed`` draw different candidates, where one shared random sequence would have every
    worker try the same random start-up points.
    """

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().before_trial(study, trial)
        seed = (self._base_seed * 1_000_003 + trial.number) % 2**32
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)


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
    interrupted: bool = False
    seconds: float = 0.0
    check_ms: list[float] = field(default_factory=list)
    meeting: list[optuna.trial.FrozenTrial] = field(default_factory=list)


class _Stop:
    """First Ctrl-C (or SIGTERM): finish the current epoch, keep everything, stop. Second: abort now."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._previous_term = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._previous_term = signal.signal(signal.SIGTERM, self._handle)  # kill, a scheduler's preemption
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this epoch; everything is kept (Ctrl-C again to abort now)", flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            signal.signal(signal.SIGTERM, self._previous_term)
        return False


class _Interrupted(Exception):
    pass


def open_study(cfg: SearchConfig) -> optuna.Study:
    space, task = cfg.space, cfg.space.task
    sampler = Sampler(seed=cfg.seed, n_startup_trials=8)
    study = optuna.create_study(study_name=cfg.name, storage=studies.storage(cfg.storage), direction="maximize",
                                sampler=sampler, pruner=TargetPruner(task.target, train_config(cfg).epochs),
                                load_if_exists=True)
    if study.user_attrs.get("space", space.name) != space.name:
        raise NasError(f"study {cfg.name!r} was made for space {study.user_attrs['space']!r}, not {space.name!r}; "
                       "pass another --study")
    for key, value in {"space": space.name, "space_file": str(space.source), "target": task.target,
                       "dataset": task.dataset, "max_epochs": task.max_epochs,
                       "constraints": task.constraints.to_dict()}.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def enqueue(study: optuna.Study, space: Space, design_or_file: str) -> dict[str, Any]:
    """Queue a documented design (a point of the space) or a params file as a fixed trial.

    Strict: an unknown choice or a value outside the space is an error, and a design's spec must be
    the very net its document describes.
    """
    params, design = point(space, design_or_file)
    study.enqueue_trial(params, user_attrs={"design": design}, skip_if_exists=True)
    return params


def point(space: Space, design_or_file: str) -> tuple[dict[str, Any], str]:
    """The params and name of a documented design or params file, checked strictly (see :func:`enqueue`)."""
    if Path(design_or_file).suffix in (".yaml", ".yml", ".json"):
        params, design = _params_file(Path(design_or_file), space), Path(design_or_file).stem
    else:
        params, design = space.point_of(design_or_file), design_or_file
    space.check_params(params)
    if design in registry.designs():
        expected, got = fingerprint(registry.load_design(design)), fingerprint(space.spec(params))
        if expected != got:
            raise NasError(f"points.{design} in {space.source} does not give the net of design {design}; "
                           "fix the point's values")
    return params, design


def _params_file(path: Path, space: Space) -> dict[str, Any]:
    import yaml
    try:
        params = yaml.safe_load(path.read_text())
    except OSError as err:
        raise NasError(f"cannot read params file {path}: {err.strerror}; check the path") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise NasError(f"params file {path} is not valid YAML{where}; fix the syntax") from None
    if not isinstance(params, dict):
        raise NasError(f"{path}: a params file maps each choice of {space.name} to a value")
    return params


class Objective:
    """One trial: sample, check, (maybe) train, record."""

    def __init__(self, cfg: SearchConfig, data, stop: _Stop, train_fn: Callable | None = None):
        from . import train as trainer
        self.cfg, self.data, self.stop = cfg, data, stop
        self.train_fn = train_fn or trainer.train
        self.weights_dir = studies.study_dir(cfg.name, cfg.results) / "weights"
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.poll = min(5.0, studies.heartbeat_settings()[0])

    def __call__(self, trial: optuna.Trial) -> float:
        space = self.cfg.space
        params = {k: trial.suggest_categorical(k, list(v)) for k, v in space.choices.items()}
        start = time.perf_counter()
        cand = check(space, params)
        check_ms = (time.perf_counter() - start) * 1000
        trial.set_user_attr("check_ms", round(check_ms, 3))
        trial.set_user_attr("failures", list(cand.failures))
        if cand.analysis is not None:
            for key, value in cand.analysis.figures().items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("spec", cand.analysis.spec.to_dict())
        trial.set_constraint("failures", float(len(cand.failures)))  # > 0 is infeasible
        if not cand.feasible:
            trial.set_user_attr("status", "rejected")
            return 0.0
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
            return earlier.value
        return self._train(trial, spec)

    def _same_net(self, trial: optuna.Trial, fp: str):
        """A trained trial of the same net; if another worker is training it now, wait for its result.

        A worker waits for a trial of the same net that is training, or that is still being checked
        and has a lower number (so two workers at the same point never wait for each other). Only
        with heartbeats: without them a dead worker's trial would be waited for forever.
        """
        study = trial.study
        while True:
            trials = study.get_trials(deepcopy=False)
            same = [t for t in trials if t.number != trial.number and t.user_attrs.get("fingerprint") == fp]
            for t in same:
                if t.state in TRAINED_STATES and t.user_attrs.get("trained"):
                    return t
            busy = [t for t in same if t.state == TrialState.RUNNING
                    and (t.user_attrs.get("trained") or t.number < trial.number)]
            if not busy or not studies.heartbeat_enabled(study):
                return None
            if self.stop.requested:
                trial.set_user_attr("status", "interrupted")  # the other worker still trains the net
                raise _Interrupted()
            time.sleep(self.poll)
            studies.fail_stale(study)  # a dead worker's trial fails here, and this worker trains the net

    def _train(self, trial: optuna.Trial, spec) -> float:
        config = train_config(self.cfg)
        accuracies: list[float] = []
        pruned = []

        def on_epoch(epoch: int, acc: float) -> bool:
            accuracies.append(acc)
            trial.report(acc, epoch)
            trial.set_user_attr("accuracies", accuracies)  # persisted as it goes: a killed worker keeps it
            if self.stop.requested:
                return True
            if trial.should_prune():
                pruned.append(epoch)
                return True
            return False

        trial.set_user_attr("trained", True)
        torch.manual_seed(self.cfg.seed)
        model = build(spec)
        try:
            result = self.train_fn(model, self.data, config, on_epoch=on_epoch)
        except KeyboardInterrupt:  # a second Ctrl-C, or SIGTERM: the trial fails, its params are queued again
            trial.set_user_attr("status", "interrupted")
            self._requeue(trial)
            raise
        met = result.target_epoch is not None
        trial.set_user_attr("accuracies", list(result.accuracies))
        trial.set_user_attr("target_epoch", result.target_epoch)
        trial.set_user_attr("seconds", round(result.seconds, 2))
        trial.set_user_attr("meets_target", met)
        trial.set_user_attr("weights", self._save(trial.number, model))
        if result.status == "nan":
            trial.set_user_attr("status", "nan")
            trial.set_user_attr("message", result.message)
            raise optuna.TrialPruned(result.message)
        if self.stop.requested and not pruned and not (met and not self.cfg.finish):
            trial.set_user_attr("status", "interrupted")
            self._requeue(trial)  # retrained on resume
            raise _Interrupted()
        if pruned:
            trial.set_user_attr("status", "pruned")
            raise optuna.TrialPruned(f"pruned at epoch {pruned[0]}")
        trial.set_user_attr("status", "target_met" if met else "complete")
        return result.accuracies[-1] if result.accuracies else 0.0

    @staticmethod
    def _requeue(trial: optuna.Trial) -> None:
        trial.study.enqueue_trial(trial.params, user_attrs=studies.carried(trial.user_attrs) or None,
                                  skip_if_exists=False)

    def _save(self, number: int, model: torch.nn.Module) -> str:
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / f"trial_{number}.pt"
        torch.save(model.state_dict(), path)
        return str(path.relative_to(self.weights_dir.parent))


def train_config(cfg: SearchConfig):
    """The trainer's settings for every candidate: the task's schedule, the space's ``train:``, the options."""
    from .train import TrainConfig

    task = cfg.space.task
    options = {**cfg.space.train, **cfg.train_options}
    options.setdefault("progress", sys.stderr.isatty())  # no progress bar in logs and pipes
    # A space may fix a schedule shorter than the task's epoch budget (train: {epochs: 6}).
    epochs = options.pop("epochs", task.max_epochs)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= task.max_epochs:
        raise NasError(f"{cfg.space.source}: train.epochs must be a whole number from 1 to task.max_epochs "
                       f"({task.max_epochs}), got {epochs!r}")
    try:
        return TrainConfig(epochs=epochs, target=task.target, seed=cfg.seed,
                           stop_at_target=not cfg.finish, device=cfg.device, **options)
    except TypeError as err:
        raise NasError(f"{cfg.space.source}: bad trainer setting under 'train:' ({err}); "
                       "use fields of nas.train.TrainConfig") from None


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


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by outcome. ``failed`` are trials whose worker died or was stopped (their params are
    queued again, so they are not counted as trained); ``training`` are trained candidates that a
    worker is training right now."""
    out = {"trained": 0, "rejected": 0, "pruned": 0, "duplicate": 0, "failed": 0, "meeting": 0, "training": 0}
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("status")
        if t.state == TrialState.FAIL:
            out["failed"] += 1
        elif t.state == TrialState.RUNNING:
            out["training"] += bool(t.user_attrs.get("trained"))
        elif status == "rejected":
            out["rejected"] += 1
        elif status == "duplicate":
            out["duplicate"] += 1
        elif t.user_attrs.get("trained") and t.state in TRAINED_STATES:
            out["trained"] += 1
            out["pruned"] += t.state == TrialState.PRUNED
            out["meeting"] += bool(t.user_attrs.get("meets_target"))
    return out


def meeting(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trained trials that meet the target (and so every constraint), best first."""
    found = [t for t in study.get_trials(deepcopy=False, states=TRAINED_STATES)
             if t.user_attrs.get("meets_target") and t.user_attrs.get("status") != "duplicate"]
    return sorted(found, key=lambda t: (-max(t.user_attrs["accuracies"]), t.user_attrs["params"]))


def run(cfg: SearchConfig, data=None, train_fn: Callable | None = None, on_trial: Callable | None = None) -> Outcome:
    """Run (or resume) the search until the study holds ``cfg.trials`` trained candidates.

    Everything the user can get wrong (space, enqueued designs, data, results folder, storage) is
    checked before the study is created or changed.
    """
    require_feasible(feasibility(cfg.space, samples=1000, seed=cfg.seed))
    fixed = [point(cfg.space, design) for design in cfg.enqueue]
    train_config(cfg)
    if data is None:
        data = load_data(cfg)
    _check_data(cfg, data)
    studies.writable(studies.study_dir(cfg.name, cfg.results) / "weights")
    study = open_study(cfg)
    if hasattr(data, "mean"):  # an exported model needs its inputs prepared the same way
        study.set_user_attr("input_norm", {"mean": list(data.mean), "std": list(data.std)})
    for params, design in fixed:
        study.enqueue_trial(params, user_attrs={"design": design}, skip_if_exists=True)
    outcome = Outcome(study)
    start, here = time.perf_counter(), {"rejected": 0, "trained": 0, "nan": 0}
    deadline = start + cfg.timeout if cfg.timeout else None
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

    with _Stop() as stop:
        objective = Objective(cfg, data, stop, train_fn)
        poll = objective.poll
        while not (stop.requested or diverged or here["rejected"] >= max_rejections):
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                break
            try:
                studies.fail_stale(study)  # a dead worker's trial is queued again before we count
                if _to_start(study, cfg.trials):
                    try:
                        study.optimize(objective, timeout=left, callbacks=[after_trial], catch=(_Interrupted,),
                                       gc_after_trial=False)
                    except ValueError as err:
                        # Our heartbeat lapsed (a stalled machine) and another worker failed the trial and
                        # queued it again: Optuna cannot tell it. Drop it and go on; the copy gets trained.
                        if "Cannot tell a FAIL trial" not in str(err):
                            raise
                elif counts(study)["training"] and studies.heartbeat_enabled(study):
                    time.sleep(poll)  # others still train: their results (or their failure) may need us
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
    outcome.interrupted = stop.requested
    outcome.seconds = time.perf_counter() - start
    c = counts(study)
    outcome.trained, outcome.rejected, outcome.pruned, outcome.duplicates = c["trained"], c["rejected"], c["pruned"], c["duplicate"]
    outcome.failed = c["failed"]
    outcome.check_ms = [t.user_attrs["check_ms"] for t in study.get_trials(deepcopy=False) if "check_ms" in t.user_attrs]
    outcome.meeting = meeting(study)
    return outcome


def _to_start(study: optuna.Study, trials: int) -> bool:
    """Whether to start another trial: one is queued, or the trained ones (counting those other
    workers train now, when dead workers are detected) are fewer than ``trials``."""
    c = counts(study)
    training = c["training"] if studies.heartbeat_enabled(study) else 0
    return _queued(study) or c["trained"] + training < trials


def _queued(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def load_data(cfg: SearchConfig):
    from . import data as datasets
    from .train import pick_device
    data = datasets.load(cfg.space.task.dataset, data_dir=cfg.data_dir, device=pick_device(cfg.device))
    return data.subset(train=cfg.train_limit, seed=cfg.seed) if cfg.train_limit else data


def save_spec(study_name: str, trial: optuna.trial.FrozenTrial, results: Path | None = None) -> Path:
    from .spec import Spec
    path = studies.study_dir(study_name, results) / "specs" / f"trial_{trial.number}.yaml"
    spec = Spec.from_dict(trial.user_attrs["spec"])
    return spec.save(path)


def describe(outcome: Outcome, cfg: SearchConfig) -> list[str]:
    """The end-of-search lines: counts, then every candidate that meets the target."""
    ms = outcome.check_ms
    lines = [f"study {cfg.name}: {outcome.trained} trained ({outcome.pruned} pruned), "
             f"{outcome.rejected} rejected before training"
             + (f" (check median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms)" if ms else "")
             + f", {outcome.duplicates} duplicates"
             + (f", {outcome.failed} failed (workers stopped or lost)" if outcome.failed else "")
             + f"; {outcome.seconds:.0f} s this run"]
    if not outcome.meeting:
        lines.append(f"no candidate meets the target {cfg.space.task.target:.2%} yet")
        return lines
    lines.append(f"candidates meeting the target {cfg.space.task.target:.2%}:")
    for t in outcome.meeting:
        accs = t.user_attrs["accuracies"]
        path = save_spec(cfg.name, t, cfg.results)
        lines.append(f"  trial {t.number:>3}  {t.user_attrs['params']:>7,} params  RF {t.user_attrs['rf']:>3}  "
                     f"target met at epoch {t.user_attrs['target_epoch']}  accuracy {accs[-1]:.4f}  {path}")
    return lines

