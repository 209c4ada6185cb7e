"""Where studies live: storage URLs (checked before anything is created), results folders, heartbeats.

A study is an Optuna study. ``--storage`` takes any URL Optuna does (``sqlite:///...``,
``postgresql://...``) or ``journal:PATH`` for Optuna's journal file (several processes on one
machine). The default is ``sqlite:///runs/studies.db`` (``$NAS_RESULTS/studies.db``); each study's
files (weights, specs, reports) go under ``runs/<study>/``. The repository's ``results/`` holds the
shipped example studies: read them with ``--results results``.

What each trial records, and what "best" means, is :mod:`nas.trials`.

Several workers: RDB storages (SQLite, PostgreSQL) record a heartbeat for each running trial every
``NAS_HEARTBEAT_SECONDS`` (default 20); a trial whose heartbeat is older than ``NAS_GRACE_SECONDS``
(default 60) belongs to a dead worker: the next worker to look marks it failed and queues its params
again (up to 3 times). Optuna's journal storage has no heartbeats: there a killed worker's trial
stays RUNNING and is not retried (Ctrl-C and SIGTERM still re-queue it). A worker that loses the
database retries each call for ``NAS_DB_RETRY_SECONDS`` (default 60), then stops with one line.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning, StorageInternalError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from .errors import NasError
from .trials import CONFIRM_SUFFIX, carried

# A user's studies go to runs/ (git-ignored); results/ holds the shipped, read-only examples.
RESULTS = Path(os.environ.get("NAS_RESULTS", "runs"))
DEFAULT_STORAGE = f"sqlite:///{RESULTS / 'studies.db'}"
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 60
DB_RETRY_SECONDS = 60


def storage(url: str | None = None, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``. RDB storages get heartbeats, so a killed worker's trial
    is marked failed and retried by another worker."""
    url = check_url(url)
    kind, file = local_file(url)
    if file:  # the folder is made only now, when the storage opens
        file.parent.mkdir(parents=True, exist_ok=True)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
        path = str(file)
        lock = JournalFileSymlinkLock(path)  # the lock Optuna's appends take: no worker writes while we mend
        lock.acquire()
        try:
            note = mend_journal(Path(path))
        finally:
            lock.release()
        if note:
            print(note, file=sys.stderr, flush=True)
        return JournalStorage(JournalFileBackend(path, lock_obj=lock))
    kwargs, retry_seconds = {}, _env_seconds("NAS_DB_RETRY_SECONDS", DB_RETRY_SECONDS)
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: no warning lines for users
        warnings.simplefilter("ignore", ExperimentalWarning)
        if heartbeat:
            interval, grace = heartbeat_settings()
            kwargs = dict(heartbeat_interval=interval, grace_period=grace,
                          heartbeat_stale_trial_callback=_RetryStale(max_retry=3))
        attempt = 0
        while True:
            try:
                store = _Storage(_with_driver(url), engine_kwargs=_engine_kwargs(url), **kwargs)
                store.retry_seconds, store.shown_url = retry_seconds, _redact(url)
                return store
            except ImportError:
                raise NasError(f"storage {url.split(':')[0]} needs a database driver that is not installed: "
                               "pip install 'nas[postgres]' (psycopg2-binary)") from None
            except Exception as err:  # SQLAlchemy raises many kinds; the user needs one line
                if attempt < 3 and _creation_race(err):
                    attempt += 1
                    time.sleep(attempt)  # another worker is creating the tables right now
                    continue
                raise NasError(f"cannot open storage {_redact(url)}: {_reason(err)}; check the URL and that the "
                               "database server is running") from None


def mend_journal(path: Path) -> str:
    """Set aside a journal's torn tail, as a kill or a power cut during an append leaves it: the bytes
    after the last complete entry move to ``<path>.torn`` (appended, so nothing is lost) and the journal
    ends at that entry. Returns the line that says so, or '' when the journal is whole.

    >>> import tempfile
    >>> j = Path(tempfile.mkdtemp()) / "j.log"
    >>> _ = j.write_bytes(b'{"op_code": 0}\\n{"op_code": 1}\\n{"op_co')
    >>> mend_journal(j).split(": ", 1)[1]
    'its last entry was cut short (7 bytes, kept in j.log.torn); resuming from the 2 complete entries'
    >>> j.read_bytes(), mend_journal(j)
    (b'{"op_code": 0}\\n{"op_code": 1}\\n', '')
    """
    try:
        with open(path, "rb") as f:  # every open of the storage looks: read only the tail, unless it is torn
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65536))
            tail = f.read()
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise NasError(f"cannot read journal {path}: {err.strerror}; check the path") from None
    whole = len(tail) == size
    if _whole_entries(tail, partial_start=not whole) == len(tail):
        return ""
    data = tail if whole else path.read_bytes()
    end = _whole_entries(data, partial_start=False)
    torn = path.with_name(path.name + ".torn")
    try:
        with open(torn, "ab") as f:
            f.write(data[end:])
        with open(path, "r+b") as f:
            f.truncate(end)
    except OSError as err:
        raise NasError(f"journal {path} ends in a torn entry that cannot be set aside ({err.strerror}); "
                       f"free some space or make {path.parent} writable, and rerun the same command") from None
    entries = data[:end].count(b"\n")
    return (f"journal {path}: its last entry was cut short ({len(data) - end:,} bytes, kept in {torn.name}); "
            f"resuming from the {entries:,} complete entries")


