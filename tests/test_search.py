"""The search loop on a fake trainer: rejection before training, pruning, resume, enqueue, records."""

import optuna
import pytest
from optuna.trial import TrialState

from nas.analysis import analyse
from nas.errors import NasError
from nas.sampler import Halving
from nas.search import SearchConfig, TargetPruner, counts, enqueue, open_study, run
from nas.space import Space
from toys import SPACE, FakeTrainer, tiny_data

def config(tmp_path, **kw):
    kw.setdefault("trials", 4)
    kw.setdefault("confirm", 0)  # confirmation has tests of its own (test_confirm.py)
    return SearchConfig(Space.from_dict(SPACE), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, **kw)


def test_rejected_candidates_never_train_and_everything_is_recorded(tmp_path):
    fake = FakeTrainer()
    cfg = config(tmp_path, trials=5)
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
        assert (a["accuracies"] or a["pruned_at"].endswith("images")) and a["status"] in ("target_met", "complete", "pruned")
        assert (tmp_path / "toy" / a["weights"]).is_file()
        if t.state == TrialState.COMPLETE:  # the two objectives: validation accuracy, params
            assert t.values == [a["accuracies"][-1], a["params"]]


def test_pruner_decisions():
    pruner = TargetPruner(target=0.99, max_epochs=10, warmup=1, slack=0.003, decay=0.5)
    study = optuna.create_study(directions=["maximize", "minimize"])

    def done(values, reached=False):
        return optuna.trial.create_trial(values=[values[-1], 100],
                                         user_attrs={"reached_target": reached, "accuracies": values})

    refs = lambda: pruner.references(study)  # noqa: E731
    # out of reach: 50% error after 8 of 10 epochs cannot shrink to 1% even halving each epoch
    assert pruner.hopeless([0.3, 0.4, 0.45, 0.5, 0.5, 0.5, 0.5, 0.5], refs())
    # early, no reference yet: keep
    assert not pruner.hopeless([0.5], refs())
    study.add_trial(done([0.97, 0.985, 0.991], reached=True))
    study.add_trial(done([0.5, 0.6, 0.7]))  # did not reach the target: no reference
    assert refs() == [[0.97, 0.985, 0.991]]
    assert pruner.hopeless([0.96, 0.975], refs())  # behind the reference
    assert not pruner.hopeless([0.96, 0.984], refs())  # within the slack
    assert not pruner.hopeless([0.96, 0.975, 0.98, 0.985], refs())  # no reference at epoch 4
    assert not pruner.hopeless([0.1] * 10, refs())  # the last epoch ends the schedule anyway


def test_hopeless_curves_are_pruned_in_a_search(tmp_path):
    fake = FakeTrainer()
    cfg = config(tmp_path, trials=12)
    run(cfg, data=tiny_data(), train_fn=fake)
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED and t.user_attrs.get("trained")]
    assert pruned and all(t.user_attrs["spec"]["blocks"]["f"][0]["conv"]["out"] in (2, 4) for t in pruned)
    assert all(len(t.user_attrs["accuracies"]) < 4 for t in pruned if t.user_attrs["status"] == "pruned")


def test_ctrl_c_stops_after_the_epoch_and_the_same_command_resumes(tmp_path):
    cfg = config(tmp_path, trials=3, enqueue=("small_one",))
    out = run(cfg, data=tiny_data(), train_fn=FakeTrainer(interrupt_on_call=1))
    assert out.interrupted
    study = optuna.load_study(study_name="toy", storage=cfg.storage)
    first = study.trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["status"] == "interrupted"
    assert first.user_attrs["accuracies"] == [0.3]  # kept
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


def test_successive_halving_stops_a_net_that_cheaper_nets_beat_at_a_rung(tmp_path):
    """Rungs come from the schedule and the training images; a candidate that three cheaper ones
    beat at the first rung stops there, while --halving 0 trains it through."""
    space = dict(SPACE, choices={"w": [8], "k": [3], "pool": ["maxpool"]}, points={})  # one candidate: 8 channels
    data = tiny_data(train=400)  # 380 after the validation split: 2 batches of 128 an epoch
    first = str(Halving(3).rungs(epochs=4, images_per_epoch=256)[0])
    cfg = SearchConfig(Space.from_dict(space), storage=f"sqlite:///{tmp_path}/s.db", results=tmp_path, trials=1, confirm=0)
    study = open_study(cfg)
    for params, acc in ((20, 0.9), (30, 0.95), (40, 0.85)):  # cheaper nets, scored at the first rung
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={
            "params": params, "rungs": {first: acc}}))  # not counted as trained here: trials=1 is ours
    fake = FakeTrainer()
    run(cfg, data=data, train_fn=fake)
    mine = study.get_trials()[-1]
    assert mine.user_attrs["rungs"] == {first: 0.79} and mine.user_attrs["pruned_at"] == f"{first} images"
    assert mine.user_attrs["accuracies"] == [] and mine.state == TrialState.PRUNED

    cfg = SearchConfig(Space.from_dict(space), storage=f"sqlite:///{tmp_path}/t.db", results=tmp_path, trials=1,
                       confirm=0, halving=0, study_name="flat")
    run(cfg, data=data, train_fn=fake)
    flat = optuna.load_study(study_name="flat", storage=cfg.storage).get_trials()[-1]
    assert "rungs" not in flat.user_attrs and len(flat.user_attrs["accuracies"]) >= 3
