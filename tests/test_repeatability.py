"""The same seed gives the same candidates and, on CPU, the same accuracies, with the real trainer.

Trial k's random draws depend only on the seed and k, so a study that was stopped and resumed
samples exactly what an uninterrupted one does.
"""
from __future__ import annotations

import optuna
import pytest
import torch
import yaml

from nas.search import SearchConfig, run
from nas.space import Space

SPACE = {
    "name": "rep",
    "task": {"dataset": None, "target": 0.99, "max_epochs": 2, "validation": 48,
             "constraints": {"max_params": 3000, "classes": 2}},
    "train": {"batch_size": 32},
    "input": [1, 12, 12],
    "choices": {"w": [2, 4, 6, 8, 12, 16], "k": [3, 5], "pool": ["maxpool", "avgpool"], "drop": [0.0, 0.1]},
    "blocks": {"f": [{"conv": {"out": "$w", "kernel": "$k", "padding": 1}}, "relu", "$pool",
                     {"dropout": {"p": "$drop", "when": "$drop > 0"}}, {"pwconv": {"out": 2}}, "gap"]},
}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("rep")
    rng = np.random.default_rng(1)
    for split, n in (("train", 256), ("test", 64)):
        for label in (0, 1):
            folder = root / "data" / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(n // 2):
                img = rng.integers(0, 200, (12, 12), dtype=np.uint8)
                img[3:9, 5:7] += 55 * label  # class 1: a faint bar
                Image.fromarray(img).save(folder / f"{i}.png")
    data = {**SPACE, "task": {**SPACE["task"], "dataset": str(root / "data")}}
    path = root / "rep.yaml"
    path.write_text(yaml.safe_dump(data))
    return Space.load(str(path))


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # modest CPU use; results do not depend on it within one machine
    yield
    torch.set_num_threads(threads)


def search(space: Space, folder, seed: int, trials: int, name: str = "rep") -> list[tuple]:
    cfg = SearchConfig(space, study_name=name, storage=f"sqlite:///{folder}/s.db", trials=trials, seed=seed,
                       results=folder, confirm=0)
    run(cfg)
    study = optuna.load_study(study_name=name, storage=cfg.storage)
    # the curve: validation accuracy at every rung and epoch end (a stopped trial may end before its first epoch)
    return [(t.params, t.user_attrs.get("status"), t.user_attrs.get("curve")) for t in study.trials]


@pytest.mark.slow
def test_same_seed_same_candidates_and_accuracies(space, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    first = search(space, tmp_path / "a", seed=3, trials=3)
    again = search(space, tmp_path / "b", seed=3, trials=3)
    assert first == again
    assert sum(1 for _, status, accs in first if accs) >= 3  # real training happened, with accuracies
    other = search(space, tmp_path / "c", seed=4, trials=3)
    assert [p for p, _, _ in other] != [p for p, _, _ in first]


@pytest.mark.slow
def test_a_resumed_study_samples_what_an_uninterrupted_one_does(space, tmp_path):
    (tmp_path / "whole").mkdir(), (tmp_path / "parts").mkdir()
    whole = search(space, tmp_path / "whole", seed=5, trials=4)
    search(space, tmp_path / "parts", seed=5, trials=2)
    parts = search(space, tmp_path / "parts", seed=5, trials=4)  # the same command with a larger N
    assert parts == whole