def local_file(url: str) -> tuple[str, Path | None]:
    """The kind of a storage URL and, for a storage kept in one local file, that file: the one place
    a URL is taken apart.

    >>> local_file("sqlite:///runs/studies.db"), local_file("journal:runs/s.log")
    (('sqlite', PosixPath('runs/studies.db')), ('journal', PosixPath('runs/s.log')))
    >>> local_file("postgresql://nas@db.example/nas")
    ('postgresql', None)
    """
    if url.startswith("journal:"):
        return "journal", Path(url[len("journal:"):])
    if url.startswith("sqlite:///"):
        return "sqlite", Path(url[len("sqlite:///"):])
    return url.split(":", 1)[0].split("+", 1)[0], None


def check_url(url: str | None) -> str:
    """The storage URL (the default when None), checked without opening or creating anything."""
    url = url or DEFAULT_STORAGE
    kind, file = local_file(url)
    if kind == "journal":
        writable(file.parent)
        _usable_file(file, "journal")
        return url
    if "://" not in url:
        raise NasError(f"storage {url!r} is not a URL: use sqlite:///path.db, postgresql://user@host/db "
                       "or journal:path.log")
    if url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://") or ":memory:" in url:
        raise NasError(f"storage {url} keeps the study in memory, so it is lost on exit; "
                       "use a file, e.g. sqlite:///runs/studies.db")
    if file:
        writable(file.parent)
        _usable_file(file, "sqlite")
    return url


def _is_journal(first_line: bytes) -> bool:
    import json

    try:
        json.loads(first_line)  # an Optuna journal is one JSON object a line
        return True
    except ValueError:  # UnicodeDecodeError included
        return False


_KINDS = {  # storage kind: (what an existing file must start like, what the error suggests, an example URL)
    "journal": (_is_journal, " or an existing journal with --storage journal:PATH", "journal:runs/studies.log"),
    "sqlite": (lambda first: first.startswith(b"SQLite format 3\x00"), ", or journal:PATH if it is a journal",
               "sqlite:///runs/studies.db"),
}


def _usable_file(path: Path, kind: str) -> None:
    """An existing storage file must be of its kind (not a folder, YAML or another store's file)."""
    if not path.exists():
        return
    looks_right, alternative, example = _KINDS[kind]
    if path.is_dir():
        raise NasError(f"{kind} storage {path} is a folder; name a file, e.g. {example}")
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 20)
    except OSError as err:
        raise NasError(f"cannot read {path}: {err.strerror}; check the path") from None
    if first.strip() and not looks_right(first):
        what = "an Optuna journal file" if kind == "journal" else "an SQLite database"
        raise NasError(f"{path} is not {what}; pass a new file{alternative}")


def _env_seconds(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise NasError(f"{name}={value!r} is not a whole number of seconds >= 1; fix or unset it")
    return seconds


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace) in seconds, from NAS_HEARTBEAT_SECONDS and NAS_GRACE_SECONDS."""
    interval = _env_seconds("NAS_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)
    grace = _env_seconds("NAS_GRACE_SECONDS", max(GRACE_SECONDS, 3 * interval))
    if grace <= interval:
        raise NasError(f"NAS_GRACE_SECONDS={grace} must be longer than NAS_HEARTBEAT_SECONDS={interval} "
                       "(3 times is a good choice), or a live worker's trial is taken for a dead one")
    return interval, grace


class _RetryStale(RetryHeartbeatStaleTrialCallback):
    """Re-queue a dead worker's trial with the same params, keeping none of its partial results."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # ``trial`` is a deep copy: the failed trial keeps its own attributes.
        trial.user_attrs = {**carried(trial.user_attrs), "retry_of": trial.number}
        super().__call__(study, trial)


def heartbeat_enabled(study: optuna.Study) -> bool:
    """True when dead workers are detected (RDB storages), so a RUNNING trial will end one way or another."""
    from optuna.storages._heartbeat import is_heartbeat_enabled
    return is_heartbeat_enabled(study._storage)


