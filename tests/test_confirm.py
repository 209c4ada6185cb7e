"""Choosing on validation, confirming on test: the split, the front, confirmation runs, "best"."""
import optuna
import pytest
import torch
from optuna.trial import TrialState

from nas import trials
from nas.confirm import companion, confirm
from nas.data import TensorData
from nas.search import SearchConfig, open_study, run
from nas.space import Space
from toys import SPACE, FakeTrainer, tiny_data


def config(tmp_path, **kw):
    kw.setdefault("trials", 6)
    return SearchConfig(Space.from_dict(SPACE), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, **kw)


class TestImagesRead(AssertionError):
    __test__ = False  # not a test class: the error a sealed test set raises


class Untouchable:
    """Stands in for the test images: any use at all fails the test."""

    def __getattr__(self, name):
        raise TestImagesRead(f"the test set was read ({name})")

    def __getitem__(self, key):
        raise TestImagesRead("the test set was read (indexing)")

    def __len__(self):
        raise TestImagesRead("the test set was read (len)")


def sealed(data: TensorData) -> TensorData:
    return TensorData(data.name, data.x_train, data.y_train, Untouchable(), Untouchable(), data.classes,
                      data.mean, data.std)


def test_a_search_never_reads_the_test_set_and_confirmation_does(tmp_path):
    """The real trainer on tiny data: the search trains and evaluates without the test images."""
    data = tiny_data(train=160)
    easy = Space.from_dict({**SPACE, "task": {**SPACE["task"], "target": 0.01}})  # nothing is pruned
    cfg = SearchConfig(easy, storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=3, confirm=0,
                       train_options={"batch_size": 16, "bn_recalibrate": 32})
    out = run(cfg, data=sealed(data))  # would raise TestImagesRead if any trial read the test set
    assert out.trained == 3
    study = out.study
    assert study.user_attrs["split"] == {"validation": 20, "seed": 0}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("trained"):
            assert len(t.user_attrs["accuracies"]) >= 1
            assert all(acc * 20 == round(acc * 20) for acc in t.user_attrs["accuracies"]), \
                "accuracies are over the 20 held-out validation images"
    # confirmation is where the test set is read: sealed, it fails there
    cfg.confirm = 1
    with pytest.raises(TestImagesRead):
        confirm(cfg, study, sealed(data))
    done = confirm(cfg, study, data)
    c = done.found[done.asked[0]]
    assert c.done and sorted(c.accuracies) == [0, 1, 2]
    assert all(acc * 40 == round(acc * 40) for acc in c.accuracies.values()), "tested on the 40 test images"


def test_the_split_is_the_same_for_every_worker_and_resume(tmp_path):
    data = tiny_data()
    first = open_study(config(tmp_path, seed=3))
    again = open_study(config(tmp_path, seed=9))  # another worker, another --seed: the study's split wins
    assert again.user_attrs["split"] == first.user_attrs["split"] == {"validation": 20, "seed": 3}
    from nas.search import validation_data
    a, b = validation_data(first, data), validation_data(again, data, seed=9)
    assert torch.equal(a.x_test, b.x_test) and len(a.y_test) == 20 and len(a.y_train) == 100
    # validation and training images are disjoint and together are all the training images
    assert sorted(torch.cat([a.x_train, a.x_test]).flatten(1).sum(1).tolist()) == \
        sorted(data.x_train.flatten(1).sum(1).tolist())


def test_front_is_cheapest_first_and_confirmation_picks_those_that_reached_the_target_first(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])

    def add(acc, params, failures=()):
        study.add_trial(optuna.trial.create_trial(values=[acc, params], user_attrs={
            "trained": True, "status": "complete", "accuracies": [acc], "params": params,
            "failures": list(failures)}))

    add(0.90, 100)
    add(0.95, 200)
    add(0.93, 300)  # dominated by the 200-param net
    add(0.97, 400)
    add(0.99, 500, failures=["params < 450"])  # infeasible: never on the front
    assert [t.user_attrs["params"] for t in trials.front(study)] == [100, 200, 400]
    picked = lambda target, limit=3: [t.user_attrs["params"] for t in trials.to_confirm(study, target, limit=limit)]  # noqa: E731
    assert picked(0.95, limit=2) == [200, 400]  # those that reached the target, cheapest first
    assert picked(0.95, limit=1) == [200]
    assert picked(0.95) == [200, 400, 100]  # then the most accurate of the rest
    assert picked(0.999) == [400, 200, 100]  # none reached it: the most accurate first


def test_best_is_the_cheapest_design_that_meets_the_target_in_every_seed():
    c = trials.Confirmation
    found = {
        "a": c("a", "trial 1", {"params": 100}, {0: 0.99, 1: 0.97, 2: 0.99}),  # one seed misses
        "b": c("b", "trial 2", {"params": 200}, {0: 0.985, 1: 0.986, 2: 0.99}),
        "c": c("c", "trial 3", {"params": 200}, {0: 0.99, 1: 0.99, 2: 0.99}),  # same size, higher mean
        "d": c("d", "trial 4", {"params": 150}, {0: 0.99, 1: 0.99}),  # a seed still to run
    }
    assert trials.best(found, 0.98).source == "trial 3"
    assert trials.best(found, 0.995) is None
    assert not found["d"].done and not found["d"].meets(0.98)


