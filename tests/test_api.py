"""The public API in ``nas/__init__.py``: what a notebook user imports, and its docstring examples."""
from __future__ import annotations

import doctest
import signal
import subprocess
import sys

import optuna
import pytest
from conftest import DATA, ROOT
from optuna.trial import TrialState
from toys import ONE_EPOCH_MNIST, SPACE, FakeTrainer, tiny_data

import nas
from nas.search import SearchConfig, execute
from nas.space import Space


def test_import_nas_gives_a_version_and_the_names_it_promises():
    out = subprocess.run([sys.executable, "-c", "import nas; print(nas.__version__, len(nas.__all__))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    version, count = out.stdout.split()
    assert version[0].isdigit() and int(count) == len(nas.__all__) >= 15
    for name in nas.__all__:
        value = getattr(nas, name)
        assert name == "__version__" or (value.__doc__ or "").strip(), f"nas.{name} has no docstring"


def test_public_names_stay_the_functions_after_their_modules_are_imported():
    import nas.export  # noqa: F401  (a submodule of the same name must not replace the function)
    import nas.search  # noqa: F401
    import nas.train  # noqa: F401
    assert callable(nas.search) and nas.search.__module__ == "nas.search"
    assert nas.train.__name__ == "train" and nas.export.__name__ == "export"


def _docstring_examples(obj, globs) -> doctest.TestResults:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(obj, obj.__name__, globs=globs):
        runner.run(test)
    return runner.summarize(verbose=False)


NEEDS_MNIST = ("search", "confirm", "load_dataset")  # confirm reads the study search makes


@pytest.mark.parametrize("name", sorted(set(nas.__all__) - {"__version__"} - set(NEEDS_MNIST)))
def test_every_public_name_has_a_docstring_example_that_runs(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # the shipped study is in results/
    result = _docstring_examples(getattr(nas, name), {})
    assert result.attempted, f"nas.{name} has no example"
    assert not result.failed


def test_the_package_docstring_example_runs():
    result = _docstring_examples(nas, {})
    assert result.attempted and not result.failed


def test_search_and_confirm_docstring_examples_run_on_real_mnist(tmp_path, monkeypatch):
    if not (DATA / "MNIST").is_dir():
        pytest.skip(f"MNIST not found under {DATA}")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)  # the examples read ../shared/data, as the README's commands do
    for name in NEEDS_MNIST:
        result = _docstring_examples(getattr(nas, name), {})
        assert result.attempted and not result.failed, name


TEN_LINES = """
import nas
out = nas.search({space!r}, data_dir={data!r}, results={runs!r}, trials=2)
best = nas.best(out)
net = best.model()
print(out.trained, sum(p.numel() for p in net.parameters()), best.meta["confirmed"])
"""



def test_a_short_script_searches_confirms_and_loads_the_best_model(tmp_path):
    """The README's Python example, at a one-epoch budget and a low target (50%) on real MNIST."""
    if not (DATA / "MNIST").is_dir():
        pytest.skip(f"MNIST not found under {DATA}")
    space = tmp_path / "api.yaml"
    space.write_text(ONE_EPOCH_MNIST)
    script = TEN_LINES.format(space=str(space), data=str(DATA), runs=str(tmp_path / "runs"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "NAS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"},
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    trained, params, confirmed = out.stdout.strip().split(" ", 2)
    assert trained == "2" and int(params) in (nas.analyse(Space.load(str(space)).spec({"w": 4})).params,
                                               nas.analyse(Space.load(str(space)).spec({"w": 8})).params)
    assert "2/2 seeds >= 50.00%" in confirmed


def _toy_config(tmp_path, **kw) -> SearchConfig:
    return SearchConfig(Space.from_dict(SPACE), storage=f"sqlite:///{tmp_path / 'db.sqlite'}",
                        results=tmp_path / "runs", confirm=0, **kw)


def test_from_python_the_search_leaves_the_interrupt_handler_alone_and_ctrl_c_returns_an_outcome(tmp_path):
    seen = []

    class Watching(FakeTrainer):
        def __call__(self, *args, **kwargs):
            seen.append(signal.getsignal(signal.SIGINT))
            return super().__call__(*args, **kwargs)

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background (nohup, `&`): Ctrl-C ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    out = execute(_toy_config(tmp_path, trials=3, enqueue=("small_one",)), data=tiny_data(),
                  train_fn=Watching(interrupt_on_call=1), signals=False)  # what nas.search calls
    assert seen == [before] and signal.getsignal(signal.SIGINT) is before
    assert out.interrupted  # the KeyboardInterrupt did not escape
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].user_attrs["status"] == "interrupted"
    assert study.get_trials(states=(TrialState.WAITING,)), "the interrupted candidate is queued again"


def test_worker_arguments_rebuild_the_same_search(tmp_path):
    from nas.search import worker_args

    cfg = SearchConfig(Space.load("mnist_tiny"), "mine", trials=7, timeout=90.0, data_dir="d", results=tmp_path,
                       train_limit=500, seeds=2, finish=True)
    args = worker_args(cfg)
    assert args[:4] == ["search", "--worker", "--space", "mnist_tiny"]
    pairs = dict(zip(args[4::2], args[5::2]))
    assert pairs["--study"] == "mine" and pairs["--trials"] == "7" and pairs["--timeout"] == "90.0"
    assert pairs["--train-limit"] == "500" and pairs["--seeds"] == "2" and args[-1] == "--finish"
    assert "--storage" not in args  # it goes in the environment: argv is visible in `ps`
    with pytest.raises(nas.NasError, match="made in Python"):
        worker_args(_toy_config(tmp_path))