def fail_stale(study: optuna.Study) -> None:
    """Mark dead workers' trials failed and queue them again (Optuna does this before each trial too)."""
    if heartbeat_enabled(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def _reason(err: BaseException) -> str:
    cause = err.__cause__ if isinstance(err, StorageInternalError) and err.__cause__ else err
    cause = getattr(cause, "orig", None) or cause  # SQLAlchemy wraps the driver's error
    text = " ".join(str(cause).split()) or type(cause).__name__
    return text[:200]


def _creation_race(err: Exception) -> bool:
    import sqlalchemy.exc as sa
    return isinstance(err, (sa.IntegrityError, sa.ProgrammingError)) or (
        isinstance(err, StorageInternalError) and isinstance(err.__cause__, (sa.IntegrityError, sa.ProgrammingError)))


def _connection_lost(err: Exception) -> bool:
    """A database that cannot be reached (or, for SQLite, is locked by another process) right now."""
    import sqlalchemy.exc as sa
    cause = err.__cause__ if isinstance(err, StorageInternalError) else err
    if not isinstance(cause, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError)):
        return False
    orig = getattr(cause, "orig", None)
    if type(orig).__module__ == "sqlite3":  # e.g. a read-only file is no outage: only a lock passes
        return "locked" in str(orig) or "busy" in str(orig)
    return True


def _whole_entries(data: bytes, partial_start: bool) -> int:
    """How many leading bytes of ``data`` end with a complete JSON entry, walking back over trailing
    lines that are not one. ``partial_start``: ``data`` begins mid-line (a tail), so reaching its first
    line decides nothing: -1."""
    import json

    end = len(data)
    while end:
        start = data.rfind(b"\n", 0, end - 1) + 1
        if start == 0 and partial_start:
            return -1
        line = data[start:end]
        try:
            if line.endswith(b"\n") and isinstance(json.loads(line), dict):
                return end
        except ValueError:
            pass
        end = start
    return end


def _file_fault(err: Exception) -> str:
    """What is wrong with an SQLite file that refuses a write (full disk, read-only), or ''."""
    cause = err.__cause__ if isinstance(err, StorageInternalError) else err
    orig = getattr(cause, "orig", None)
    if type(orig).__module__ != "sqlite3":
        return ""
    text = str(orig)
    return text if any(k in text for k in ("disk is full", "readonly", "read-only", "disk I/O error")) else ""


_local = threading.local()


def _retrying(method):
    """Retry a storage call with backoff while the database is unreachable; then one clear error."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if getattr(_local, "busy", False):  # an inner call of a retried one: the outer one retries
            return method(self, *args, **kwargs)
        _local.busy = True
        try:
            budget = self.retry_seconds
            delay, deadline = 0.5, time.monotonic() + budget
            while True:
                try:
                    result = method(self, *args, **kwargs)
                    self.retrying = False
                    return result
                except Exception as err:
                    fault = _file_fault(err)
                    if fault:  # waiting will not help, and a traceback would not say what to do
                        raise NasError(f"cannot write the study to {self.shown_url}: {fault}; free some space or make "
                                       "the database file writable, then rerun the same command to resume") from None
                    if not _connection_lost(err):
                        raise
                    if self.lost is None and time.monotonic() + delay <= deadline:
                        if not self.retrying:  # one line per outage
                            self.retrying = True
                            print(f"warning: database {self.shown_url} unreachable ({_reason(err)}); "
                                  f"retrying for up to {budget} s", file=sys.stderr, flush=True)
                        time.sleep(delay)
                        delay = min(2 * delay, 8.0)
                        continue
                    self.lost = self.lost or NasError(
                        f"lost the database connection to {self.shown_url}: {_reason(err)}; "
                        "check the server and rerun the same command to resume")
                    raise self.lost from None
        finally:
            _local.busy = False

    return call


class _Storage(RDBStorage):
    """Optuna's RDB storage, with every database call retried through a short outage.

    After the retries run out, the call raises a :class:`NasError` (``lost``), and so does at once
    any later call that fails, so the worker stops with one line. The heartbeat thread never raises: a missed
    heartbeat is harmless, and the main thread notices a lost database by itself.
    """

    lost: NasError | None = None
    retrying = False
    retry_seconds = DB_RETRY_SECONDS
    shown_url = ""  # the URL as the user gave it, password hidden

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception:  # noqa: BLE001 - in a thread; a traceback there would help nobody
            pass


for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
              "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs",
              "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param",
              "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
              "_get_trials", "get_best_trial", "_get_best_trial_id", "_get_stale_trial_ids"):
    setattr(_Storage, _name, _retrying(getattr(RDBStorage, _name)))


def lost_connection(study: optuna.Study) -> NasError | None:
    """The error to stop with, once the study's database has been unreachable for too long."""
    backend = getattr(study._storage, "_backend", study._storage)
    return getattr(backend, "lost", None)