def test_search_ends_with_confirmation_and_a_stopped_confirmation_resumes(tmp_path):
    fake = FakeTrainer()
    out = run(config(tmp_path, trials=6, confirm=2), data=tiny_data(), train_fn=fake)
    searched = out.trained
    confirmed = out.confirmed
    assert confirmed.asked and not confirmed.interrupted
    # w=8 nets reach 0.96 in validation (target 0.95), so they are the candidates that matter
    assert all(c.figures["params"] < 300 and c.done for c in confirmed.found.values())
    runs = [t for t in companion(out.study).trials if t.user_attrs.get("status") == "confirmed"]
    assert len(runs) == 3 * len(confirmed.asked) == len(fake.calls) - searched
    assert all(cfg.eval_each_epoch is False and cfg.stop_at_target is False and cfg.target is None
               for cfg in fake.configs[searched:]), "confirmation trains the whole schedule and tests once"
    assert sorted(t.user_attrs["seed"] for t in runs) == sorted([0, 1, 2] * len(confirmed.asked))
    assert confirmed.best is not None and confirmed.best.meets(0.95)
    assert any("best: trial" in line for line in confirmed.lines())

    # a second search, stopped by Ctrl-C in its first confirmation run, then resumed
    cfg = config(tmp_path / "b", trials=6, confirm=1)
    (tmp_path / "b").mkdir()
    stopped = run(cfg, data=tiny_data(), train_fn=FakeTrainer(interrupt_on_call=7))
    assert stopped.interrupted and stopped.confirmed.interrupted
    runs_study = companion(stopped.study)
    failed = [t for t in runs_study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["status"] == "interrupted"
    again = FakeTrainer()
    resumed = run(cfg, data=tiny_data(), train_fn=again)
    assert not resumed.interrupted and resumed.confirmed.found[resumed.confirmed.asked[0]].done
    assert len(again.calls) == 3, "the search had its trials: only the three seeds' runs are left to train"
    assert len(run(cfg, data=tiny_data(), train_fn=again).confirmed.found) == 1 and len(again.calls) == 3


def test_a_longer_confirmation_schedule_keeps_the_shorter_ones_runs_and_weights(tmp_path):
    out = run(config(tmp_path, trials=6, confirm=1), data=tiny_data(), train_fn=FakeTrainer())
    longer = dict(SPACE, task={**SPACE["task"], "confirm_epochs": 3})
    cfg = SearchConfig(Space.from_dict(longer), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=6,
                       confirm=1)
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    runs = [t for t in companion(out.study).trials if t.user_attrs.get("status") == "confirmed"]
    assert sorted({t.user_attrs["epochs"] for t in runs}) == [3, 4] and len(runs) == 6
    weights = {t.user_attrs["weights"] for t in runs}
    assert len(weights) == 6 and all((tmp_path / "toy" / w).is_file() for w in weights)


def test_a_run_queued_twice_is_trained_once(tmp_path):
    fake = FakeTrainer()
    cfg = config(tmp_path, trials=6, confirm=0)
    study = run(cfg, data=tiny_data(), train_fn=fake).study
    runs = companion(study)
    t = trials.to_confirm(study, 0.95, limit=1)[0]
    for _ in range(2):  # what two workers planning at the same moment would do
        runs.enqueue_trial({}, user_attrs={"kind": "confirm", "fingerprint": t.user_attrs["fingerprint"], "seed": 0,
                                           "spec": t.user_attrs["spec"], "source": f"trial {t.number}", "params": 60})
    calls = len(fake.calls)
    cfg.confirm, cfg.seeds = 1, 1
    done = confirm(cfg, study, tiny_data(), train_fn=fake)
    assert len(fake.calls) == calls + 1
    statuses = sorted(t.user_attrs["status"] for t in companion(study).trials)
    assert statuses == ["confirmed", "duplicate"]
    assert done.found[t.user_attrs["fingerprint"]].done


@pytest.mark.slow
def test_reproduce_prints_a_documented_designs_confirmed_figures(tmp_path, monkeypatch):
    """Real MNIST, a small slice: `nas reproduce seed001` confirms the design over its seeds."""
    from click.testing import CliRunner

    from conftest import DATA
    from nas.cli import main

    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {DATA}")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    args = ["reproduce", "seed001", "--data-dir", str(DATA), "--results", str(tmp_path / "runs"),
            "--train-limit", "256", "--seeds", "2"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert sum(line.startswith("confirm seed001      seed ") for line in lines) == 2
    assert lines[-2].startswith("confirmation: 12 epochs on all 256 training images, tested once after the last epoch")
    assert lines[-1].startswith("seed001: 18,666 params; ") and " seeds >= 99.40% at epoch 12; test mean " in lines[-1]
    again = CliRunner().invoke(main, args)  # resumes: both seeds are done, nothing is trained again
    assert again.exit_code == 0 and "confirm seed001" not in again.output and again.output.strip().endswith(
        lines[-1].split("; test mean")[1])
    from nas import study as studies
    from nas.confirm import existing

    s = studies.load("mnist_squeeze", f"sqlite:///{tmp_path / 'runs' / 'studies.db'}")
    assert existing(s) is None, "a quick look on a slice of the training images never counts as a confirmation"
