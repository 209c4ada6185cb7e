"""Where studies live: storage URLs, results folders, and what each trial records.

A study is an Optuna study. ``--storage`` takes any URL Optuna does (``sqlite:///...``,
``postgresql://...``) or ``journal:PATH`` for Optuna's journal file (several processes on one
machine). The default is ``sqlite:///results/studies.db``; each study's files (weights, specs,
reports) go under ``results/<study>/``.

Trial user attributes written by the search (read by report and export):

=================  =============================================================================
``spec``           the candidate's spec (``Spec.to_dict()``)
``fingerprint``    hash of the net itself, to spot the same net reached from other choices
``params``, ``rf``, ``macs``, ``features``   the analysis figures
``failures``       constraints that fail (empty when feasible)
``check_ms``       time to build and check the candidate, before any training
``status``         rejected | duplicate | target_met | complete | pruned | nan | interrupted
``trained``        True when the candidate was trained (even partly)
``accuracies``     test accuracy after each epoch
``target_epoch``   first epoch at which the target was met, or None
``seconds``        training wall time
``meets_target``   feasible and target met
``weights``        state_dict file, relative to ``results/<study>/``
``design``         documented design name, for fixed trials
=================  =============================================================================
"""
from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from .errors import NasError

RESULTS = Path(os.environ.get("NAS_RESULTS", "results"))
DEFAULT_STORAGE = f"sqlite:///{RESULTS / 'studies.db'}"
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 60


def storage(url: str | None = None, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``. RDB storages get heartbeats, so a killed worker's trial
    is marked failed and retried by another worker."""
    url = url or DEFAULT_STORAGE
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        _writable(path.parent)
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise NasError(f"storage {url!r} is not a URL: use sqlite:///path.db, postgresql://user@host/db "
                       "or journal:path.log")
    if url.startswith("sqlite:///"):
        _writable(Path(url[len("sqlite:///"):]).parent)
    kwargs = {}
    if heartbeat:
        kwargs = dict(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url), **kwargs)
    except ImportError as err:
        raise NasError(f"storage {url.split(':')[0]} needs a driver ({err.name} is missing): "
                       "pip install 'nas[postgres]'") from None
    except Exception as err:  # SQLAlchemy raises many kinds; the user needs one line
        reason = str(err).strip().splitlines()[0][:200]
        raise NasError(f"cannot open storage {_redact(url)}: {reason}; check the URL and that the "
                       "database server is running") from None


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NasError(f"cannot create results folder {folder}: {err.strerror}; "
                       "pass a writable --storage or --results") from None
    if not os.access(folder, os.W_OK):
        raise NasError(f"results folder {folder} is not writable; pass a writable --storage or --results")


def study_dir(study_name: str, results: Path | None = None) -> Path:
    return (results or RESULTS) / study_name


def load(study_name: str | None, url: str | None = None) -> optuna.Study:
    """An existing study; ``study_name`` may be None when the storage holds exactly one."""
    store = storage(url, heartbeat=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise NasError(f"storage {_redact(url or DEFAULT_STORAGE)} holds {len(names)} studies "
                           f"({', '.join(names) or 'none'}); pick one with --study")
        study_name = names[0]
    if study_name not in names:
        raise NasError(f"no study {study_name!r} in {_redact(url or DEFAULT_STORAGE)} "
                       f"(studies: {', '.join(names) or 'none'}); run `nas search` first or pass --storage")
    return optuna.load_study(study_name=study_name, storage=store)