def _with_driver(url: str) -> str:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1 but psycopg2 before: name the installed one."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module):
            return f"postgresql+{module}{sep}{rest}"
    return url


def _engine_kwargs(url: str) -> dict:
    if local_file(url)[0] in ("postgresql", "postgres"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def writable(folder: Path) -> None:
    """That ``folder`` can be created and written, checked without creating anything: a command that
    fails later (a bad storage, say) must leave no empty folders behind."""
    folder = Path(folder)
    existing = folder.absolute()
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NasError(f"cannot create results folder {folder}: Not a directory; "
                       "pass a writable --storage or --results")
    # Checked here, not left to the first write: a name too long for the filesystem would
    # otherwise fail only when the first trial saves its weights.
    name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    longest = max(len(part.encode()) for part in folder.parts)
    if longest > name_max:
        raise NasError(f"results folder {str(folder)[:60]}... has a name of {longest} bytes, more than this "
                       f"filesystem's {name_max}; pass a shorter --results")
    if len(str(folder.absolute()).encode()) + FILE_NAME_ROOM > path_max:
        raise NasError(f"results folder {str(folder)[:60]}... is a path too long for this filesystem (its files "
                       f"need {FILE_NAME_ROOM} bytes more, within {path_max}); pass a shorter --results")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NasError(f"results folder {folder} is not writable; pass a writable --storage or --results")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to look up does not exist
        return False


FILE_NAME_ROOM = 200  # bytes the files nas writes under a results folder add to its path (study/weights/...)
MAX_NAME = 100  # characters of a study name: a folder name, with room for its companion's suffix


def check_name(study_name: str) -> str:
    """A study name is a plain folder name under the results folder: no path, no leading dot."""
    if len(study_name) > MAX_NAME:
        raise NasError(f"study name {study_name[:20]!r}... is {len(study_name)} characters long; use at most "
                       f"{MAX_NAME} (it becomes a folder under the results folder)")
    if not study_name or study_name.startswith(".") or not all(c.isalnum() or c in "_-.+=@" for c in study_name):
        raise NasError(f"study name {study_name!r} is not a plain name; use letters, digits and _ - . "
                       "(it becomes a folder under the results folder)")
    if CONFIRM_SUFFIX in study_name:
        raise NasError(f"study name {study_name!r} holds {CONFIRM_SUFFIX!r}, which names a study's confirmation "
                       "runs; pick another --study")
    return study_name


def url_for(storage: str | None, results: str | Path | None) -> str | None:
    """``storage``, or the SQLite file in ``results`` when only that is given (None: the default).

    >>> url_for(None, "runs/x"), url_for("journal:j.log", "runs/x"), url_for(None, None)
    ('sqlite:///runs/x/studies.db', 'journal:j.log', None)
    """
    return storage or (f"sqlite:///{Path(results) / 'studies.db'}" if results else None)


def study_dir(study_name: str, results: Path | None = None) -> Path:
    return (results or RESULTS) / check_name(study_name)


@contextlib.contextmanager
def quiet(level: int = optuna.logging.WARNING):
    """Optuna logs a line per trial, which says less than nas's own; at least ``level`` while inside
    (the command line: ERROR, so a bad input stays one line; from Python: warnings still show)."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(previous, level))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def load_runs(name: str, url: str | None = None) -> optuna.Study:
    """A study's confirmation runs (``name`` is the companion's), read-only use: no heartbeat."""
    return optuna.load_study(study_name=name, storage=storage(url, heartbeat=False))


def load(study_name: str | None, url: str | None = None, heartbeat: bool = False) -> optuna.Study:
    """An existing study; ``study_name`` may be None when the storage holds exactly one.

    A missing database file is an error here: Optuna would silently create an empty one.
    """
    url = url or DEFAULT_STORAGE
    file = local_file(url)[1]
    if file and not file.is_file():
        raise NasError(f"no study database at {file}; run `nas search` first, or pass --storage URL")
    store = storage(url, heartbeat=heartbeat)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)
             if CONFIRM_SUFFIX not in s.study_name]  # a study's confirmation runs are part of it
    if study_name is None:
        if len(names) != 1:
            raise NasError(f"storage {_redact(url or DEFAULT_STORAGE)} holds {len(names)} studies "
                           f"({', '.join(names) or 'none'}); pick one with --study")
        study_name = names[0]
    if study_name not in names:
        raise NasError(f"no study {study_name!r} in {_redact(url or DEFAULT_STORAGE)} "
                       f"(studies: {', '.join(names) or 'none'}); run `nas search` first or pass --storage")
    return optuna.load_study(study_name=study_name, storage=store)
