"""The search loop on a fake trainer: rejection before training, early stops, resume, enqueue, records."""

import optuna
import pytest
from optuna.trial import TrialState

from nas.analysis import analyse
from nas.errors import NasError
from nas.forecast import Forecast, rungs
from nas.search import SearchConfig, counts, enqueue, open_study, run
from nas.space import Space
from toys import SPACE, FakeResult, FakeTrainer, tiny_data

def config(tmp_path, **kw):
    kw.setdefault("trials", 4)
    kw.setdefault("confirm", 0)  # confirmation has tests of its own (test_confirm.py)
    return SearchConfig(Space.from_dict(SPACE), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, **kw)


def test_rejected_candidates_never_train_and_everything_is_recorded(tmp_path):
    fake = FakeTrainer()
    cfg = config(tmp_path, trials=5)
    study = open_study(cfg)
    for w in (16, 8):  # the sampler itself proposes feasible nets only: ask for infeasible ones
        study.enqueue_trial({"w": w, "k": 5, "pool": "maxpool"})
    out = run(cfg, data=tiny_data(), train_fn=fake)
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    trials = study.get_trials()
    rejected = [t for t in trials if t.user_attrs.get("status") == "rejected"]
    trained = [t for t in trials if t.user_attrs.get("trained")]
    assert out.trained == len(trained) == 5 == len(fake.calls)
    assert rejected, "w=16, k=5 nets exceed 300 params and must be rejected"
    for t in rejected:
        assert "trained" not in t.user_attrs and t.user_attrs["params"] >= 300
        assert t.user_attrs["failures"] == ["params < 300"] and t.user_attrs["check_ms"] < 50
    assert all(t.user_attrs["params"] < 300 for t in trained)
    for t in trained:
        a = t.user_attrs
        assert a["params"] == analyse(__import__("nas.spec", fromlist=["Spec"]).Spec.from_dict(a["spec"])).params
        assert (a["accuracies"] or a["stopped_at"].endswith("images")) and a["status"] in ("target_met", "complete", "stopped")
        assert (tmp_path / "toy" / a["weights"]).is_file()
        assert t.state == TrialState.COMPLETE  # the two objectives: validation accuracy (a forecast if stopped), params
        assert t.values == [a["predicted"] if a["status"] == "stopped" else a["accuracies"][-1], a["params"]]


def test_stopped_candidates_are_complete_with_their_forecast_as_value(tmp_path):
    """Every trained candidate informs the sampler: a stopped one is a COMPLETE trial (TPE ignores
    PRUNED ones in a two-objective study) whose value is its forecast end, below the target."""
    cfg = config(tmp_path, trials=12)
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    stopped = [t for t in study.get_trials() if t.user_attrs.get("status") == "stopped"]
    assert stopped and all(t.state == TrialState.COMPLETE for t in stopped)
    for t in stopped:  # w=2 and w=4 nets: their curves end below the 0.95 target
        assert t.user_attrs["spec"]["blocks"]["f"][0]["conv"]["out"] in (2, 4)
        assert t.values[0] == t.user_attrs["predicted"] < 0.95 and t.values[1] == t.user_attrs["params"]
        fraction, acc = t.user_attrs["curve"][-1]
        assert t.values[0] == pytest.approx(Forecast(0.95).expected(fraction, acc), abs=1e-6)
    assert all(t.user_attrs["status"] != "stopped" for t in trials_front(study))
    # and their shortfall is a constraint: TPE counts them with the infeasible, ranked by how far they miss
    threshold = study.user_attrs["val_threshold"]
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("status") == "stopped":
            assert t.constraints["short"] == pytest.approx(threshold - t.values[0])
        elif t.user_attrs.get("status") == "target_met":
            assert t.constraints["short"] == 0
    from optuna.samplers._tpe.sampler import _split_trials
    done = study.get_trials(states=(TrialState.COMPLETE,))
    within = {t.number for t in done if t.constraints.get("short") == 0}  # ended within noise of the target
    below, above = _split_trials(study, done, len(within))
    assert {t.number for t in below} <= within, "the good ones are nets that may reach the target"
    assert {t.number for t in stopped} <= {t.number for t in above}


def trials_front(study):
    from nas.trials import front
    return front(study)


