"""The private Optuna internals nas relies on, each checked where it lives: a new Optuna that moves one
fails here, by name, rather than deep inside a search. pyproject.toml bounds Optuna below the next
major version; this test is what a bump has to pass."""
import inspect

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from nas.sampler import Sampler


def test_heartbeat_helpers_that_confirmation_and_stale_checks_use():
    from optuna.storages import _heartbeat

    assert callable(_heartbeat.get_heartbeat_thread) and callable(_heartbeat.is_heartbeat_enabled)
    assert list(inspect.signature(_heartbeat.get_heartbeat_thread).parameters) == ["trial_id", "storage"]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_internals(tmp_path, kind):
    storage = (f"sqlite:///{tmp_path}/s.db" if kind == "sqlite"
               else JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))))
    study = optuna.create_study(storage=storage, study_name="s")
    assert isinstance(study._storage, optuna.storages.BaseStorage)  # companion studies and summaries reach it so

    # confirmation workers claim a queued run of their choosing as Optuna's own queue does: of two, one wins
    study.enqueue_trial({}, user_attrs={"x": 1})
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1
    tid = waiting[0]._trial_id
    assert study._storage.set_trial_state_values(tid, state=optuna.trial.TrialState.RUNNING) is True
    assert study._storage.set_trial_state_values(tid, state=optuna.trial.TrialState.RUNNING) is False
    study._storage.set_trial_state_values(tid, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.set_trial_state_values(tid, state=optuna.trial.TrialState.RUNNING)


def test_journal_storage_keeps_its_backend(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    assert isinstance(storage._backend, JournalFileBackend)  # nas.study finds a lost connection there


@pytest.mark.parametrize("name", ["_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
                                  "_get_stale_trial_ids"])
def test_rdb_storage_methods_wrapped_with_retries(name):
    assert callable(getattr(RDBStorage, name)), f"RDBStorage.{name} moved: update nas.study's retry wrappers"


def test_tpe_sampler_state_reseeded_per_trial():
    s = Sampler(seed=0)
    assert hasattr(s._rng, "rng") and hasattr(s._random_sampler._rng, "rng") and isinstance(s._n_startup_trials, int)
