"""Many workers on one study: real `nas search` processes sharing a real PostgreSQL server.

A throwaway server is started on 127.0.0.1 for the session (initdb + pg_ctl in a temporary folder,
as an unprivileged user when the tests run as root). Workers use one CPU thread each, a tiny image
folder made here, and short heartbeats (1 s, dead after 3 s).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from toys import tiny_data
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

STUDY = "duo"
SPACE = """\
name: duo
task:
  dataset: {data}
  target: 0.5
  max_epochs: 1
  validation: 400
  constraints: {{max_params: 5000, classes: 2}}
train: {{batch_size: {batch}}}
input: [1, 16, 16]
choices:
  w: [4, 8, 12, 16]
  k: [3, 5]
  pool: [maxpool, avgpool]
blocks:
  f:
    - conv: {{out: $w, kernel: $k, padding: 1}}
    - relu
    - $pool
    - conv: {{out: $w, kernel: 3, padding: 1}}
    - relu
    - pwconv: {{out: 2}}
    - gap
"""


# -- a PostgreSQL server for the session -----------------------------------------------------

def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A server in a temporary folder, owned by an unprivileged user when we are root."""

    def __init__(self):
        self.initdb, self.pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # not under pytest's tmp: root-only mode
        self.port = _free_port()
        self.run_as: dict = {}
        if os.geteuid() == 0:  # postgres refuses to run as root
            user = pwd.getpwnam("nobody")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> None:
        r = subprocess.run(args, cwd=self.dir, capture_output=True, text=True, timeout=60, **self.run_as)
        if r.returncode:
            log = (self.dir / "log").read_text()[-2000:] if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {r.stdout}{r.stderr}{log}")

    def init(self) -> None:
        self._run(self.initdb, "-D", str(self.dir / "data"), "-U", "nas", "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")

    def start(self) -> None:
        # fsync off is safe here: an immediate stop kills the server, not the OS, which keeps the writes.
        # synchronous_commit stays on: off, an immediate stop loses the last commits, which no real
        # outage of a default server does, and the outage test would see trials lose their attributes.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=60")
        self._run(self.pg_ctl, "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="nas", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return f"postgresql://nas@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def pg():
    server = Postgres()
    if not (server.initdb and server.pg_ctl):
        shutil.rmtree(server.dir, ignore_errors=True)
        if os.environ.get("NAS_REQUIRE_POSTGRES"):  # set by .ci/run: CI must run these tests
            pytest.fail("NAS_REQUIRE_POSTGRES is set but no PostgreSQL binaries were found; apt-get install postgresql")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
                    ".ci/run installs them with apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="pip install 'nas[postgres]' for PostgreSQL storage")
    server.init()
    server.start()
    yield server
    try:
        server.stop()
    except RuntimeError:
        pass  # already stopped
    shutil.rmtree(server.dir, ignore_errors=True)


# -- a tiny dataset and workers ------------------------------------------------------------------

@pytest.fixture(scope="session")
def image_data(tmp_path_factory):
    """Two classes of 16x16 grey images (noise; class 1 has a bright bar), decoded once into a cache."""
    import numpy as np
    from PIL import Image

    from nas import data as datasets

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 1600), ("test", 200)):
        for label in (0, 1):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(n // 2):
                img = rng.integers(0, 160, (16, 16), dtype=np.uint8)
                if label:
                    img[4:12, 7:9] = 255
                Image.fromarray(img).save(folder / f"{i}.png")
    cache = tmp_path_factory.mktemp("cache")
    datasets.load(str(root), cache_dir=cache)  # the workers then load the decoded tensors
    return root, cache


def assert_study_total(done: list, wanted: int, outputs: list[str], upto: int | None = 1) -> None:
    """--trials N is a study-wide total: N trained (up to N + ``upto`` when several workers started the
    last ones at once), or fewer only when the search covered every net under the cost cap and said so
    (these nets all reach the target, so the cap falls fast)."""
    covered = any("has been tried" in out for out in outputs)
    assert len(done) >= wanted or covered, f"{len(done)} trained, and no word of the space being covered"
    assert upto is None or len(done) <= wanted + upto, f"--trials {wanted} is a study-wide total ({len(done)} trained)"


def write_space(folder: Path, data: Path, batch: int = 16) -> Path:
    path = folder / "duo.yaml"
    path.write_text(SPACE.format(data=data, batch=batch))
    return path


def worker(args: list[str], cwd: Path, cache: Path, **env) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k not in ("NAS_RESULTS", "NAS_DATA_DIR", "NAS_STORAGE")}
    environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NAS_CACHE_DIR": str(cache),
                    "NAS_HEARTBEAT_SECONDS": "1", "NAS_GRACE_SECONDS": "3", "PYTHONUNBUFFERED": "1", **env})
    code = "from nas.cli import main; main(prog_name='nas')"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"worker {proc.pid} did not finish in {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    from nas import study as studies

    return optuna.load_study(study_name=STUDY, storage=studies.storage(url, heartbeat=False)).get_trials()


