"""The constraint-first search: Optuna samples a point, the analysis checks it, only valid ones train.

Rejected candidates are stored as completed trials with a positive constraint value
(``trial.set_constraint``), which the TPE sampler reads to learn where the feasible region is; they cost a few
milliseconds and no training. Trained candidates report test accuracy each epoch to
:class:`TargetPruner`, which stops those that cannot reach the task's target in the epoch budget.

``--trials N`` counts trained candidates across the whole study, so running the same command again
resumes a study (or extends it with a larger N), and several workers share one count.
"""
from __future__ import annotations

import signal
import statistics
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
    interrupted: bool = False
    seconds: float = 0.0
    check_ms: list[float] = field(default_factory=list)
    meeting: list[optuna.trial.FrozenTrial] = field(default_factory=list)


class _Stop:
    """First Ctrl-C: finish the current epoch, keep everything, stop. Second: abort now."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
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
        return False


class _Interrupted(Exception):
    pass


def open_study(cfg: SearchConfig) -> optuna.Study:
    space, task = cfg.space, cfg.space.task
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=8)
    study = optuna.create_study(study_name=cfg.name, storage=studies.storage(cfg.storage), direction="maximize",
                                sampler=sampler, pruner=TargetPruner(task.target, task.max_epochs),
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
    study.enqueue_trial(params, user_attrs={"design": design}, skip_if_exists=True)
    return params


def _params_file(path: Path, space: Space) -> dict[str, Any]:
    import yaml
    try:
        params = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise NasError(f"cannot read params file {path}: {err}; check the path and YAML syntax") from None
    if not isinstance(params, dict):
        raise NasError(f"{path}: a params file maps each choice of {space.name} to a value")
    return params


class Objective:
    """One trial: sample, check, (maybe) train, record."""

    def __init__(self, cfg: SearchConfig, data, stop: _Stop, train_fn: Callable | None = None):
        from . import train as trainer
        self.cfg, self.data, self.stop = cfg, data, stop
        self.train_fn = train_fn or trainer.train
        self.trainer = trainer
        self.weights_dir = studies.study_dir(cfg.name, cfg.results) / "weights"

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
        for t in trial.study.get_trials(deepcopy=False, states=TRAINED_STATES):
            if t.user_attrs.get("fingerprint") == fp and t.user_attrs.get("trained") and t.number != trial.number:
                return t
        return None

    def _train(self, trial: optuna.Trial, spec) -> float:
        task = self.cfg.space.task
        options = {**self.cfg.space.train, **self.cfg.train_options}
        try:
            config = self.trainer.TrainConfig(epochs=task.max_epochs, target=task.target, seed=self.cfg.seed,
                                              stop_at_target=not self.cfg.finish, device=self.cfg.device, **options)
        except TypeError as err:
            raise NasError(f"{self.cfg.space.source}: bad trainer setting under 'train:' ({err})") from None
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
        result = self.train_fn(model, self.data, config, on_epoch=on_epoch)
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
            trial.study.enqueue_trial(trial.params, skip_if_exists=False)  # retrained on resume
            raise _Interrupted()
        if pruned:
            trial.set_user_attr("status", "pruned")
            raise optuna.TrialPruned(f"pruned at epoch {pruned[0]}")
        trial.set_user_attr("status", "target_met" if met else "complete")
        return result.accuracies[-1] if result.accuracies else 0.0

    def _save(self, number: int, model: torch.nn.Module) -> str:
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / f"trial_{number}.pt"
        torch.save(model.state_dict(), path)
        return str(path.relative_to(self.weights_dir.parent))


def counts(study: optuna.Study) -> dict[str, int]:
    out = {"trained": 0, "rejected": 0, "pruned": 0, "duplicate": 0, "failed": 0, "meeting": 0}
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("status")
        if t.state == TrialState.FAIL:
            out["failed"] += 1
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
    """Run (or resume) the search until the study holds ``cfg.trials`` trained candidates."""
    require_feasible(feasibility(cfg.space, samples=1000, seed=cfg.seed))
    study = open_study(cfg)
    for design in cfg.enqueue:
        enqueue(study, cfg.space, design)
    if data is None:
        data = load_data(cfg)
    outcome = Outcome(study)
    start, rejected_here = time.perf_counter(), [0]
    max_rejections = 200 * cfg.trials + 1000

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        rejected_here[0] += trial.user_attrs.get("status") == "rejected"
        if on_trial:
            on_trial(trial)
        enough = counts(study)["trained"] >= cfg.trials and not _queued(study)
        if stop.requested or enough or rejected_here[0] >= max_rejections:
            study.stop()

    with _Stop() as stop:
        if counts(study)["trained"] < cfg.trials or _queued(study):
            study.optimize(Objective(cfg, data, stop, train_fn), timeout=cfg.timeout, callbacks=[after_trial],
                           catch=(_Interrupted,), gc_after_trial=False)
    outcome.interrupted = stop.requested
    outcome.seconds = time.perf_counter() - start
    c = counts(study)
    outcome.trained, outcome.rejected, outcome.pruned, outcome.duplicates = c["trained"], c["rejected"], c["pruned"], c["duplicate"]
    outcome.check_ms = [t.user_attrs["check_ms"] for t in study.get_trials(deepcopy=False) if "check_ms" in t.user_attrs]
    outcome.meeting = meeting(study)
    return outcome


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
             + f", {outcome.duplicates} duplicates; {outcome.seconds:.0f} s this run"]
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