def test_ctrl_c_stops_after_the_epoch_and_the_same_command_resumes(tmp_path):
    cfg = config(tmp_path, trials=3, enqueue=("small_one",))
    out = run(cfg, data=tiny_data(), train_fn=FakeTrainer(interrupt_on_call=1))
    assert out.interrupted
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    first = study.trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["status"] == "interrupted"
    assert first.user_attrs["accuracies"] == [0.4]  # kept
    fake = FakeTrainer()
    out = run(config(tmp_path, trials=3), data=tiny_data(), train_fn=fake)
    assert not out.interrupted and out.trained == 3
    assert fake.calls[0] == 2  # the interrupted candidate is retrained first
    assert run(config(tmp_path, trials=3), data=tiny_data(), train_fn=fake).trained == 3  # nothing more to do
    assert len(fake.calls) == 3


def test_enqueue_is_strict(tmp_path):
    cfg = config(tmp_path)
    study = open_study(cfg)
    assert enqueue(study, cfg.space, "small_one") == {"w": 2, "k": 3, "pool": "maxpool"}
    with pytest.raises(NasError, match="design 'seed001' is not a point of space toy"):
        enqueue(study, cfg.space, "seed001")
    bad = tmp_path / "p.yaml"
    bad.write_text("{w: 2, k: 3, pool: maxpool, colour: red}")
    with pytest.raises(NasError, match="unknown choice 'colour'"):
        enqueue(study, cfg.space, str(bad))
    bad.write_text("{w: 3, k: 3, pool: maxpool}")
    with pytest.raises(NasError, match=r"w=3 is outside space toy \(allowed: \[2, 4, 8, 16\]\)"):
        enqueue(study, cfg.space, str(bad))


def test_reproduced_design_is_the_documented_net(tmp_path):
    from nas import registry
    space = Space.load("mnist_squeeze")
    cfg = SearchConfig(space, storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path)
    study = open_study(cfg)
    for design in ("seed000", "seed001"):
        params = enqueue(study, space, design)
        assert analyse(space.spec(params)).params == analyse(registry.load_design(design)).params
    broken = {**SPACE, "points": {"seed001": {"w": 2, "k": 3, "pool": "maxpool"}}}
    with pytest.raises(NasError, match="does not give the net of design seed001"):
        enqueue(study, Space.from_dict(broken), "seed001")


def test_infeasible_space_fails_before_any_trial(tmp_path):
    data = {**SPACE, "task": {**SPACE["task"], "constraints": {"max_params": 10}}}
    cfg = SearchConfig(Space.from_dict(data), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path)
    fake = FakeTrainer()
    with pytest.raises(NasError, match="fewest params in this space is .* >= 10"):
        run(cfg, data=tiny_data(), train_fn=fake)
    assert fake.calls == []


def test_same_seed_samples_the_same_candidates(tmp_path):
    picked = []
    for run_dir in ("a", "b"):
        (tmp_path / run_dir).mkdir()
        cfg = config(tmp_path / run_dir, trials=4, seed=7)
        run(cfg, data=tiny_data(), train_fn=FakeTrainer())
        study = optuna.load_study(study_name="toy", storage=cfg.storage)
        picked.append([t.params for t in study.trials])
    assert picked[0] == picked[1]


def test_counts(tmp_path):
    cfg = config(tmp_path, trials=4)
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    c = counts(optuna.load_study(study_name="toy", storage=cfg.storage))
    assert c["trained"] == 4 and c["failed"] == 0


def test_the_default_storage_works_in_a_fresh_folder(tmp_path, monkeypatch):
    """No runs/ folder yet: the first search makes it (and nothing before its storage opens)."""
    from nas import study as studies

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(studies, "RESULTS", tmp_path / "runs")
    monkeypatch.setattr(studies, "DEFAULT_STORAGE", "sqlite:///runs/studies.db")
    cfg = SearchConfig(Space.from_dict(SPACE), trials=1, confirm=0, results=tmp_path / "runs")
    assert run(cfg, data=tiny_data(), train_fn=FakeTrainer()).trained == 1
    assert (tmp_path / "runs" / "studies.db").is_file() and (tmp_path / "runs" / "toy" / "weights").is_dir()


