"""Writes that go wrong: a full disk, a planted symlink, a diverged run's weights (issue 20).

A full disk is a fault injected at the one place nas writes a file's bytes (``nas.files._write``),
so these run anywhere, without a small tmpfs.
"""
from __future__ import annotations

import errno
import math
import re

import pytest
import torch
from click.testing import CliRunner

from nas import files
from nas.cli import main
from toys import assert_one_line_error, image_folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))


def fill_disk(monkeypatch, name: str = "") -> None:
    """From now on, writing a file whose name holds ``name`` fills the disk half-way through."""
    write = files._write

    def no_space(f, payload, path):
        if name not in path:
            return write(f, payload, path)
        f.write(payload[: len(payload) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files, "_write", no_space)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="nas")


def test_a_full_disk_during_export_leaves_the_previous_export_intact(tmp_path, monkeypatch):
    out = tmp_path / "export"
    assert invoke("export", "seed001", "-o", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fill_disk(monkeypatch)
    result = invoke("export", "seed000", "-o", str(out))
    assert_one_line_error(result, r"cannot write the exported weights to .*weights\.pt: no space left on the device "
                                  r"\(needs [\d,]+ bytes, [\d,]+ free\); free some space or pass a writable directory")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a file was changed or left behind"


def test_a_full_disk_while_saving_trained_weights_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    fill_disk(monkeypatch, "w.pt")
    data = image_folder(tmp_path / "data")
    spec = tmp_path / "net.yaml"
    spec.write_text("name: net\ninput: [1, 16, 16]\nlayers: [{conv: {out: 2}}, gap]\n")
    result = invoke("train", str(spec), "--dataset", str(data), "--epochs", "1", "--save", str(tmp_path / "w.pt"))
    assert_one_line_error(result, r"cannot write the weights to .*w\.pt: no space left on the device \(needs [\d,]+ "
                                  r"bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data", "net.yaml"]


def test_a_full_disk_while_caching_the_dataset_is_one_line(tmp_path, monkeypatch):
    fill_disk(monkeypatch, "data-")
    result = invoke("train", "seed001", "--dataset", str(image_folder(tmp_path / "data", size=28)), "--epochs", "1")
    assert_one_line_error(result, r"cannot write the dataset cache to .*cache/data-\w+\.pt: no space left on the "
                                  r"device .*; free some space or set NAS_CACHE_DIR to a writable folder")
    assert not list((tmp_path / "cache").iterdir())


def test_a_diverged_run_saves_no_weights(tmp_path):
    data = image_folder(tmp_path / "data")
    spec = tmp_path / "net.yaml"
    spec.write_text("name: net\ninput: [1, 16, 16]\nlayers: [{conv: {out: 2}}, gap]\n")
    result = invoke("train", str(spec), "--dataset", str(data), "--epochs", "1", "--lr", "1e30", "--batch-size", "4",
                    "--save", str(tmp_path / "w.pt"))
    assert result.exit_code == 1 and "weights not saved to" in result.stderr and "the run diverged" in result.stderr
    assert not (tmp_path / "w.pt").exists()


def test_export_refuses_weights_that_are_not_finite(tmp_path):
    from nas import registry
    from nas.build import build

    state = build(registry.load_design("seed001")).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = math.inf
    torch.save(state, tmp_path / "w.pt")
    result = invoke("export", "seed001", "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "out"))
    assert_one_line_error(result, rf"the weights for seed001 hold NaN or infinite values \({name}.*\): the run that "
                                  r"made them diverged")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("target", ["weights.pt", "model.py", "spec.yaml"])
def test_an_export_replaces_a_planted_symlink_and_never_writes_through_it(tmp_path, target):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    out = tmp_path / "export"
    out.mkdir()
    (out / target).symlink_to(victim)
    assert invoke("export", "seed001", "-o", str(out)).exit_code == 0
    assert victim.read_text() == "someone else's file" and not (out / target).is_symlink()
    assert (out / target).stat().st_size > 0


def test_a_search_and_its_report_replace_planted_symlinks_in_a_shared_results_folder(tmp_path):
    """Another user of a shared --results plants links where the next trial and the report will write."""
    import optuna

    from nas import report
    from nas.search import SearchConfig, run
    from nas.space import Space
    from toys import SPACE, FakeTrainer, tiny_data

    victims = {name: tmp_path / f"victim_{name}" for name in ("trial_0.pt", "trials.csv", "trials.md")}
    (tmp_path / "toy" / "weights").mkdir(parents=True)
    for name, victim in victims.items():
        victim.write_text("someone else's file")
        (tmp_path / "toy" / ("weights" if name.endswith(".pt") else "") / name).symlink_to(victim)
    cfg = SearchConfig(Space.from_dict(SPACE), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=1,
                       confirm=0, enqueue=("small_one",))
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    report.write(optuna.load_study(study_name="toy", storage=cfg.storage), tmp_path / "toy")
    assert all(v.read_text() == "someone else's file" for v in victims.values())
    assert torch.load(tmp_path / "toy" / "weights" / "trial_0.pt", weights_only=True)  # the trial's own weights
    assert "trial" in (tmp_path / "toy" / "trials.csv").read_text()


def test_a_journal_torn_by_a_kill_mid_append_resumes_with_its_complete_entries(tmp_path, capsys):
    import optuna

    from nas import study as studies
    from nas.search import SearchConfig, run
    from nas.space import Space
    from toys import SPACE, FakeTrainer, tiny_data

    journal = tmp_path / "j.log"
    cfg = SearchConfig(Space.from_dict(SPACE), storage=f"journal:{journal}", results=tmp_path, trials=3, confirm=0)
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-37])  # as `truncate -s -37 j.log` leaves it
    capsys.readouterr()
    out = run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    err = capsys.readouterr().err
    assert f"journal {journal}: its last entry was cut short" in err and "Traceback" not in err
    torn = (tmp_path / "j.log.torn").read_bytes()
    assert whole.startswith(journal.read_bytes()[: len(whole) - len(torn) - 37]) and torn == whole[-len(torn) - 37:-37]
    assert out.trained == 3  # the entry lost with the tail is the last one; the search trains what it lacks
    study = optuna.load_study(study_name="toy", storage=studies.storage(f"journal:{journal}"))
    assert sum(t.user_attrs.get("trained", False) for t in study.trials) >= 3


