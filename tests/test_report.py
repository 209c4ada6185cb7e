"""Reports: the trials table read back from the attributes the search wrote, the files, the CLI."""
import csv
import math

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from nas import report, trials
from nas.confirm import existing
from nas import study as studies
from nas.cli import main
from nas.errors import NasError
from nas.search import SearchConfig, open_study, run
from nas.space import Space
from toys import SPACE, FakeTrainer, tiny_data

optuna.logging.set_verbosity(optuna.logging.WARNING)

PNGS = ("accuracy_vs_params", "learning_curves", "history")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A toy study made by the real search loop: trained, stopped, rejected and a fixed design."""
    tmp = tmp_path_factory.mktemp("search")
    cfg = SearchConfig(Space.from_dict(SPACE), storage=f"sqlite:///{tmp}/s.db", results=tmp, trials=8,
                       enqueue=("small_one",))
    open_study(cfg).enqueue_trial({"w": 16, "k": 5, "pool": "maxpool"})  # the sampler proposes feasible nets only
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    return optuna.load_study(study_name="toy", storage=cfg.storage), cfg.storage, tmp


def test_frame_has_one_row_per_trial_read_from_its_attributes(searched):
    study, _, _ = searched
    df = report.trials_frame(study)
    found = trials.confirmations(existing(study))
    assert found, "the fixture's search ends with confirmation"
    assert list(df.columns) == report.COLUMNS
    assert sorted(df.trial) == [t.number for t in study.trials]
    for t in study.trials:
        row, a = df[df.trial == t.number].iloc[0], t.user_attrs
        accs = a.get("accuracies") or []
        assert row.status == a["status"]
        assert (row.params, row.rf, row.macs) == (a["params"], a["rf"], a["macs"])
        assert row.epochs == len(accs)
        assert row.meets_constraints == (not a["failures"])
        assert row.reached_target == bool(a.get("reached_target"))
        assert row.choices == " ".join(f"{k}={v}" for k, v in t.params.items())
        c = found.get(a.get("fingerprint")) if a["status"] != "duplicate" else None
        if c is None:
            assert pd.isna(row.meets_target) and math.isnan(row.test_mean) and row.seeds == ""
        else:  # test figures come from the confirmation runs, never from the search trial
            assert row.meets_target == c.meets(0.95) and row.test_mean == c.mean and row.test_min == c.min
            assert row.seeds == f"{c.passed(0.95)}/{len(c.accuracies)}" and (c.done or c.fails(0.95))
        if str(a.get("stopped_at", "")).endswith("images"):  # stopped at a rung, before an epoch ended
            assert "stopped after" in row.note and "forecast end" in row.note
            assert row.val_acc == accs[-1] if accs else math.isnan(row.val_acc)
        elif a.get("trained"):
            assert (row.val_acc, row.seconds) == (accs[-1], a["seconds"])
            assert (pd.isna(row.target_epoch) and a["target_epoch"] is None) or row.target_epoch == a["target_epoch"]
        else:
            assert math.isnan(row.val_acc) and row.epochs == 0
    statuses = set(df.status)
    assert {"rejected", "target_met", "stopped"} <= statuses
    assert (df[df.status == "rejected"].note == "fails params < 300").all()
    assert df[df.design == "small_one"].trial.tolist() == [1]  # after the infeasible point the fixture queued


def test_frame_puts_the_answers_first_and_rejected_last(searched):
    df = report.trials_frame(searched[0])
    meets = df.meets_target.fillna(False).tolist()
    assert meets[0] and meets == sorted(meets, reverse=True)
    accs = df[~df.meets_target.fillna(False)].val_acc.dropna().tolist()
    assert accs == sorted(accs, reverse=True)
    assert df.val_acc.isna().tolist() == sorted(df.val_acc.isna().tolist())  # untrained at the bottom
    assert "rejected" not in set(report.without_rejected(df).status)


def test_write_makes_csv_markdown_and_readable_pngs(searched, tmp_path):
    study, _, _ = searched
    paths = report.write(study, tmp_path / "out")
    assert set(paths) == {"csv", "markdown", *PNGS}
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(study.trials) and list(rows[0]) == report.COLUMNS
    md = paths["markdown"].read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    n_rejected = sum(t.user_attrs["status"] == "rejected" for t in study.trials)
    assert len(table) == 2 + len(study.trials) - n_rejected
    assert table[0].startswith("| trial |") and "---:" in table[1]
    assert "target 95.00%" in md and "rejected candidates are left out" in md
    with_rejected = report.write(study, tmp_path / "all", include_rejected=True)["markdown"].read_text()
    assert sum(line.startswith("|") for line in with_rejected.splitlines()) == 2 + len(study.trials)
    for name in PNGS:
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[name].stat().st_size > 30_000, f"{name}.png looks empty"
        with Image.open(paths[name]) as img:
            assert img.width >= 1000 and img.height >= 600
            assert sum(n > 0 for n in img.convert("L").histogram()) > 20, f"{name}.png looks blank"


def test_summary_counts_and_best(searched):
    study, _, _ = searched
    df = report.trials_frame(study)
    lines = report.summary(study, df)
    assert lines[0].startswith("study toy (space toy): mnist, target 95.00% test accuracy within 4 epochs")
    assert "params < 300" in lines[0]
    counts = df.status.value_counts()
    assert lines[1] == f"{len(df)} trials: " + ", ".join(
        f"{counts[s]} {s}" for s in report.STATUS_ORDER if s in counts)
    front = df[df.on_front].sort_values("params")
    assert lines[2].startswith(f"front: {len(front)} trials (validation accuracy against params)")
    best = trials.best(trials.confirmations(existing(study)), 0.95)
    assert lines[-1] == f"best: {best.line(0.95)}" and best.meets(0.95)
    assert df.iloc[0].test_mean == best.mean  # the answer heads the table
    # each confirmed design's verdict is the one confirmation printed (nas.trials.Confirmation.verdict)
    verdicts = [line.rsplit(" -> ", 1)[1] for line in lines if line.startswith("confirmed ")]
    assert "meets the target" in verdicts and set(verdicts) <= {
        "meets the target", "FAILS", "not needed: a cheaper design meets the target", "still running"}


def varied_study(storage=None) -> optuna.Study:
    """Every status by hand, including those a fake run does not reach: NaN, interrupted, failed, running."""
    study = optuna.create_study(study_name="varied", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("target", 0.99)
    study.set_user_attr("max_epochs", 3)
    study.set_user_attr("constraints", {"max_params": 20000})
    dist = {"w": CategoricalDistribution([4, 8, 16, 64])}

    def add(state, w, value=None, **attrs):
        base = {"params": w * 1000, "rf": 20, "macs": w * 50000, "failures": []}
        values = None if value is None else [value, w * 1000]
        study.add_trial(create_trial(state=state, values=values, params={"w": w}, distributions=dist,
                                     user_attrs={**base, **attrs}))

    add(TrialState.COMPLETE, 8, 0.992, status="target_met", trained=True, accuracies=[0.985, 0.992],
        target_epoch=2, seconds=20.0, reached_target=True, design="seed001")
    add(TrialState.COMPLETE, 4, 0.98, status="complete", trained=True, accuracies=[0.97, 0.975, 0.98],
        target_epoch=None, seconds=30.0, reached_target=False)
    add(TrialState.PRUNED, 16, status="nan", trained=True, accuracies=[0.1135], target_epoch=None,
        seconds=9.0, reached_target=False, message="loss became NaN at epoch 1")
    add(TrialState.FAIL, 16, status="interrupted", trained=True, accuracies=[0.95], seconds=10.0)
    add(TrialState.COMPLETE, 8, 0.992, status="duplicate", duplicate_of=0)
    add(TrialState.COMPLETE, 64, 0.0, status="rejected", failures=["params < 20,000"])
    add(TrialState.FAIL, 4)
    add(TrialState.COMPLETE, 4, 0.98, status="complete", trained=True, accuracies=[0.98], target_epoch=None,
        seconds=10.0, reached_target=False, retry_of=1)
    return study


def test_every_status_gets_a_row_and_a_note():
    df = report.trials_frame(varied_study())
    by_trial = df.set_index("trial")
    assert by_trial.status.to_dict() == {0: "target_met", 1: "complete", 2: "nan", 3: "interrupted",
                                         4: "duplicate", 5: "rejected", 6: "fail", 7: "complete"}
    assert by_trial.loc[2, "note"] == "loss became NaN at epoch 1"
    assert by_trial.loc[4, "note"] == "same net as trial 0" and math.isnan(by_trial.loc[4, "val_acc"])
    assert by_trial.loc[7, "note"] == "repeats trial 1, whose worker died"
    assert by_trial.loc[0, "design"] == "seed001" and by_trial.loc[0, "target_epoch"] == 2
    assert df.trial.tolist()[0] == 0


def test_reports_of_studies_with_no_trained_trial(tmp_path):
    for name, fill in (("empty", lambda s: None),
                       ("only_rejected", lambda s: s.add_trial(create_trial(
                           values=[0.0, 5], user_attrs={"status": "rejected", "params": 5, "failures": ["x"]})))):
        study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
        fill(study)
        paths = report.write(study, tmp_path / name)
        assert all(p.stat().st_size > 10_000 for k, p in paths.items() if k in PNGS)
        assert report.summary(study)[-1] == "no trained trial yet"
    assert list(report.trials_frame(optuna.create_study()).columns) == report.COLUMNS


def test_varied_study_plots(tmp_path):
    paths = report.write(varied_study(), tmp_path)
    assert all(paths[name].stat().st_size > 30_000 for name in PNGS)


def test_front_column_marks_the_unbeaten_trials():
    df = report.trials_frame(varied_study())
    # 4,000 params at 98% (trial 1; trial 7 ties it, later) and 8,000 at 99.2%; the NaN and the rest are not
    assert sorted(df[df.on_front].trial) == [0, 1]
    assert "◆" in report.format_trials(df)


def test_markdown_escapes_pipes():
    df = report.trials_frame(varied_study())
    df.loc[0, "note"] = "a | b"
    assert "a \\| b" in report.markdown(df)


def test_cli_prints_the_table_and_writes_under_results(searched, tmp_path):
    study, storage, _ = searched
    result = CliRunner().invoke(main, ["report", "--study", "toy", "--storage", storage, "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.splitlines()[0].split()[:3] == ["trial", "design", "status"]
    assert " rejected " not in out.split("\n\n")[0]  # trained trials only by default
    assert "best: trial" in out
    for name in ("trials.csv", "trials.md", *(f"{n}.png" for n in PNGS)):
        assert f"wrote {tmp_path / 'toy' / name}" in out
        assert (tmp_path / "toy" / name).is_file()
    everything = CliRunner().invoke(main, ["report", "--storage", storage, "--results", str(tmp_path), "--all"])
    assert everything.exit_code == 0 and " rejected " in everything.output.split("\n\n")[0]


def test_cli_errors_are_one_line(searched, tmp_path):
    _, storage, _ = searched
    result = CliRunner().invoke(main, ["report", "--study", "nope", "--storage", storage,
                                       "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: no study 'nope' in {storage} (studies: toy); "
                                     "run `nas search` first or pass --storage")
    missing = tmp_path / "none.db"
    result = CliRunner().invoke(main, ["report", "--storage", f"sqlite:///{missing}"])
    assert result.exit_code == 2 and f"error: no study database at {missing}" in result.output
    assert not missing.exists()  # reading a report never creates an empty database


def test_open_study_needs_a_name_when_the_storage_holds_several(tmp_path):
    url = f"sqlite:///{tmp_path}/two.db"
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=url)
    with pytest.raises(NasError, match=r"holds 2 studies \(a, b\); pick one with --study"):
        studies.load(None, url)
