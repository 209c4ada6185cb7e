"""What a trial is: the attributes it records, its statuses, the counts, and the one meaning of "best".

The search, confirmation, report, export and the command line all read trials through this module.

**Search trials** (the study ``S``) choose on a validation split held out from the training images;
the test set is never read while searching. User attributes:

=====================  =========================================================================
``spec``               the candidate's spec (``Spec.to_dict()``)
``fingerprint``        hash of the net itself, to spot the same net reached from other choices
``params``, ``rf``, ``macs``, ``out_shape``, ``features``   the analysis figures (``latency`` too, when it is the cost)
``failures``           constraints that fail (empty when feasible)
``check_ms``           time to build and check the candidate, before any training
``status``             one of :data:`SEARCH_STATUSES`
``trained``            True when the candidate was trained (even partly)
``accuracies``         validation accuracy after each epoch
``curve``              ``[fraction of the schedule's images seen, validation accuracy]`` at each rung and epoch end
``rungs``              ``{images seen: validation accuracy}`` at each rung inside an epoch
``stopped_at``         where a ``stopped`` trial was stopped (``"30,506 images"``, ``"epoch 3"``)
``predicted``          a ``stopped`` trial's forecast final validation accuracy (its objective value)
``lr``                 the peak learning rate of the run that counts (confirmation trains at it too)
``lr_tries``           each peak rate tried, in order: ``{"lr", "outcome": "learned" | "never left
                       chance" | "fell back to chance" | "nan", "accuracy" and "at": the last check's
                       validation accuracy and fraction of the schedule}``. A net still at chance once
                       its rate has peaked, fallen back to chance, or diverging trains again from the
                       start at a lower rate (:func:`nas.schedule.rates`); status ``stuck`` when no
                       rate moved it
``target_epoch``       first epoch whose validation accuracy reached the target, or None
``reached_target``     the validation accuracy reached the target (a hint, not a result: see below)
``seconds``            training wall time
``weights``            state_dict file, relative to ``results/<study>/``
``design``             documented design name, for fixed trials
``worker``             ``host:pid`` of the worker that ran the trial (feasible candidates)
``threads``            the torch threads it trained with
``message``            why it ended as it did (a divergence, a skip), in words
``duplicate_of``       for a ``duplicate``: the trial that trained the same net
``retry_of``           for a trial re-queued because its worker died: the number of the trial it repeats
=====================  =========================================================================

A search trial's values are ``(validation accuracy, cost)``, the cost being what the task names
(``params``, ``macs`` or ``latency``). A trial stopped early because even an optimistic forecast of
its end misses the target (status ``stopped``, :mod:`nas.forecast`) is complete too, with its
*forecast* final accuracy as its value, so the sampler learns from it. Each trained trial also
carries the constraint ``short``: how far its (forecast) end falls below the validation threshold
(the study's ``val_threshold``), so TPE ranks the nets that may reach the target above the rest,
and among the rest prefers those that came closest. The **front** is the set of
trials trained to the end of the schedule (or to the target) that no other beats on both.
A ``dominated`` trial was not trained: it costs no less than a net that already reached the target.

**Confirmation runs** (the companion study ``S.confirm`` in the same storage) retrain one design
with one seed on every training image, with the task's fixed schedule, and test it once after the
last epoch. User attributes: ``kind`` (``"confirm"``), ``fingerprint``, ``seed``, ``spec``,
``source`` (``"trial 14"`` or a design name), the analysis figures, ``accuracy`` (final test
accuracy), ``epochs``, ``seconds``, ``weights``, ``status`` (one of :data:`CONFIRM_STATUSES`),
``every_seed`` (confirm every seed, even after one falls short), ``lr``, ``message``, ``worker``.

Every attribute is written through :func:`write`, which refuses a name outside these tables (and a
status outside the vocabularies), so a typo fails where it is made, not as a key no reader reads.

A design **meets the target** only when every one of its confirmation seeds reaches it at the final
epoch, and **best** (:func:`best`) is the cheapest design that meets it, a higher mean test accuracy
breaking ties.

>>> c = Confirmation("ab12", "trial 3", {"params": 900}, {0: 0.995, 1: 0.993, 2: 0.996}, wanted=3)
>>> c.done, c.meets(0.994), f"{c.mean:.4f}", c.line(0.994, "params")
(True, False, '0.9947', 'trial 3: 900 params; 2/3 seeds >= 99.40%; test mean 99.47%, min 99.30%, max 99.60%')
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

# Optuna's state is only the sampler's channel: COMPLETE for a net trained to the end (its values),
# PRUNED for one trained but not to the end (the sampler reads its curve), FAIL for a dead worker's.
# What happened to a trial is its ``status``, one of SEARCH_STATUSES: every count, line and report
# reads that, so a diverged net ("nan", told PRUNED) is never shown or counted as stopped or pruned.
TRAINED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
SEARCH_STATUSES = ("rejected", "dominated", "duplicate", "target_met", "complete", "stopped", "stuck", "pruned", "nan",
                   "interrupted")  # "pruned": studies made before forecasts (halving or the old target pruner)
EARLY_STOPS = ("stopped", "pruned")
FINISHED = ("target_met", "complete")  # trained to the end of the schedule, or to the target
CONFIRM_STATUSES = ("confirmed", "nan", "interrupted", "duplicate", "skipped")
CONFIRM_SUFFIX = ".confirm"
# The attribute names of the tables above: what :func:`write` accepts, for a trial and for a study.
TRIAL_ATTRS = frozenset((
    "spec", "fingerprint", "params", "rf", "macs", "out_shape", "features", "latency", "failures", "check_ms",
    "status", "trained", "accuracies", "curve", "rungs", "stopped_at", "predicted", "lr", "lr_tries",
    "target_epoch", "reached_target", "seconds", "weights", "design", "worker", "threads", "message",
    "duplicate_of", "retry_of",
    "kind", "seed", "source", "accuracy", "epochs", "every_seed"))  # confirmation runs'


def write(to: optuna.Study | optuna.Trial, **attrs: Any) -> None:
    """Record ``attrs`` on a trial (names from the tables above) or a study (:class:`StudyTask`'s
    fields): the one way nas writes a user attribute.

    >>> study = optuna.create_study(); trial = study.ask()
    >>> write(trial, status="stopped", predicted=0.991); trial.user_attrs["predicted"]
    0.991
    >>> write(trial, predicted_acc=0.991)
    Traceback (most recent call last):
    ValueError: no trial attribute 'predicted_acc': add it to nas.trials' tables, or use one of them
    >>> write(trial, status="pruned_nan")
    Traceback (most recent call last):
    ValueError: status 'pruned_nan' is in neither SEARCH_STATUSES nor CONFIRM_STATUSES
    """
    for key, value in checked(attrs, study=isinstance(to, optuna.Study)).items():
        to.set_user_attr(key, value)


def checked(attrs: dict[str, Any], study: bool = False) -> dict[str, Any]:
    """``attrs`` if every name and status is one of the tables' (see :func:`write`); for the
    attributes of a trial enqueued to run later."""
    known = StudyTask.__dataclass_fields__ if study else TRIAL_ATTRS
    for key, value in attrs.items():
        if key not in known:
            raise ValueError(f"no {'study' if study else 'trial'} attribute {key!r}: add it to nas.trials' "
                             "tables, or use one of them")
        if key == "status" and value not in SEARCH_STATUSES + CONFIRM_STATUSES:
            raise ValueError(f"status {value!r} is in neither SEARCH_STATUSES nor CONFIRM_STATUSES")
    return attrs


# What a re-queued run keeps of the one it repeats (a dead worker's, or one stopped by Ctrl-C).
RUN_KEYS = ("kind", "fingerprint", "seed", "epochs", "spec", "source", "params", "rf", "macs", "latency", "features",
            "failures", "every_seed", "lr")


def carried(user_attrs: dict) -> dict:
    """What a re-queued trial keeps: the design it was enqueued as, and, for a confirmation run,
    what to train (a search trial's figures are measured again from its params)."""
    keys = ("design",) + (RUN_KEYS if user_attrs.get("kind") == "confirm" else ())
    return {k: v for k, v in user_attrs.items() if k in keys}


def confirm_study_name(study_name: str, train_limit: int | None = None) -> str:
    """Where a study's confirmation runs live; quick looks on a slice of the training images
    (``--train-limit``) get a study of their own, so they never count as confirmations."""
    return study_name + CONFIRM_SUFFIX + (f"-limit{train_limit}" if train_limit else "")


# -- the study -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyTask:
    """What a study recorded of its task when it was made (:func:`nas.search.check_frozen`), typed.
    Report, export and confirmation read the task from here, never from the space file as it is now.

    >>> study = optuna.create_study()
    >>> study.set_user_attr("target", 0.994); study.set_user_attr("constraints", {"max_params": 20000})
    >>> task = StudyTask.of(study)
    >>> task.target, task.cost, task.seeds, task.constraints
    (0.994, 'params', 3, {'max_params': 20000})
    """

    space: str = ""
    space_file: str | None = None
    space_digest: str | None = None  # of the nets and train settings (:meth:`nas.space.Space.digest`)
    dataset: str = ""
    target: float | None = None  # None: not a study made by `nas search`
    max_epochs: int | None = None
    epochs: int | None = None  # the schedule search trials train
    confirm_epochs: int | None = None  # the schedule confirmation runs train
    constraints: dict[str, Any] = field(default_factory=dict)
    cost: str = "params"
    seeds: int = 3
    val_threshold: float | None = None
    input_norm: dict[str, list[float]] | None = None
    split: dict[str, Any] | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> "StudyTask":
        u = study.user_attrs
        return cls(**{f: u[f] for f in cls.__dataclass_fields__ if u.get(f) is not None})


# -- search trials --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """A search trial's record, typed: what the search wrote (the table above), read in one place.

    Studies made by older versions lack some attributes; they read as the defaults.

    >>> t = optuna.trial.create_trial(value=0.9, user_attrs={"status": "complete", "params": 900, "rf": 30,
    ...                               "accuracies": [0.8, 0.9], "trained": True})
    >>> r = Record.of(t)
    >>> r.status, r.params, r.val_accuracy, r.cost("params"), r.design
    ('complete', 900, 0.9, 900, '')
    """

    number: int
    status: str  # one of SEARCH_STATUSES, else the Optuna state's name (a trial still running, say)
    trained: bool = False
    design: str = ""
    spec: dict | None = None
    fingerprint: str | None = None
    params: int | None = None
    rf: int | None = None
    macs: int | None = None
    latency: float | None = None
    failures: tuple[str, ...] | None = None  # None: not checked (an old study)
    check_ms: float | None = None
    accuracies: tuple[float, ...] = ()
    curve: tuple[tuple[float, float], ...] = ()
    stopped_at: str | None = None
    predicted: float | None = None
    lr: float | None = None
    target_epoch: int | None = None
    reached_target: bool = False
    seconds: float | None = None
    weights: str | None = None
    message: str = ""
    duplicate_of: int | None = None
    retry_of: int | None = None
    worker: str = ""  # host:pid
    rungs: dict[str, float] = field(default_factory=dict)  # images seen (as text) -> validation accuracy
    lr_tries: tuple[dict, ...] = ()

    @classmethod
    def of(cls, t: FrozenTrial | optuna.Trial) -> "Record":
        """The record of a finished trial, or of a live one (a trial being checked or trained)."""
        a = t.user_attrs
        failures = a.get("failures")
        state = getattr(t, "state", TrialState.RUNNING)
        return cls(
            number=t.number, status=a.get("status") or state.name.lower(), trained=bool(a.get("trained")),
            design=a.get("design") or "", spec=a.get("spec"), fingerprint=a.get("fingerprint"),
            params=a.get("params"), rf=a.get("rf"), macs=a.get("macs"), latency=a.get("latency"),
            failures=None if failures is None else tuple(failures), check_ms=a.get("check_ms"),
            accuracies=tuple(x for x in a.get("accuracies") or () if x is not None),
            curve=tuple(tuple(p) for p in a.get("curve") or ()), stopped_at=a.get("stopped_at", a.get("pruned_at")),
            predicted=a.get("predicted"), lr=a.get("lr"), target_epoch=a.get("target_epoch"),
            reached_target=bool(a.get("reached_target")), seconds=a.get("seconds"), weights=a.get("weights"),
            message=str(a.get("message") or ""), duplicate_of=a.get("duplicate_of"), retry_of=a.get("retry_of"),
            worker=str(a.get("worker") or ""), rungs=dict(a.get("rungs") or {}), lr_tries=tuple(a.get("lr_tries") or ()))

    @property
    def val_accuracy(self) -> float | None:
        """The validation accuracy it ended with, or None if it has none."""
        return self.accuracies[-1] if self.accuracies else None

    def cost(self, name: str) -> float | None:
        """The figure the task calls its cost: ``params``, ``macs`` or ``latency``."""
        return getattr(self, name)

    @property
    def rung_stop(self) -> tuple[int, float] | None:
        """(images seen, validation accuracy) where it was stopped between epochs, at a rung, or None."""
        if not (str(self.stopped_at or "").endswith("images") and self.rungs):
            return None
        images = max(self.rungs, key=int)
        return int(images), self.rungs[images]

    @property
    def first_try(self) -> dict | None:
        """The first try of a net trained again at a lower learning rate, or None."""
        return self.lr_tries[0] if len(self.lr_tries) > 1 else None


def trained(t: FrozenTrial) -> bool:
    """Trained to an end of its own: not a duplicate of another trial's net, not a failed worker's."""
    return (t.state in TRAINED_STATES and bool(t.user_attrs.get("trained"))
            and t.user_attrs.get("status") != "duplicate")


def finished(t: FrozenTrial) -> bool:
    """Trained to the end of its schedule, or until it reached the target."""
    return trained(t) and t.user_attrs.get("status") in FINISHED


def reached(t: FrozenTrial) -> bool:
    """A feasible trial whose validation accuracy reached the target (its hint for confirmation)."""
    return finished(t) and bool(t.user_attrs.get("reached_target")) and not t.user_attrs.get("failures")


def cost_cap(study: optuna.Study, cost: str = "params") -> float | None:
    """The cost of the cheapest net that reached the target on validation: no dearer net is worth
    training any more (None until one has)."""
    costs = [t.user_attrs[cost] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if reached(t) and t.user_attrs.get(cost) is not None]
    return min(costs, default=None)


def full_curves(study: optuna.Study) -> list[list[tuple[float, float]]]:
    """The curves of trials that trained their whole schedule: what :mod:`nas.forecast` is calibrated on."""
    return [[tuple(p) for p in t.user_attrs["curve"]] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if trained(t) and t.user_attrs.get("status") == "complete" and t.user_attrs.get("curve")]


def val_accuracy(t: FrozenTrial) -> float | None:
    """The validation accuracy the trial ended with (its objective), or None if it has none."""
    accs = t.user_attrs.get("accuracies") or []
    return accs[-1] if accs else None


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by outcome. ``failed`` are trials whose worker died or was stopped (their params are
    queued again, so they are not counted as trained); ``training`` are trained candidates that a
    worker is training right now; ``stopped`` those stopped early (forecast short of the target),
    ``nan`` those that diverged, ``stuck`` those that stayed at chance at every learning rate tried,
    ``retried`` those trained again at a lower rate, ``reached`` those whose validation accuracy
    reached the target."""
    out = {"trained": 0, "rejected": 0, "dominated": 0, "stopped": 0, "nan": 0, "stuck": 0, "retried": 0,
           "duplicate": 0, "failed": 0, "reached": 0, "training": 0}
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("status")
        if t.state == TrialState.FAIL:
            out["failed"] += 1
        elif t.state == TrialState.RUNNING:
            out["training"] += bool(t.user_attrs.get("trained"))
        elif status in ("rejected", "dominated", "duplicate"):
            out[status] += 1
        elif trained(t):
            out["trained"] += 1
            out["stopped"] += status in EARLY_STOPS
            out["nan"] += status == "nan"
            out["stuck"] += status == "stuck"
            out["retried"] += Record.of(t).first_try is not None
            out["reached"] += reached(t)
    return out


def front(study: optuna.Study, cost: str = "params") -> list[FrozenTrial]:
    """Feasible trials trained to the end (or the target) that no other beats on both validation
    accuracy and ``cost``, cheapest first (each one more accurate than every cheaper one)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if finished(t) and not t.user_attrs.get("failures") and val_accuracy(t) is not None
            and t.user_attrs.get(cost) is not None]
    done.sort(key=lambda t: (t.user_attrs[cost], -val_accuracy(t), t.number))
    out: list[FrozenTrial] = []
    for t in done:
        if not out or val_accuracy(t) > val_accuracy(out[-1]):
            out.append(t)
    return out


def to_confirm(study: optuna.Study, target: float, cost: str = "params", limit: int = 3) -> list[FrozenTrial]:
    """The candidates that matter, at most ``limit``: feasible trials trained to the end whose
    validation accuracy is within the noise of ``target`` (the study's ``val_threshold``,
    :func:`nas.forecast.within_noise`), cheapest first, whether or not they are on the front; then,
    if fewer are, the most accurate of the rest of the front.

    Within the noise, a net that a cheaper one beats on validation by a hair is no worse (mnist_dws6k:
    four nets within 0.02 points, and only the front's one was confirmed). Confirmation is
    sequential and stops at a design's first seed below the target, so trying the cheap near-misses
    first costs at most one run each; confirmation, not the search, decides.
    """
    target = min(target, study.user_attrs.get("val_threshold", target))
    on_front = front(study, cost)
    near = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if finished(t) and not t.user_attrs.get("failures") and t.user_attrs.get(cost) is not None
            and (val_accuracy(t) or 0.0) >= target]
    near.sort(key=lambda t: (t.user_attrs[cost], -val_accuracy(t), t.number))
    rest = sorted((t for t in on_front if val_accuracy(t) < target), key=lambda t: -val_accuracy(t))
    return (near + rest)[:limit]


# -- confirmations ---------------------------------------------------------------------------------

FIGURES = ("params", "rf", "macs", "latency", "failures")  # what a run carries of its net's analysis


@dataclass(frozen=True)
class Run:
    """A confirmation run's record, typed: one design, one seed, every training image, tested once.

    >>> t = optuna.trial.create_trial(value=0.995, user_attrs={"kind": "confirm", "fingerprint": "ab12", "seed": 1,
    ...     "epochs": 15, "source": "trial 3", "params": 900, "accuracy": 0.995, "status": "confirmed"})
    >>> r = Run.of(t)
    >>> r.seed, r.figures, r.accuracy, r.same_run("ab12", 1, 15)
    (1, {'params': 900}, 0.995, True)
    """

    number: int
    status: str  # one of CONFIRM_STATUSES, else the Optuna state's name (a queued or running run)
    kind: str = ""
    fingerprint: str = ""
    seed: int = 0
    epochs: int | None = None  # None: queued before runs recorded their schedule
    spec: dict | None = None
    source: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    every_seed: bool = False
    accuracy: float = 0.0
    seconds: float | None = None
    weights: str | None = None
    message: str = ""

    @classmethod
    def of(cls, t: FrozenTrial | optuna.Trial) -> "Run":
        a = t.user_attrs
        state = getattr(t, "state", TrialState.RUNNING)
        return cls(number=t.number, status=a.get("status") or state.name.lower(), kind=a.get("kind", ""),
                   fingerprint=a.get("fingerprint", ""), seed=a.get("seed", 0), epochs=a.get("epochs"),
                   spec=a.get("spec"), source=a.get("source", ""),
                   figures={k: a[k] for k in FIGURES if a.get(k) is not None}, lr=a.get("lr"),
                   every_seed=bool(a.get("every_seed")), accuracy=float(a.get("accuracy", 0.0)),
                   seconds=a.get("seconds"), weights=a.get("weights"), message=str(a.get("message") or ""))

    def same_run(self, fingerprint: str, seed: int, epochs: int) -> bool:
        """This run trains that design with that seed on that schedule."""
        return (self.fingerprint == fingerprint and self.seed == seed
                and (self.epochs if self.epochs is not None else epochs) == epochs)

@dataclass
class Confirmation:
    """One design's confirmation: the final test accuracy of each seed that has finished."""

    fingerprint: str
    source: str  # "trial 14", or a documented design's name
    figures: dict[str, Any]  # params, rf, macs (and latency) of the net
    accuracies: dict[int, float] = field(default_factory=dict)  # seed -> final test accuracy
    wanted: int = 3
    epochs: int | None = None
    spec: dict | None = None
    weights: dict[int, str] = field(default_factory=dict)  # seed -> weights file under results/<study>/

    @property
    def done(self) -> bool:
        return len(self.accuracies) >= self.wanted

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies.values()) if self.accuracies else 0.0

    @property
    def min(self) -> float:
        return min(self.accuracies.values(), default=0.0)

    @property
    def max(self) -> float:
        return max(self.accuracies.values(), default=0.0)

    @property
    def feasible(self) -> bool:
        """The net meets every hard constraint of the task (a documented design need not)."""
        return not self.figures.get("failures")

    def fails(self, target: float) -> bool:
        """A seed finished below ``target``: the design cannot meet it, whatever its other seeds do."""
        return any(acc < target for acc in self.accuracies.values())

    def passed(self, target: float) -> int:
        return sum(acc >= target for acc in self.accuracies.values())

    def meets(self, target: float) -> bool:
        """Every wanted seed has finished, and each one's final test accuracy reaches ``target``."""
        return self.done and self.passed(target) == len(self.accuracies)

    def verdict(self, target: float, beaten: bool = False) -> str:
        """What confirmation says of the design so far; ``beaten``: a cheaper design meets the target.

        >>> Confirmation("ab12", "trial 3", {}, {1: 0.9936}, wanted=3).verdict(0.994)
        'FAILS'
        """
        if self.meets(target):
            return "meets the target"
        if self.fails(target):
            return "FAILS"
        return "not needed: a cheaper design meets the target" if beaten else "still running"

    def line(self, target: float, cost: str = "params", name: str | None = None) -> str:
        size = self.figures.get(cost)
        shown = f"{size:,} {cost}" if isinstance(size, int) else f"{cost} {size:.3g}" if size is not None else ""
        seeds = f"{self.passed(target)}/{len(self.accuracies)} seeds >= {target:.2%}"
        seeds += f" at epoch {self.epochs}" if self.epochs else ""
        if not self.done:
            left = self.wanted - len(self.accuracies)
            seeds += f" ({left} not run: one short seed decides)" if self.fails(target) else f" ({left} still to run)"
        name = name or self.source
        if not self.accuracies:
            return f"{name}: {shown}; no seed finished yet"
        return f"{name}: {shown}; {seeds}; test mean {self.mean:.2%}, min {self.min:.2%}, max {self.max:.2%}"


def confirm_left(runs: optuna.Study) -> float | None:
    """Seconds the confirmation runs still queued need at most, from the runs finished so far (None
    before one has finished). Each waiting run costs the finished runs' median time and a running
    one half of it, shared by the workers running now plus the caller; "at most", since a seed below
    the target skips the rest of its design.

    >>> runs = optuna.create_study()
    >>> for seconds in (100, 120, 140):
    ...     runs.add_trial(optuna.trial.create_trial(value=0.99, user_attrs={"status": "confirmed", "seconds": seconds}))
    >>> runs.enqueue_trial({}); runs.enqueue_trial({})
    >>> confirm_left(runs)  # two waiting runs of 120 s, one worker
    240.0
    """
    took = [t.user_attrs["seconds"] for t in runs.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("status") == "confirmed" and t.user_attrs.get("seconds")]
    if not took:
        return None
    waiting = len(runs.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    running = len(runs.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return statistics.median(took) * (waiting + running / 2) / (running + 1)


def confirmations(study: optuna.Study | None, wanted: int = 3, epochs: int | None = None) -> dict[str, Confirmation]:
    """Every design's confirmation in the companion study ``study`` (None: no confirmation yet),
    counting only runs of the schedule of ``epochs`` epochs when it is given."""
    out: dict[str, Confirmation] = {}
    if study is None:
        return out
    for r in map(Run.of, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
        if r.kind != "confirm" or r.status == "duplicate":
            continue
        if epochs is not None and r.epochs != epochs:
            continue
        c = out.setdefault(r.fingerprint, Confirmation(
            r.fingerprint, r.source, {k: r.figures.get(k) for k in FIGURES}, wanted=wanted, epochs=r.epochs,
            spec=r.spec))
        c.accuracies[r.seed] = r.accuracy
        if r.weights:
            c.weights[r.seed] = r.weights
    return out


def best(found: dict[str, Confirmation], target: float, cost: str = "params") -> Confirmation | None:
    """The cheapest confirmed design that meets ``target`` and every constraint; a higher mean test
    accuracy breaks ties."""
    meeting = [c for c in found.values() if c.meets(target) and c.feasible and c.figures.get(cost) is not None]
    return min(meeting, key=lambda c: (c.figures[cost], -c.mean), default=None)
