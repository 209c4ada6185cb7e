"""Choosing on validation, confirming on test: the split, the front, confirmation runs, "best"."""
import optuna
import pytest
import torch
from optuna.trial import TrialState

from nas import trials
from nas.confirm import companion, confirm
from nas.data import TensorData
from nas.errors import NasError
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
    assert torch.equal(a.x_eval, b.x_eval) and len(a.y_eval) == 20 and len(a.y_train) == 100
    assert (data.eval_split, a.eval_split) == ("test", "validation")
    # validation and training images are disjoint and together are all the training images
    assert sorted(torch.cat([a.x_train, a.x_eval]).flatten(1).sum(1).tolist()) == \
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


def test_confirmation_tries_every_cheap_net_within_the_noise_not_only_the_front():
    """Three nets within the noise of the target: the front holds one, confirmation is offered all."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("val_threshold", 0.99)
    for acc, params in ((0.9934, 5290), (0.9932, 5402), (0.9932, 5860), (0.9930, 5640), (0.985, 4000)):
        study.add_trial(optuna.trial.create_trial(values=[acc, params], user_attrs={
            "trained": True, "status": "complete", "accuracies": [acc], "params": params, "failures": []}))
    assert [t.user_attrs["params"] for t in trials.front(study)] == [4000, 5290]
    picked = [t.user_attrs["params"] for t in trials.to_confirm(study, 0.994)]
    assert picked == [5290, 5402, 5640]  # cheapest first, though only 5,290 is on the front


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
    # w=8 nets reach 0.96 in validation (target 0.95) and meet it; a w=4 net ends at 0.94, within the
    # noise of 20 validation images, so it is tried first and fails at its first seed
    found = [confirmed.found[fp] for fp in confirmed.asked]
    assert all(c.figures["params"] < 300 for c in found)
    assert all((c.meets(0.95) and c.done) or (c.fails(0.95) and list(c.accuracies) == [0]) for c in found)
    runs = [t for t in companion(out.study).trials if t.user_attrs.get("status") == "confirmed"]
    assert len(runs) == sum(len(c.accuracies) for c in found) == len(fake.calls) - searched
    assert all(cfg.eval_each_epoch is False and cfg.stop_at_target is False and cfg.target is None
               for cfg in fake.configs[searched:]), "confirmation trains the whole schedule and tests once"
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
    c = resumed.confirmed.found[resumed.confirmed.asked[0]]
    assert not resumed.interrupted and (c.done or c.fails(0.95)), "the resumed confirmation decides the design"
    assert len(again.calls) == len(c.accuracies), "the search had its trials: only confirmation runs are left"
    calls = len(again.calls)
    assert len(run(cfg, data=tiny_data(), train_fn=again).confirmed.found) == 1 and len(again.calls) == calls


def test_another_confirmation_schedule_keeps_the_first_ones_runs_and_weights(tmp_path):
    out = run(config(tmp_path, trials=6, confirm=1), data=tiny_data(), train_fn=FakeTrainer())
    other = dict(SPACE, task={**SPACE["task"], "confirm_epochs": 3})
    cfg = SearchConfig(Space.from_dict(other), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=6,
                       confirm=1)
    with pytest.raises(NasError, match="compared its candidates on 4 epochs.*now trains 3; pass another --study"):
        run(cfg, data=tiny_data(), train_fn=FakeTrainer())  # the search decides on the schedule that confirms
    confirm(cfg, out.study, tiny_data(), train_fn=FakeTrainer())
    runs = [t for t in companion(out.study).trials if t.user_attrs.get("status") == "confirmed"]
    per_schedule = {e: sum(t.user_attrs["epochs"] == e for t in runs) for e in (3, 4)}
    assert per_schedule[3] == per_schedule[4] >= 1 and len(runs) == 2 * per_schedule[3]
    weights = {t.user_attrs["weights"] for t in runs}
    assert len(weights) == len(runs) and all((tmp_path / "toy" / w).is_file() for w in weights)


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
    runs = [line for line in lines if line.startswith("confirm seed001      seed ")]
    assert len(runs) == 2
    # the time left, from the runs finished so far: one more run of about the first one's time
    assert runs[0].endswith(" s  [at most 1 min of confirmation left]") and "of confirmation left" not in runs[1], runs
    assert lines[-2].startswith("confirmation: 15 epochs on all 256 training images, tested once after the last epoch")
    assert lines[-1].startswith("seed001: 18,666 params; ") and " seeds >= 99.40% at epoch 15; test mean " in lines[-1]
    again = CliRunner().invoke(main, args)  # resumes: both seeds are done, nothing is trained again
    assert again.exit_code == 0 and "confirm seed001" not in again.output and again.output.strip().endswith(
        lines[-1].split("; test mean")[1])
    from nas import study as studies
    from nas.confirm import existing

    s = studies.load("mnist_squeeze", f"sqlite:///{tmp_path / 'runs' / 'studies.db'}")
    assert existing(s) is None, "a quick look on a slice of the training images never counts as a confirmation"


def test_confirmation_stops_a_design_at_its_first_failing_seed_and_once_a_cheaper_design_meets(tmp_path):
    """Designs are confirmed cheapest first; one seed below the target decides a design, and once a
    design meets the target the dearer ones are not trained at all."""
    cfg = config(tmp_path, confirm=3)
    study = open_study(cfg)
    points = [{"w": 2, "k": 3, "pool": "maxpool"}, {"w": 4, "k": 3, "pool": "maxpool"}, {"w": 8, "k": 3, "pool": "maxpool"}]
    for acc, p in zip((0.96, 0.97, 0.98), points):  # three front designs that reached the 0.95 target
        a = analyse_point(cfg.space, p)
        study.add_trial(optuna.trial.create_trial(params=cfg.space.encode(p), distributions=distributions(cfg.space),
                                                  values=[acc, a.params], user_attrs={
            "trained": True, "status": "target_met", "reached_target": True, "accuracies": [acc],
            "params": a.params, "rf": a.rf, "macs": a.macs, "failures": [], "spec": a.spec.to_dict()}))
    sizes = sorted(analyse_point(cfg.space, p).params for p in points)
    trained = []

    def fake(model, data, config, on_epoch=None, **kw):
        size = sum(p.numel() for p in model.parameters())
        trained.append((size, config.seed))
        acc = 0.90 if size == sizes[0] and config.seed == 0 else 0.97  # the cheapest misses with seed 0
        return FakeTrainer.__call__.__globals__["FakeResult"]([acc], [0.0], [0.01], 0.01, None, "complete")

    done = confirm(cfg, study, tiny_data(), train_fn=fake)
    assert trained == [(sizes[0], 0), (sizes[1], 0), (sizes[1], 1), (sizes[1], 2)]
    assert done.best.figures["params"] == sizes[1]
    runs = companion(study).trials
    skipped = [t.user_attrs["message"] for t in runs if t.user_attrs.get("status") == "skipped"]
    assert skipped.count("a seed of this design fell short of the target") == 2
    assert skipped.count(f"a design of {sizes[1]:,} params meets the target") == 3
    lines = "\n".join(done.lines())
    assert "FAILS" in lines and "not needed: a cheaper design meets the target" in lines
    assert "(2 not run: one short seed decides)" in lines
    assert not confirm(cfg, study, tiny_data(), train_fn=fake).trained  # nothing left: skipped runs stay skipped


def analyse_point(space, params):
    from nas.analysis import analyse
    return analyse(space.spec(params))


def distributions(space):
    from optuna.distributions import CategoricalDistribution
    return {k: CategoricalDistribution(space.labels(k)) for k in space.choices}


def test_a_resumed_confirmation_takes_the_cheapest_designs_cut_run_first(tmp_path):
    """A run cut by Ctrl-C goes to the back of Optuna's queue; the next confirmation still trains the
    cheapest design's runs first, the cut one (which resumes from its checkpoint) before a fresh seed,
    so a dearer design's seeds are never trained while the cheapest can still make them needless."""
    cfg = config(tmp_path, confirm=2)
    study = open_study(cfg)
    points = [{"w": 4, "k": 3, "pool": "maxpool"}, {"w": 8, "k": 3, "pool": "maxpool"}]
    for p in points:  # two front designs that reached the 0.95 target
        a = analyse_point(cfg.space, p)
        study.add_trial(optuna.trial.create_trial(params=cfg.space.encode(p), distributions=distributions(cfg.space),
                                                  values=[0.97, a.params], user_attrs={
            "trained": True, "status": "target_met", "reached_target": True, "accuracies": [0.97],
            "params": a.params, "rf": a.rf, "macs": a.macs, "failures": [], "spec": a.spec.to_dict()}))
    cheap, dear = sorted(analyse_point(cfg.space, p).params for p in points)
    trained, resumed = [], []

    def fake(model, data, config, on_epoch=None, checkpoint=None, **kw):
        size = sum(p.numel() for p in model.parameters())
        if (size, config.seed) == (cheap, 1) and not trained_before_cut:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes(b"epoch 3")  # what the trainer leaves after each epoch
            trained_before_cut.append(True)
            raise KeyboardInterrupt  # Ctrl-C mid-run
        trained.append((size, config.seed))
        resumed.append(checkpoint.is_file())
        return FakeTrainer.__call__.__globals__["FakeResult"]([0.97], [0.0], [0.01], 0.01, None, "complete")

    trained_before_cut: list[bool] = []
    first = confirm(cfg, study, tiny_data(), train_fn=fake, signals=False)
    assert first.interrupted and trained == [(cheap, 0)]
    trained.clear(), resumed.clear()
    done = confirm(cfg, study, tiny_data(), train_fn=fake, signals=False)
    assert trained == [(cheap, 1), (cheap, 2)], "the cut run first, then the cheapest design's fresh seed"
    assert resumed == [True, False]
    assert done.best.figures["params"] == cheap and done.best.done
    runs = companion(study).trials
    skipped = [t.user_attrs["message"] for t in runs if t.user_attrs.get("status") == "skipped"]
    assert skipped == [f"a design of {cheap:,} params meets the target"] * 3