@pytest.mark.parametrize("fault", ["database or disk is full", "attempt to write a readonly database"])
def test_an_sqlite_file_that_refuses_writes_mid_search_is_one_line(fault):
    """The disk fills (or the file turns read-only) under a running search: no retrying for a minute,
    no StorageInternalError traceback, but one line that says what to do. The fault is what
    RDBStorage raises on such a file, given to the retry wrapper every storage call goes through."""
    import sqlite3
    import types

    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    from nas import study as studies
    from nas.errors import NasError

    calls = []

    def refuse(self, *args):
        calls.append(args)
        raise StorageInternalError("write failed") from sqlalchemy.exc.OperationalError(
            "INSERT", {}, sqlite3.OperationalError(fault))

    store = types.SimpleNamespace(retry_seconds=60, shown_url="sqlite:///runs/studies.db", lost=None, retrying=False)
    with pytest.raises(NasError, match=rf"cannot write the study to sqlite:///runs/studies\.db: {fault}; free some "
                                       "space or make the database file writable, then rerun the same command"):
        studies._retrying(refuse)(store, 1, "x")
    assert len(calls) == 1, "retried a fault that waiting cannot mend"


def test_a_long_journal_is_mended_even_when_its_torn_entry_outruns_the_tail_read(tmp_path):
    import json

    from nas.study import mend_journal

    whole = "".join(json.dumps({"op_code": 5, "x": "y" * 3000}) + "\n" for _ in range(100))  # 300 KB
    journal = tmp_path / "j.log"
    journal.write_text(whole)
    assert mend_journal(journal) == "" and journal.read_text() == whole
    journal.write_text(whole + '{"op_code": 1, "x": "' + "z" * 70000)  # torn, and longer than the tail read
    assert "cut short (70,021 bytes" in mend_journal(journal) and journal.read_text() == whole


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB tmpfs, filled to within 8 KiB: where the machine lets the tests mount one."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()}); the injected faults above cover it")
    try:
        (mount / "fill").write_bytes(b"\0" * (256 * 1024 - 8 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_under_jobs_stops_every_worker_with_its_error_and_resumes(tmp_path, small_disk):
    """Two worker processes write weights onto a full disk: each says so in one line, the coordinator
    exits 2 and leaves no worker behind, and once space is freed the same command resumes."""
    import copy
    import os
    import subprocess
    import sys

    import optuna
    import yaml

    from test_bad_input import SPACE

    space = copy.deepcopy(SPACE)
    space["task"]["dataset"] = str(image_folder(tmp_path / "data"))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    storage = f"sqlite:///{tmp_path}/s.db"
    command = [sys.executable, "-c", "from nas.cli import main; main(prog_name='nas')", "search", "--space",
               str(tmp_path / "tiny.yaml"), "--jobs", "2", "--trials", "3", "--confirm", "0",
               "--results", str(small_disk / "r"), "--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAS_CACHE_DIR": str(tmp_path / "cache")}
    full = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr + full.stdout
    errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(re.search(r"cannot write trial \d+'s weights to .*: no space left on the device \(needs "
                                    r"[\d,]+ bytes, [\d,]+ free\); free some space", e) for e in errors[:-1]), errors
    assert re.search(r"workers? failed .*run the same command to resume study tiny", errors[-1]), errors
    assert not [p for p in (small_disk / "r" / "tiny" / "weights").glob("*") if not p.name.endswith(".pt")]
    (small_disk / "fill").unlink()
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="tiny", storage=storage)
    done = [t for t in study.trials if t.user_attrs.get("trained")]
    assert len(done) >= 3 and all((small_disk / "r" / "tiny" / "weights" / f"trial_{t.number}.pt").is_file()
                                  for t in done if t.user_attrs.get("weights"))