def wait_for_training(url: str, proc: subprocess.Popen, timeout: float = 90) -> optuna.trial.FrozenTrial:
    """The trial that worker ``proc`` is training, as soon as it starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker exited early ({proc.returncode}): {proc.communicate()}")
        try:
            for t in trials(url):
                if (t.state == TrialState.RUNNING and t.user_attrs.get("trained")
                        and t.user_attrs.get("worker", "").endswith(f":{proc.pid}")):
                    return t
        except KeyError:
            pass  # the study does not exist yet
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"worker {proc.pid} did not start training within {timeout} s")


def _line_with(stream, text: str, timeout: float) -> str:
    """The first line of a worker's output that contains ``text`` (the lines before it are dropped)."""
    import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([stream], [], [], 0.5)[0]:
            line = stream.readline()
            if text in line:
                return line
            if not line:
                break  # the worker exited
    pytest.fail(f"no line with {text!r} within {timeout} s")


def trained(ts) -> list[optuna.trial.FrozenTrial]:
    return [t for t in ts if t.user_attrs.get("trained") and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and t.user_attrs.get("status") != "duplicate"]


# -- the tests -------------------------------------------------------------------------------------

def test_two_workers_share_one_study_without_duplicates_or_losses(pg, image_data, tmp_path):
    data, cache = image_data
    url = pg.create_database("two_workers")
    space = write_space(tmp_path, data, batch=2)  # about 2 s a candidate: the workers overlap
    args = ["search", "--space", str(space), "--trials", "6", "--storage", url, "--results", str(tmp_path / "res"), "--confirm", "0"]
    procs = [worker(args, tmp_path, cache) for _ in range(2)]  # the same command, at the same time
    results = [finish(p) for p in procs]
    for rc, out, err in results:
        assert rc == 0, f"worker failed ({rc}):\n{out}\n{err}"
        assert "Traceback" not in err
    ts = trials(url)
    assert all(t.state.is_finished() for t in ts), "a trial was left RUNNING or WAITING"
    assert not [t for t in ts if t.state == TrialState.FAIL]
    done = trained(ts)
    assert_study_total(done, 6, [out for _, out, _ in results])
    fingerprints = [t.user_attrs["fingerprint"] for t in done]
    assert len(set(fingerprints)) == len(fingerprints), "two workers trained the same net"
    for t in ts:
        if t.user_attrs.get("status") == "duplicate":
            assert t.user_attrs["duplicate_of"] in {d.number for d in done}
    assert len({t.user_attrs["worker"] for t in done}) == 2, "both workers should have trained candidates"
    for t in done:  # nothing finished is lost: record and weights
        assert t.user_attrs["accuracies"] and (tmp_path / "res" / STUDY / t.user_attrs["weights"]).is_file()
    pids = {str(p.pid) for p in procs}
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in ts if "worker" in t.user_attrs} <= pids


def test_killed_worker_trial_fails_and_is_retrained_by_another(pg, image_data, tmp_path):
    data, cache = image_data
    url = pg.create_database("killed_worker")
    space = write_space(tmp_path, data, batch=1)  # slow training (seconds): time to kill the worker in it
    args = ["search", "--space", str(space), "--trials", "2", "--storage", url, "--results", str(tmp_path / "res"), "--confirm", "0"]
    first = worker(args, tmp_path, cache)
    victim = wait_for_training(url, first)
    time.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    killed = next(t for t in trials(url) if t.number == victim.number)
    assert killed.state == TrialState.RUNNING, "the trial ended before the kill: make the test's training slower"
    # past the grace (NAS_GRACE_SECONDS=3 in worker()), so the second worker's first trial finds the
    # victim dead and retries it; a worker that came sooner would first train a new net, which could
    # make the retry dominated, as it should, but then not trained here
    time.sleep(4)

    second = worker(args, tmp_path, cache)
    rc, out, err = finish(second)
    assert rc == 0, f"second worker failed:\n{out}\n{err}"
    ts = trials(url)
    killed = next(t for t in ts if t.number == victim.number)
    assert killed.state == TrialState.FAIL  # marked failed through the missing heartbeat
    retries = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    assert retry.user_attrs["retry_of"] == victim.number
    assert retry.user_attrs["worker"].endswith(f":{second.pid}")
    # the net was trained to the end, by the retry itself or by a trial it then copied
    done = trained(ts)
    assert victim.params in [t.params for t in done]
    assert all(t.state.is_finished() for t in ts)
    assert len(done) == 2, "the killed trial must not count: the study still holds --trials trained candidates"