def test_a_net_whose_forecast_misses_the_target_stops_at_the_first_rung(tmp_path):
    """Rungs come from the schedule and the training images; a net far below the target a ninth of the
    way in stops there, while --halving 0 checks only at epoch ends."""
    space = dict(SPACE, choices={"w": [2], "k": [3], "pool": ["maxpool"]}, points={},  # one candidate: 2 channels
                 task={**SPACE["task"], "target": 0.99})  # 20 validation images: the noise allows down to 94.5%
    data = tiny_data(train=400)  # 380 after the validation split: 2 batches of 128 an epoch
    first = str(rungs(epochs=4, images_per_epoch=256, eta=3)[0])
    cfg = SearchConfig(Space.from_dict(space), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=1, confirm=0)
    fake = FakeTrainer()
    run(cfg, data=data, train_fn=fake)
    mine = optuna.load_study(study_name="toy", storage=cfg.storage).get_trials()[-1]
    assert mine.user_attrs["rungs"] == {first: 0.39} and mine.user_attrs["stopped_at"] == f"{first} images"
    assert mine.user_attrs["accuracies"] == [] and mine.user_attrs["status"] == "stopped"

    cfg = SearchConfig(Space.from_dict(space), storage=f"sqlite:///{tmp_path}/t.db", results=tmp_path, trials=1,
                       confirm=0, halving=0, study_name="flat")
    run(cfg, data=data, train_fn=fake)
    flat = optuna.load_study(study_name="flat", storage=cfg.storage).get_trials()[-1]
    assert "rungs" not in flat.user_attrs and flat.user_attrs["stopped_at"] == "epoch 1"


def test_a_slow_learner_forecast_to_reach_the_target_is_not_stopped(tmp_path):
    """The old rule stopped a curve that was behind every curve that reached the target; a small net
    learning more slowly than a big one is judged on its own forecast end instead."""
    space = dict(SPACE, choices={"w": [8, 4], "k": [3], "pool": ["maxpool"]}, points={})
    curves = {8: [0.9, 0.96, 0.97, 0.98], 4: [0.84, 0.92, 0.945, 0.96]}  # w=4 trails w=8 at every epoch

    class Curves(FakeTrainer):
        def __call__(self, model, data, config, on_epoch=None, rungs=(), on_rung=None, checkpoint=None):
            width = next(model.parameters()).shape[0]
            self.calls.append(width)
            accs = []
            for epoch, acc in enumerate(curves[width], start=1):
                accs.append(acc)
                if on_epoch(epoch, acc):
                    return type("R", (), dict(accuracies=accs, target_epoch=None, status="stopped", seconds=0.1))()
            met = next((i + 1 for i, a in enumerate(accs) if a >= config.target), None)
            return type("R", (), dict(accuracies=accs, target_epoch=met, status="complete", seconds=0.1))()

    cfg = SearchConfig(Space.from_dict(space), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=2,
                       confirm=0, halving=0)
    fake = Curves()
    study = open_study(cfg)
    study.enqueue_trial({"w": 8, "k": 3, "pool": "maxpool"})  # the big net first, so it is the reference
    study.enqueue_trial({"w": 4, "k": 3, "pool": "maxpool"})
    run(cfg, data=tiny_data(), train_fn=fake)
    small = next(t for t in optuna.load_study(study_name="toy", storage=cfg.storage).get_trials()
                 if t.params.get("w") == 4)
    assert fake.calls == [8, 4]
    assert small.user_attrs["status"] == "target_met" and small.user_attrs["accuracies"] == curves[4]


def test_no_net_is_proposed_twice_and_the_search_ends_when_the_space_is_covered(tmp_path, capsys):
    """More --trials than the space has nets: every trial is a new net, and the search ends by
    itself once every net under the cost cap has been tried (it used to repeat duplicates forever)."""
    from nas.cli import _print_trial

    cfg = config(tmp_path, trials=50)
    out = run(cfg, data=tiny_data(), train_fn=FakeTrainer(), on_trial=_print_trial)
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    fps = [t.user_attrs["fingerprint"] for t in study.get_trials() if t.user_attrs.get("trained")]
    assert out.covered and out.duplicates == 0 and len(fps) == len(set(fps)) == out.trained < 14
    assert "duplicate" not in capsys.readouterr().out


def test_each_trial_line_says_how_much_of_the_search_budget_is_left(tmp_path, capsys):
    import time

    from nas.cli import _print_trial

    cfg = config(tmp_path, trials=2)
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())
    trained = [t for t in optuna.load_study(study_name="toy", storage=cfg.storage).get_trials()
               if t.user_attrs.get("trained")]
    _print_trial(trained[0], ends=time.perf_counter() + 600)
    _print_trial(trained[0], ends=time.perf_counter() + 20.4)
    _print_trial(trained[0], ends=time.perf_counter() - 1)
    _print_trial(trained[0])
    first, last_seconds, spent, plain = capsys.readouterr().out.splitlines()
    assert first.endswith("[search: 10 min left]") and spent.endswith("[search budget spent: finishing]")
    assert last_seconds.endswith("[search: 20 s left]")  # under a minute and a half, not "spent" while some is left
    assert "[search" not in plain  # no budget (--trials only): nothing to count down