def test_worker_rides_out_a_short_outage_and_stops_cleanly_on_a_long_one(pg, image_data, tmp_path):
    data, cache = image_data
    url = pg.create_database("outage")
    space = write_space(tmp_path, data, batch=1)
    args = ["search", "--space", str(space), "--trials", "1", "--storage", url, "--results", str(tmp_path / "res"), "--confirm", "0"]

    # an outage while training: the worker retries its database calls, and finishes once it is back
    proc = worker(args, tmp_path, cache, NAS_DB_RETRY_SECONDS="60")
    wait_for_training(url, proc)
    pg.stop()
    try:
        warning = _line_with(proc.stderr, "unreachable", timeout=60)  # its first call after training
        time.sleep(1)
    finally:
        pg.start()
    rc, out, err = finish(proc)
    assert rc == 0, f"worker did not survive the outage:\n{out}\n{warning}{err}"
    assert warning.startswith("warning: database postgresql://") and "retrying for up to 60 s" in warning
    assert "Traceback" not in err

    # a long one: after its retries the worker stops with one line; the same command resumes
    write_space(tmp_path, data, batch=1)  # a slower trial (was 1 s), so that the test sees it training
    args[args.index("--trials") + 1] = "2"
    proc = worker(args, tmp_path, cache, NAS_DB_RETRY_SECONDS="2")
    lost = wait_for_training(url, proc)
    pg.stop()
    try:
        rc, out, err = finish(proc, timeout=60)
    finally:
        pg.start()
    assert rc == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost the database connection to postgresql://") and last.endswith(
        "check the server and rerun the same command to resume"), err
    rc, out, err = finish(worker(args, tmp_path, cache))
    assert rc == 0, f"{out}\n{err}"
    ts = trials(url)
    assert next(t for t in ts if t.number == lost.number).state == TrialState.FAIL
    assert len(trained(ts)) == 2 and lost.params in [t.params for t in trained(ts)]


def test_journal_file_shares_a_study_on_one_machine_and_sigterm_stops_cleanly(image_data, tmp_path):
    """Optuna's journal file: no server. SIGTERM makes a worker finish its epoch, keep it, and stop."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    data, cache = image_data
    space = write_space(tmp_path, data, batch=2)
    journal = tmp_path / "studies.log"
    args = ["search", "--space", str(space), "--trials", "5", "--storage", f"journal:{journal}",
            "--results", str(tmp_path / "res"), "--confirm", "0"]
    first, second = worker(args, tmp_path, cache), worker(args, tmp_path, cache)

    def read():
        try:
            return optuna.load_study(study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(journal)))).trials
        except KeyError:
            return []  # no study yet

    deadline = time.monotonic() + 90
    while not any(t.state == TrialState.RUNNING and t.user_attrs.get("trained")
                  and t.user_attrs.get("worker", "").endswith(f":{first.pid}") for t in read()):
        assert time.monotonic() < deadline and first.poll() is None, "first worker never trained"
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    rc, out, err = finish(first)
    assert rc == 130 and "run the same command to resume" in err and "Traceback" not in err, (rc, out, err)
    rc, out, err = finish(second)
    assert rc == 0, f"{out}\n{err}"
    ts = read()
    assert all(t.state.is_finished() for t in ts)
    mine = [t for t in ts if t.user_attrs.get("worker", "").endswith(f":{first.pid}") and t.user_attrs.get("trained")]
    assert mine and all(t.state != TrialState.RUNNING for t in mine)
    done = trained(ts)
    assert_study_total(done, 5, [out])
    fingerprints = [t.user_attrs["fingerprint"] for t in done]
    assert len(set(fingerprints)) == len(fingerprints)


def test_a_worker_whose_trial_was_taken_for_dead_carries_on(tmp_path):
    """Its heartbeat lapsed (a stalled machine), so another worker failed its trial and queued it again:
    the worker drops that trial and goes on; the queued copy is trained."""
    from dataclasses import dataclass

    from nas.search import SearchConfig, run
    from nas.space import Space

    @dataclass
    class Result:
        accuracies: list
        seconds: float = 0.1
        target_epoch: int | None = 1
        status: str = "target_met"
        message: str = ""

    space = Space.from_dict({
        "name": "toy", "task": {"dataset": "mnist", "target": 0.5, "max_epochs": 1, "validation": 10,
                                "constraints": {"classes": 2}},
        "input": [1, 8, 8], "choices": {"w": [2, 4, 8]},
        "blocks": {"f": [{"conv": {"out": "$w"}}, "relu", {"pwconv": {"out": 2}}, "gap"]}})
    url = f"sqlite:///{tmp_path}/s.db"
    calls = []

    def train(model, data, config, on_epoch=None, **rungs):
        calls.append(next(model.parameters()).shape[0])
        if len(calls) == 1:  # what fail_stale_trials does in another worker
            study = optuna.load_study(study_name="toy", storage=url)
            mine = next(t for t in study.get_trials() if t.state == TrialState.RUNNING)
            study._storage.set_trial_state_values(mine._trial_id, TrialState.FAIL)
            study.enqueue_trial(mine.params, user_attrs={"retry_of": mine.number})
        on_epoch(1, 0.9)
        return Result([0.9])

    out = run(SearchConfig(space, storage=url, trials=2, results=tmp_path, confirm=0),
              data=tiny_data(side=8, classes=2), train_fn=train)
    ts = optuna.load_study(study_name="toy", storage=url).trials
    assert ts[0].state == TrialState.FAIL and out.trained == 2 and out.failed == 1
    retry = next(t for t in ts if t.user_attrs.get("retry_of") == 0)
    assert retry.state == TrialState.COMPLETE and retry.params == ts[0].params and calls[1] == calls[0]


# -- confirmation runs shared by workers -----------------------------------------------------------

def confirm_runs(url: str) -> list[optuna.trial.FrozenTrial]:
    from nas import study as studies

    return optuna.load_study(study_name=f"{STUDY}.confirm", storage=studies.storage(url, heartbeat=False)).get_trials()


def searched_study(url: str, tmp_path: Path, data: Path, cache: Path, batch: int) -> list[str]:
    """A finished search (no confirmation yet); returns the arguments of `nas confirm` for it."""
    space = write_space(tmp_path, data, batch=batch)
    rc, out, err = finish(worker(["search", "--space", str(space), "--trials", "3", "--storage", url, "--results",
                                  str(tmp_path / "res"), "--confirm", "0"], tmp_path, cache))
    assert rc == 0, f"{out}\n{err}"
    return ["confirm", "--study", STUDY, "--storage", url, "--results", str(tmp_path / "res"), "--confirm", "2"]


def test_two_workers_confirm_without_training_anything_twice(pg, image_data, tmp_path):
    data, cache = image_data
    url = pg.create_database("two_confirmers")
    args = searched_study(url, tmp_path, data, cache, batch=2)
    procs = [worker(args, tmp_path, cache) for _ in range(2)]  # the same command, at the same time
    for rc, out, err in [finish(p) for p in procs]:
        assert rc == 0 and "Traceback" not in err, f"worker failed ({rc}):\n{out}\n{err}"
        assert "confirmation: 1 epochs on all 1,600 training images" in out
    runs = confirm_runs(url)
    assert all(t.state.is_finished() for t in runs), "a run was left RUNNING or WAITING"
    done = [t for t in runs if t.user_attrs.get("status") == "confirmed"]
    keys = [(t.user_attrs["fingerprint"], t.user_attrs["seed"]) for t in done]
    assert len(keys) == len(set(keys)), "two workers trained the same run"
    ended = {(t.user_attrs["fingerprint"], t.user_attrs["seed"]) for t in runs
             if t.user_attrs.get("status") in ("confirmed", "skipped")}
    designs = {fp for fp, _ in ended}
    assert done and 1 <= len(designs) <= 2 and ended == {(fp, s) for fp in designs for s in range(3)}, \
        "every queued run of every design ends trained or skipped"
    acc = {k: t.user_attrs["accuracy"] for k, t in zip(keys, done)}
    size = {t.user_attrs["fingerprint"]: t.user_attrs["params"] for t in runs}
    met = {fp for fp in designs if all(acc.get((fp, s), 0) >= 0.5 for s in range(3))}
    for fp in designs - met:  # confirmation is sequential: a run is skipped only once it is needless
        if any((fp, s) not in acc for s in range(3)):
            assert any(acc.get((fp, s), 1) < 0.5 for s in range(3)) or any(size[m] < size[fp] for m in met), \
                f"a run of {fp} was skipped though no seed of it fell short and no cheaper design met"
    for t in done:  # nothing finished is lost: figures and weights
        assert 0 <= t.user_attrs["accuracy"] <= 1 and (tmp_path / "res" / STUDY / t.user_attrs["weights"]).is_file()
    pids = {str(p.pid) for p in procs}
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in done} <= pids


def test_killed_worker_confirmation_run_is_retried_by_another(pg, image_data, tmp_path):
    data, cache = image_data
    url = pg.create_database("killed_confirmer")
    args = searched_study(url, tmp_path, data, cache, batch=1)  # slow runs: time to kill the worker in one
    first = worker(args, tmp_path, cache)
    deadline = time.monotonic() + 90
    while not [t for t in confirm_runs_or_none(url) if t.state == TrialState.RUNNING]:
        assert time.monotonic() < deadline and first.poll() is None, "the first worker never started a run"
        time.sleep(0.2)
    victim = next(t for t in confirm_runs(url) if t.state == TrialState.RUNNING)
    time.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert next(t for t in confirm_runs(url) if t.number == victim.number).state == TrialState.RUNNING

    rc, out, err = finish(worker(args, tmp_path, cache), timeout=240)
    assert rc == 0, f"second worker failed:\n{out}\n{err}"
    runs = confirm_runs(url)
    assert next(t for t in runs if t.number == victim.number).state == TrialState.FAIL
    retry = [t for t in runs if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert (retry[0].user_attrs["fingerprint"], retry[0].user_attrs["seed"]) == \
        (victim.user_attrs["fingerprint"], victim.user_attrs["seed"])
    assert retry[0].user_attrs["status"] == "confirmed"
    assert all(t.state.is_finished() for t in runs)


def confirm_runs_or_none(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return confirm_runs(url)
    except KeyError:
        return []  # the worker has not created the companion study yet


# -- nas search --jobs N: one command, N worker processes on this machine ----------------------------

def test_jobs_runs_workers_that_share_the_study_and_one_summary(image_data, tmp_path):
    data, cache = image_data
    space = write_space(tmp_path, data, batch=4)
    url = f"sqlite:///{tmp_path}/res/studies.db"
    coordinator = worker(["search", "--space", str(space), "--trials", "6", "--results", str(tmp_path / "res"),
                          "--confirm", "1", "--seeds", "2"], tmp_path, cache, OMP_NUM_THREADS="2",
                         NAS_JOBS="2")  # as --jobs 2; the workers must not read it as theirs
    rc, out, err = finish(coordinator, timeout=240)
    assert rc == 0, f"--jobs 2 failed ({rc}):\n{out}\n{err}"
    assert out.count("study duo:") == 1 and out.count("confirmation:") == 1, out  # the coordinator sums up once
    ts = trials(url)
    assert all(t.state.is_finished() for t in ts) and not [t for t in ts if t.state == TrialState.FAIL]
    done = trained(ts)
    assert_study_total(done, 6, [out])
    pids = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in done}
    assert len(pids) == 2 and str(coordinator.pid) not in pids, "two worker processes, not the coordinator, train"
    from nas.jobs import cores
    assert {t.user_attrs["threads"] for t in done} == {max(1, cores() // 2)}, "each worker gets half the cores"
    runs = [t for t in confirm_runs(url) if t.state == TrialState.COMPLETE]
    assert len(runs) == 2 and len({(r.user_attrs["fingerprint"], r.user_attrs["seed"]) for r in runs}) == 2


def test_ctrl_c_on_jobs_stops_every_worker_and_the_same_command_resumes(image_data, tmp_path):
    data, cache = image_data
    space = write_space(tmp_path, data, batch=2)
    url = f"sqlite:///{tmp_path}/res/studies.db"
    args = ["search", "--space", str(space), "--trials", "5", "--results", str(tmp_path / "res"), "--confirm", "0",
            "--jobs", "2"]
    coordinator = worker(args, tmp_path, cache)
    deadline = time.monotonic() + 90
    while not [t for t in _trials_or_none(url) if t.state == TrialState.RUNNING and t.user_attrs.get("trained")]:
        assert time.monotonic() < deadline and coordinator.poll() is None, "no worker started training"
        time.sleep(0.2)
    coordinator.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends it
    rc, out, err = finish(coordinator, timeout=120)
    assert rc == 130 and "run the same command to resume" in err, (rc, out, err)
    assert "Traceback" not in err
    assert (out + err).count("stopping after this epoch") == 1, "one message, not one per worker"
    assert not [t for t in trials(url) if t.state == TrialState.RUNNING], "a worker was left running"
    rc, out, err = finish(worker(args, tmp_path, cache), timeout=240)
    assert rc == 0, (out, err)
    assert_study_total(trained(trials(url)), 5, [out], upto=None)


def _trials_or_none(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return trials(url)
    except KeyError:
        return []


def test_killing_the_coordinator_leaves_no_worker_and_workers_show_no_storage_url(pg, image_data, tmp_path):
    """SIGKILL (or the terminal closing) gives the coordinator no chance to stop its workers: they
    must die with it. And a PostgreSQL password in the storage URL must not be in any worker's argv."""
    data, cache = image_data
    space = write_space(tmp_path, data, batch=2)
    url = pg.create_database("orphans").replace("nas@", "nas:s3cret@")  # the test server trusts, ignoring it
    args = ["search", "--space", str(space), "--trials", "5", "--storage", url, "--results", str(tmp_path / "res"),
            "--confirm", "0", "--jobs", "2"]
    coordinator = worker(args, tmp_path, cache)
    deadline = time.monotonic() + 90
    while len(busy := [t for t in _trials_or_none(url) if t.state == TrialState.RUNNING and t.user_attrs.get("trained")]) < 1:
        assert time.monotonic() < deadline and coordinator.poll() is None, "no worker started training"
        time.sleep(0.2)
    pid = int(busy[0].user_attrs["worker"].rsplit(":", 1)[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert "--storage" not in cmdline and not any("s3cret" in a for a in cmdline), cmdline
    coordinator.kill()
    coordinator.communicate()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), \
        "a worker outlived its coordinator by 10 s"
    rc, out, err = finish(worker(args, tmp_path, cache), timeout=240)  # the same command resumes
    assert rc == 0, (out, err)
    assert_study_total(trained(trials(url)), 5, [out], upto=None)


def test_jobs_with_every_default_shares_the_default_storage(image_data, tmp_path):
    """The README's main command names no --storage and no --results: the workers find the same
    default study (runs/studies.db under the folder the command runs in)."""
    data, cache = image_data
    space = write_space(tmp_path, data, batch=4)
    rc, out, err = finish(worker(["search", "--space", str(space), "--trials", "2", "--confirm", "0", "--jobs", "2"],
                                 tmp_path, cache), timeout=240)
    assert rc == 0 and "Traceback" not in err, (rc, out, err)
    done = trained(trials(f"sqlite:///{tmp_path}/runs/studies.db"))
    assert_study_total(done, 2, [out])


_DISPLAYED = """
import sys
from nas import jobs
ticks = []
def status(pids):
    ticks.append(1)
    return [f"  worker {n}: busy" for n, _ in enumerate(pids, 1)]
codes = jobs.run_workers(["spaces"], 2, status=status)
print("codes", codes, "ticks", len(ticks) > 0, flush=True)
"""


def test_jobs_on_a_terminal_print_whole_worker_lines_above_a_status_block():
    """Through a real pseudo-terminal: the workers' lines arrive whole, each on its own line, the status
    block is drawn under them and erased at the end, and the exit codes come back."""
    import pty
    import re

    master, slave = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", _DISPLAYED], stdin=slave, stdout=slave, stderr=slave,
                             env={**os.environ, "COLUMNS": "200"})
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    child.wait(timeout=120)
    text = out.decode().replace("\r\n", "\n")
    expected = subprocess.run([sys.executable, "-m", "nas", "spaces"], capture_output=True, text=True).stdout.splitlines()
    erase = re.compile(r"(?:\x1b\[F\x1b\[2K)+")
    assert erase.search(text), "the status block is redrawn in place"
    lines = erase.sub("\n", text).splitlines()  # what a reader sees between redraws
    assert lines.count(expected[0]) == 2 and all(lines.count(e) == 2 for e in expected)  # both workers', whole
    assert "codes [0, 0] ticks True" in lines[-1]
    after_last_erase = erase.split(text)[-1]
    assert "worker 1: busy" not in after_last_erase  # the block is gone once the workers are