def test_once_a_net_reaches_the_target_only_cheaper_nets_are_trained(tmp_path):
    cfg = config(tmp_path, trials=50)
    run(cfg, data=tiny_data(), train_fn=FakeTrainer())  # w >= 8 nets reach the 0.95 target
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    done = [t for t in study.get_trials() if t.user_attrs.get("trained")]
    cap, after = None, 0
    for t in done:  # the cap is the cheapest net at the target so far; each later net is cheaper than it
        if cap is not None:
            assert t.user_attrs["params"] < cap
            after += 1
        if t.user_attrs["reached_target"]:
            cap = min(cap or t.user_attrs["params"], t.user_attrs["params"])
    assert after and cap == trials_cap(study)
    # and every net cheaper than the final cap was tried
    from nas.sampler import Catalogue
    cheaper = {e.key for e in Catalogue(cfg.space, "params").distinct() if e.cost < cap}
    assert cheaper <= {t.user_attrs["fingerprint"] for t in done}


def trials_cap(study):
    from nas.trials import cost_cap
    return cost_cap(study)



def quadrant_data(n: int = 1100, test: int = 100):
    """4 classes told apart by which quadrant is bright: a plain conv net learns them in an epoch,
    at a learning rate that suits it."""
    import torch

    from nas.data import TensorData

    y = torch.arange(n) % 4
    x = torch.randint(0, 60, (n, 1, 12, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for c in range(4):
        r, q = divmod(c, 2)
        x[y == c, :, r * 6:(r + 1) * 6, q * 6:(q + 1) * 6] += 150
    return TensorData("quadrants", x[:-test], y[:-test], x[-test:], y[-test:], list("0123"), (0.3,), (0.3,))


def test_a_net_without_bn_stuck_at_the_default_rate_trains_at_the_rate_the_search_picks(tmp_path):
    """Without BatchNorm (He-initialised) this net stays at chance at peak lr 1 for every seed tried,
    and learns at 0.1: the search trains it again at the lower rate, records it, and confirms at it."""
    from nas.train import train

    space = Space.from_dict({
        "name": "plain", "input": [1, 12, 12],
        "task": {"dataset": "quadrants", "target": 0.9, "max_epochs": 2, "validation": 100,
                 "constraints": {"classes": 4}},
        "train": {"lr": 1.0, "batch_size": 16, "augment": False, "bn_recalibrate": 0},
        "blocks": {"f": [{"conv": {"out": 8, "padding": 1}}, "relu", "maxpool", {"conv": {"out": 8, "padding": 1}},
                         "relu", "maxpool", {"conv": {"out": 4}}, "flatten", "logsoftmax"]}})
    rates = []

    def recording(model, data, config, **kw):
        rates.append(config.lr)
        return train(model, data, config, **kw)

    cfg = SearchConfig(space, storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=1, confirm=1, seeds=1)
    out = run(cfg, data=quadrant_data(), train_fn=recording)
    t = optuna.load_study(study_name="plain", storage=cfg.storage).trials[0]
    first, second = t.user_attrs["lr_tries"]  # the two tries, side by side
    assert first["lr"] == 1.0 and first["outcome"] in ("never left chance", "fell back to chance", "nan")
    assert t.user_attrs["lr"] == second["lr"] == 0.1
    assert second["outcome"] == "learned" and second["accuracy"] == t.user_attrs["curve"][-1][1]
    assert t.user_attrs["status"] in ("complete", "target_met") and t.values[0] > 0.9
    assert out.retried == 1 and out.stuck == 0
    assert rates == [1.0, 0.1, 0.1]  # the search's two tries, then confirmation
    assert out.confirmed.best is not None and out.confirmed.best.accuracies[0] > 0.9
    from nas.report import trials_frame
    row = trials_frame(optuna.load_study(study_name="plain", storage=cfg.storage)).iloc[0]
    assert row.lr == 0.1 and "at lr 1 (" in row.note and "): trained again at lr 0.1" in row.note


def chance_then(curve: list[float], tried: list):
    """A trainer whose net scores ``curve`` at its epochs (rungs off), recording each peak rate."""
    def fit(model, data, config, on_epoch=None, rungs=(), on_rung=None, checkpoint=None):
        tried.append(config.lr)
        accs = []
        for epoch, acc in enumerate(curve, start=1):
            accs.append(acc)
            if on_epoch(epoch, acc):
                return FakeTrainer.result(accs, "stopped")
        return FakeTrainer.result(accs, "complete")
    return fit


def test_a_net_at_chance_once_its_rate_peaks_is_retried_then_stuck_and_tells_the_sampler(tmp_path):
    """A toy schedule of 4 epochs warms up over its first 0.8: at chance through epoch 3 is "not
    started yet"; still at chance at epoch 4 (the peak passed), it trains again at a tenth of the rate."""
    tried = []
    cfg = config(tmp_path, trials=1, enqueue=("small_one",), halving=0, train_options={"warmup": 0.8})
    out = run(cfg, data=tiny_data(train=400), train_fn=chance_then([0.26, 0.25, 0.26, 0.27], tried))
    t = optuna.load_study(study_name="toy", storage=cfg.storage).trials[0]
    assert tried == [0.1, 0.01] and out.stuck == 1 and out.trained == 1
    assert [x["outcome"] for x in t.user_attrs["lr_tries"]] == ["never left chance"] * 2
    assert t.state == TrialState.COMPLETE and t.user_attrs["status"] == "stuck" and t.values[0] == 0.27
    assert t.constraints["short"] > 0 and "at chance (0.2700) at lr 0.1 and 0.01" in t.user_attrs["message"]


def test_a_net_that_falls_back_to_chance_is_retried_at_once_and_a_slow_start_is_not(tmp_path):
    tried = []
    cfg = config(tmp_path, trials=1, enqueue=("small_one",), halving=0, study_name="fell")
    run(cfg, data=tiny_data(train=400), train_fn=chance_then([0.6, 0.25, 0.9, 0.97], tried))
    t = optuna.load_study(study_name="fell", storage=cfg.storage).trials[0]
    assert tried == [0.1, 0.01], "dead units after a good start: the rate, not the net"
    assert t.user_attrs["lr_tries"][0]["outcome"] == "fell back to chance" and t.user_attrs["lr"] == 0.01
    tried.clear()  # at chance while the rate still rises (warmup 0.2 of 4 epochs ends inside epoch 1)
    cfg = config(tmp_path, trials=1, enqueue=("small_one",), halving=0, study_name="slow",
                 train_options={"warmup": 0.5})
    run(cfg, data=tiny_data(train=400), train_fn=chance_then([0.25, 0.9, 0.96, 0.97], tried))
    t = optuna.load_study(study_name="slow", storage=cfg.storage).trials[0]
    assert tried == [0.1] and t.user_attrs["status"] == "complete" and t.values[0] == 0.97, \
        "a slow start is neither retried nor stopped"


def test_a_diverged_net_is_counted_as_diverged_never_as_stopped_or_pruned(tmp_path):
    """One status vocabulary: Optuna's PRUNED state is only how a trained-but-unfinished trial reaches
    the sampler; every count, the summary and the report read the trial's own status."""
    fake, diverged = FakeTrainer(), []

    def diverging(model, data, config=None, **kw):
        if next(model.parameters()).shape[0] == 4:  # every width-4 net diverges
            diverged.append(model)
            return FakeResult([], [], [], 0.01, None, "nan", "loss became NaN at epoch 1 batch 3")
        return fake(model, data, config, **kw)

    out = run(config(tmp_path, trials=12), data=tiny_data(), train_fn=diverging)
    from nas.report import trials_frame
    df = trials_frame(out.study)
    c = counts(out.study)
    nan_rows, stopped_rows = df[df.status == "nan"], df[df.status == "stopped"]
    assert diverged and fake.calls and out.diverged == c["nan"] == len(nan_rows) >= 1
    assert out.stopped == c["stopped"] == len(stopped_rows) and not set(stopped_rows.trial) & set(nan_rows.trial)
    assert all("NaN" in n for n in nan_rows.note) and "pruned" not in set(df.status)
    assert not {t.number for t in out.front} & set(nan_rows.trial)


def _checkpoint_space() -> Space:
    """Three epochs of a real (tiny) trainer, with dropout: what the checkpoint tests interrupt."""
    return Space.from_dict({
        "name": "ckpt", "input": [1, 12, 12],
        "task": {"dataset": "quadrants", "target": 0.99, "max_epochs": 3, "validation": 100,
                 "constraints": {"classes": 4}},
        "train": {"batch_size": 32},
        "choices": {"w": [4, 8]},
        "blocks": {"f": [{"conv": {"out": "$w", "padding": 1}}, "relu", "bn", {"dropout": {"p": 0.1}}, "maxpool",
                         {"conv": {"out": 4}}, "gap", "flatten"]},
        "points": {"eight": {"w": 8}}})


def test_a_trial_interrupted_mid_schedule_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    """Ctrl-C during epoch 2 of 3 with the real trainer: the same command trains only epoch 3 of that
    net, and the trial ends with the scores an uninterrupted search records."""
    import importlib
    import os
    import signal

    from nas.train import train

    T = importlib.import_module("nas.train")  # the module: `nas.train` is also the public function

    space = _checkpoint_space()
    trained = []
    real_epoch = T._Steps.run_epoch
    monkeypatch.setattr(T._Steps, "run_epoch", lambda self, *a: trained.append(a[0]) or real_epoch(self, *a))

    def search(folder, train_fn=train):
        cfg = SearchConfig(space, storage=f"sqlite:///{folder}/s.db", results=folder, trials=1, confirm=0,
                           enqueue=("eight",), halving=0, finish=True)
        run(cfg, data=quadrant_data(), train_fn=train_fn)
        return optuna.load_study(study_name="ckpt", storage=cfg.storage).trials

    whole = search(tmp_path / "whole")
    assert trained == [1, 2, 3]

    def ctrl_c_in_epoch_2(model, data, config, on_epoch=None, **kw):
        def watched(epoch, acc):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)  # the search's handler: stop after this epoch
            return on_epoch(epoch, acc)
        return train(model, data, config, on_epoch=watched, **kw)

    trained.clear()
    first = search(tmp_path / "cut", ctrl_c_in_epoch_2)
    assert first[0].user_attrs["status"] == "interrupted" and trained == [1, 2]
    assert list((tmp_path / "cut" / "ckpt" / "checkpoints").glob("*.pt"))
    trained.clear()
    resumed = search(tmp_path / "cut")
    done = [t for t in resumed if t.state == TrialState.COMPLETE]
    assert trained == [3] and len(done) == 1
    assert done[0].user_attrs["accuracies"] == whole[0].user_attrs["accuracies"]
    assert done[0].values == whole[0].values
    assert not list((tmp_path / "cut" / "ckpt" / "checkpoints").glob("*.pt"))


def test_a_confirmation_seed_interrupted_mid_schedule_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    """Ctrl-C during epoch 2 of a confirmation seed: the same command trains only that seed's epoch 3,
    and the seed tests as the uninterrupted confirmation does."""
    import importlib
    import os
    import signal

    from nas.train import train

    T = importlib.import_module("nas.train")
    space = _checkpoint_space()
    trained = []
    real_epoch = T._Steps.run_epoch
    monkeypatch.setattr(T._Steps, "run_epoch", lambda self, *a: trained.append(a[0]) or real_epoch(self, *a))

    def search(folder, train_fn=train):
        cfg = SearchConfig(space, storage=f"sqlite:///{folder}/s.db", results=folder, trials=1, confirm=1, seeds=1,
                           enqueue=("eight",), halving=0, finish=True)
        return run(cfg, data=quadrant_data(), train_fn=train_fn).confirmed

    whole = search(tmp_path / "whole")
    assert trained == [1, 2, 3, 1, 2, 3]  # the trial, then its one confirmation seed
    [expected] = whole.found.values()

    calls = []

    def ctrl_c_in_confirmation_epoch_2(model, data, config, on_epoch=None, **kw):
        calls.append(config)

        def watched(epoch, acc):
            if len(calls) == 2 and epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)  # stop after this epoch
            return on_epoch(epoch, acc) if on_epoch else False
        return train(model, data, config, on_epoch=watched, **kw)

    trained.clear()
    first = search(tmp_path / "cut", ctrl_c_in_confirmation_epoch_2)
    assert first.interrupted and trained == [1, 2, 3, 1, 2]
    assert [p.name.split("_", 2)[2] for p in (tmp_path / "cut" / "ckpt" / "checkpoints").glob("confirm_*.pt")] \
        == ["e3_seed0.pt"]
    trained.clear()
    resumed = search(tmp_path / "cut")
    [got] = resumed.found.values()
    assert trained == [3] and not resumed.interrupted
    assert got.accuracies == expected.accuracies and got.done
    assert not list((tmp_path / "cut" / "ckpt" / "checkpoints").glob("*.pt"))
