"""The standalone export: model.py, run where only torch is importable, reproduces the net nas built.

All exports are run in ONE subprocess (importing torch costs seconds), started with ``-I -S`` so
no site-packages ``.pth`` files run: the editable install of nas is invisible and only torch's
folder is put on the path. The project's other dependencies, which sit beside torch, are blocked too.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner

from nas import registry
from nas.analysis import analyse
from nas.build import build
from nas.cli import main
from nas.constraints import Constraints
from nas.errors import NasError
from nas.export import UNTRAINED, export, from_study, layer_source, render
from nas.space import fingerprint
from nas.spec import Spec

TORCH_SITE = str(Path(torch.__file__).resolve().parent.parent)
BLOCKED = ("nas", "yaml", "optuna", "click", "pandas", "matplotlib", "torchvision", "hypothesis")

RUNNER = r"""
import doctest, json, os, sys
sys.path.append(TORCH_SITE)

class TorchOnly:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in a torch-only environment")

sys.meta_path.insert(0, TorchOnly())
import torch
torch.set_num_threads(1)
report = {}
for folder in sys.argv[1:]:
    os.chdir(folder)
    sys.path.insert(0, folder)
    import model
    net = model.load()
    with torch.no_grad():
        torch.save(net(torch.load("input.pt")), "output.pt")
    report[folder] = {"params": sum(p.numel() for p in net.parameters()),
                      "training": net.training,
                      "doctest_failed": doctest.testmod(model).failed,
                      "file": model.__file__}
    sys.path.pop(0)
    del sys.modules["model"]
report["nas_imported"] = "nas" in sys.modules
print(json.dumps(report))
"""

# Specs that between them use every op and argument the builder knows.
ALL_OPS = [
    {"name": "mix_a", "input": [3, 16, 16], "blocks": {
        "stem": [{"conv": {"out": 8, "kernel": 3, "padding": 1, "bias": False}}, "bn",
                 {"leakyrelu": {"slope": 0.2}}, {"dws": {"out": 16, "dilation": 2, "padding": 2}}, "relu6"],
        "mid": [{"dwconv": {"multiplier": 2, "stride": 2, "padding": 1}},
                {"conv": {"out": 16, "kernel": 3, "groups": 4, "padding": 1}}, {"gelu": {"functional": True}},
                {"avgpool": {"kernel": 2}}, {"dropout2d": {"p": 0.1}},
                {"maxpool": {"kernel": 2, "stride": 1, "padding": 1}}],
        "head": ["gap", "flatten", {"linear": {"out": 12, "bias": False}}, "bn", "silu",
                 {"dropout": {"p": 0.3}}, {"linear": {"out": 10}}, {"logsoftmax": {"functional": True}}]}},
    {"name": "mix_b", "input": [1, 12, 12], "blocks": {
        "body": [{"pwconv": {"out": 4, "bias": False}}, "elu", {"bn": {"affine": False}},
                 {"dwconv": {"kernel": 5, "padding": 2, "dilation": 1, "bias": False}}, "sigmoid",
                 {"avgpool": {"kernel": 3, "stride": 2, "padding": 1}}, "tanh", "hardswish",
                 {"flatten": {"functional": True}}, {"linear": {"out": 7}}, {"bn": {"affine": False}}]}},
    # A final map that is not 1x1, a keyword as a block name and an empty block.
    {"name": "mix_c", "input": [2, 6, 6], "blocks": {
        "class": [{"conv": {"out": 3, "kernel": 3, "stride": 2, "padding": 1}}, "relu"],
        "empty": [],
        "last": [{"dws": {"out": 5, "kernel": 1, "bias": False}}]}},
]


def _specs() -> dict[str, Spec]:
    specs = {name: registry.load_design(name) for name in registry.designs()}
    specs.update({d["name"]: Spec.from_dict(d) for d in ALL_OPS})
    return specs


def _trained_ish(spec: Spec, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random weights and BN statistics, so equal outputs cannot come from default values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in build(spec).state_dict().items():
        if not v.is_floating_point():
            out[k] = v + 7
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.5
    return out


def _expected(spec: Spec, weights: dict, x: torch.Tensor) -> torch.Tensor:
    net = build(spec)
    net.load_state_dict(weights)
    with torch.no_grad():
        return net.eval()(x)


def _run_torch_only(folders: list[Path]) -> dict:
    code = RUNNER.replace("TORCH_SITE", repr(TORCH_SITE)).replace("BLOCKED", repr(set(BLOCKED)))
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, *map(str, folders)],
                          capture_output=True, text=True, timeout=240, cwd=folders[0])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def one_thread():
    # Same thread count as the subprocess, so both run the same kernels in the same order.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- a small study written to the contract of nas search ------------------------------------------

GOOD = {"name": "good", "input": [1, 8, 8], "layers": [
    {"conv": {"out": 4, "padding": 1}}, "relu", "bn", {"maxpool": {"kernel": 2}},
    {"dws": {"out": 8, "dilation": 2, "padding": 2}}, "gap", {"conv": {"out": 3, "kernel": 1}}]}
BIG = {"input": [1, 8, 8], "layers": [{"conv": {"out": 128, "padding": 1}}, "gap", {"conv": {"out": 3, "kernel": 1}}]}
SMALL = {"input": [1, 8, 8], "layers": [{"conv": {"out": 2, "padding": 1}}, "gap", {"conv": {"out": 3, "kernel": 1}}]}


def _trial(spec: dict, accs: list[float], weights: str | None, state=optuna.trial.TrialState.COMPLETE):
    a = analyse(Spec.from_dict(spec))
    attrs = {"spec": spec, "accuracies": accs, "params": a.params, "rf": a.rf, "trained": True,
             "reached_target": bool(accs) and accs[-1] >= 0.98}
    if weights:
        attrs["weights"] = weights
    values = [accs[-1], a.params] if accs and state == optuna.trial.TrialState.COMPLETE else None
    return optuna.trial.create_trial(state=state, values=values, user_attrs=attrs)


def _confirmed(runs, spec: dict, source: str, accs: list[float], failures: list[str], results):
    """Confirmation runs as `nas confirm` records them, with seed 0's weights on disk."""
    fp = fingerprint(Spec.from_dict(spec))
    for seed, acc in enumerate(accs):
        weights = f"confirm/{fp}_seed{seed}.pt"
        (results / "tiny" / "confirm").mkdir(parents=True, exist_ok=True)
        torch.save(_trained_ish(Spec.from_dict(spec), seed=20 + seed), results / "tiny" / weights)
        runs.add_trial(optuna.trial.create_trial(value=acc, user_attrs={
            "kind": "confirm", "fingerprint": fp, "seed": seed, "spec": spec, "source": source, "accuracy": acc,
            "epochs": 2, "status": "confirmed", "weights": weights, "params": analyse(Spec.from_dict(spec)).params,
            "failures": failures}))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Trial 0: meets the constraints, trained. 1: better but too big. 2: no weights. 3: pruned."""
    results = tmp_path_factory.mktemp("results")
    url = f"sqlite:///{results / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(study_name="tiny", storage=url, directions=["maximize", "minimize"])
    s.set_user_attr("constraints", Constraints(max_params=1000, require=("dws",)).to_dict())
    s.set_user_attr("target", 0.98)
    runs = optuna.create_study(study_name="tiny.confirm", storage=url, direction="maximize")
    # GOOD meets the target in every seed; BIG does better but breaks the constraints; SMALL misses a seed
    _confirmed(runs, GOOD, "trial 0", [0.985, 0.99, 0.982], [], results)
    _confirmed(runs, BIG, "trial 1", [0.995, 0.996, 0.995], ["params < 1,000"], results)
    _confirmed(runs, SMALL, "small", [0.99, 0.97, 0.99], [], results)
    weights = {}
    for number, spec in ((0, GOOD), (1, BIG)):
        weights[number] = _trained_ish(Spec.from_dict(spec), seed=number + 10)
        (results / "tiny" / "weights").mkdir(parents=True, exist_ok=True)
        torch.save(weights[number], results / "tiny" / "weights" / f"trial_{number}.pt")
    s.add_trial(_trial(GOOD, [0.95, 0.985], "weights/trial_0.pt"))
    s.add_trial(_trial(BIG, [0.97, 0.995], "weights/trial_1.pt"))
    s.add_trial(_trial(GOOD, [0.90], None))
    s.add_trial(_trial(GOOD, [0.5], "weights/missing.pt", optuna.trial.TrialState.PRUNED))
    return {"url": url, "dir": results, "weights": weights}


# ---- the round trip -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory, study, one_thread):
    """Every design and op-covering spec, plus two study trials, exported and run torch-only."""
    root = tmp_path_factory.mktemp("exports")
    cases = {}
    for name, spec in _specs().items():
        cases[name] = (spec, _trained_ish(spec), None, {})
    for number in (0, 1):
        src = from_study("tiny", study["url"], "best" if number == 0 else number)
        cases[f"trial{number}"] = (src.spec, src.state_dict, src.constraints, src.meta)
    expected = {}
    for name, (spec, weights, constraints, meta) in cases.items():
        folder = export(spec, root / name, weights, constraints, meta)
        x = torch.randn(3, *spec.input, generator=torch.Generator().manual_seed(5))
        torch.save(x, folder / "input.pt")
        expected[name] = (folder, _expected(spec, weights, x), analyse(spec).params)
    return expected, _run_torch_only([folder for folder, _, _ in expected.values()])


def test_exports_give_identical_outputs_with_only_torch(exported):
    expected, report = exported
    assert report.pop("nas_imported") is False
    assert len(report) == len(expected) == len(registry.designs()) + len(ALL_OPS) + 2
    for name, (folder, out, params) in expected.items():
        got = report[str(folder)]
        assert torch.equal(torch.load(folder / "output.pt"), out), name
        assert got["params"] == params, name
        assert got["training"] is False and got["doctest_failed"] == 0, name
        assert Path(got["file"]).parent == folder  # the exported file ran, not some other model.py


def test_study_best_is_the_cheapest_design_confirmed_in_every_seed(exported, study):
    expected, _ = exported
    text = (expected["trial0"][0] / "model.py").read_text()
    assert "confirmation seed 0 of trial 0" in text and "meets target: yes" in text
    assert "3/3 seeds >= 98.00% at epoch 2; test mean 98.57%, min 98.20%, max 99.00%" in text
    assert "params < 1,000 ✓" in text and "requires dws ✓" in text
    fp = fingerprint(Spec.from_dict(GOOD))
    assert torch.equal(torch.load(expected["trial0"][0] / "weights.pt")["features.0.weight"],
                       torch.load(study["dir"] / "tiny" / f"confirm/{fp}_seed0.pt")["features.0.weight"])
    trial1 = (expected["trial1"][0] / "model.py").read_text()  # a search trial, exported by number
    assert "params < 1,000 ✗" in trial1 and "not confirmed" in trial1 and "99.50% after 2 epochs" in trial1


# ---- the file itself ------------------------------------------------------------------------------------

def test_file_imports_only_torch_and_keys_match_build():
    for spec in _specs().values():
        source = render(spec)
        tree = ast.parse(source)
        imports = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert imports == ["import torch", "from torch import nn"]
        namespace = {}
        exec(compile(source, "model.py", "exec"), namespace)
        assert list(namespace["Net"]().state_dict()) == list(build(spec).state_dict())


def test_docstring_holds_table_checklist_and_notes():
    spec = registry.load_design("seed004")
    source = render(spec, Constraints(max_params=1_000_000, min_rf=44, require=("dws", "dilated", "gap")))
    doc = ast.get_docstring(ast.parse(source))
    assert doc.startswith("seed004: a standalone PyTorch model")
    assert "CIFAR-10 C1-C2-C3-C4" in doc
    assert "RF          MACs" in doc and "Receptive field: 48" in doc
    assert "RF > 44 ✓ (48)" in doc and "requires dilated ✓" in doc
    assert "Constraints" not in render(spec)


def test_user_text_cannot_break_the_docstring():
    spec = Spec.from_dict({"name": 'odd"""\\', "notes": 'ends with """ and \\n', "input": [1, 4, 4], "layers": ["gap"]})
    namespace = {}
    exec(compile(render(spec), "model.py", "exec"), namespace)
    assert namespace["__doc__"].startswith('odd"""\\: a standalone') and 'ends with """ and \\n' in namespace["__doc__"]


def test_constructor_calls_are_short_literals():
    source = render(Spec.from_dict(ALL_OPS[0]))
    for call in ["nn.Conv2d(3, 8, 3, padding=1, bias=False)", "nn.LeakyReLU(negative_slope=0.2)",
                 "nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)", "nn.Conv2d(8, 16, 1)",
                 "nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16)", "nn.AvgPool2d(2)",
                 "nn.MaxPool2d(2, stride=1, padding=1)", "nn.Linear(16, 12, bias=False)",
                 "nn.BatchNorm1d(12)", "nn.Dropout2d(p=0.1)", "nn.LogSoftmax(dim=1)"]:
        assert f"            {call}," in source, call
    assert "self.add_module('class', nn.Sequential(" in render(Spec.from_dict(ALL_OPS[2]))
    assert layer_source(torch.nn.BatchNorm2d(4, affine=False)) == "nn.BatchNorm2d(4, affine=False)"


def test_layer_source_refuses_foreign_modules():
    class Mine(torch.nn.Module):
        pass

    with pytest.raises(NasError, match="only torch.nn layers"):
        layer_source(Mine())


def test_untrained_export_is_seeded_and_leaves_the_callers_rng_alone(tmp_path):
    spec = registry.load_design("seed001")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    folder = export(spec, tmp_path / "out")
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(0)
    fresh = build(spec).state_dict()
    saved = torch.load(folder / "weights.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in fresh.items())
    assert UNTRAINED in (folder / "model.py").read_text()
    assert Spec.load(folder / "spec.yaml") == spec


def test_weights_that_do_not_fit_are_refused(tmp_path):
    spec = registry.load_design("seed001")
    weights = build(spec).state_dict()
    with pytest.raises(NasError, match="do not fit seed001 \\(missing block1.0.weight\\)"):
        export(spec, tmp_path, {k: v for k, v in weights.items() if k != "block1.0.weight"})
    with pytest.raises(NasError, match="has shape"):
        export(spec, tmp_path, {**weights, "block1.0.bias": torch.zeros(3)})
    with pytest.raises(NasError, match="not a state_dict"):
        export(spec, tmp_path, {"block1.0.bias": 3})


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NasError, match="cannot write the exported weights in .*: Not a directory; .*pass a writable directory with -o"):
        export(registry.load_design("seed001"), tmp_path / "file" / "out")


# ---- study errors -------------------------------------------------------------------------------------

def test_study_errors(study, tmp_path):
    url = study["url"]
    cases = [
        (dict(study="nope", storage=url), r"no study 'nope' in .* \(studies: tiny\)"),
        (dict(study="tiny", storage=url, trial=9), "has no trial 9 \\(trials: 0-3\\)"),
        (dict(study="tiny", storage=url, trial=2), "trial 2 of study 'tiny' has no weights"),
        (dict(study="tiny", storage=url, trial=3), "missing.pt does not exist; pass .* --results"),
        (dict(study="tiny", storage=url, trial="x"), "--trial must be a trial number or 'best'"),
        (dict(study=None, storage=f"sqlite:///{tmp_path / 'none.db'}"), "no study database at"),
    ]
    for kwargs, message in cases:
        with pytest.raises(NasError, match=message):
            from_study(**kwargs)
    assert not (tmp_path / "none.db").exists()  # a failed lookup does not leave an empty database


def test_study_name_needed_when_several(study, tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=url)
    with pytest.raises(NasError, match=r"holds 2 studies \(a, b\); pick one with --study"):
        from_study(None, url)
    with pytest.raises(NasError, match="has no confirmed design that meets its target yet; run `nas confirm"):
        from_study("a", url)


# ---- command line -------------------------------------------------------------------------------------

def test_cli_exports_a_design_untrained_and_with_weights(tmp_path):
    runner = CliRunner()
    done = runner.invoke(main, ["export", "seed002", "-o", str(tmp_path / "a"), "--max-params", "20000"])
    assert done.exit_code == 0, done.output
    assert "untrained" in done.output and (tmp_path / "a" / "model.py").is_file()
    assert "params < 20,000" in (tmp_path / "a" / "model.py").read_text()

    spec = registry.load_design("seed002")
    weights = _trained_ish(spec)
    torch.save(weights, tmp_path / "w.pt")
    done = runner.invoke(main, ["export", "seed002", "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    saved = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in weights.items())
    assert f"trained, from {tmp_path / 'w.pt'}" in (tmp_path / "b" / "model.py").read_text()


def test_cli_exports_a_study_trial(study, tmp_path):
    done = CliRunner().invoke(main, ["export", "--storage", study["url"], "-o", str(tmp_path / "t")])
    assert done.exit_code == 0, done.output
    assert "confirmation seed 0 of trial 0, study 'tiny'" in done.output


def test_cli_default_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["export", "seed001"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "export" / "seed001" / "model.py").is_file()


@pytest.mark.parametrize("args, message", [
    (["export", "nosuch"], "unknown design 'nosuch'"),
    (["export", "seed001", "--study", "tiny"], "give a DESIGN or --study/--trial, not both"),
    (["export", "--weights", "w.pt"], "--weights needs a DESIGN"),
    (["export", "seed001", "--weights", "missing.pt"], "cannot read weights missing.pt"),
    (["export", "--storage", "sqlite:///nowhere/x.db"], "no study database at nowhere/x.db"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.output


def test_notes_and_names_with_quotes_and_control_characters_export_as_valid_python(tmp_path):
    """User text goes into docstrings: a NUL, a quote at the very end, backslashes and triple quotes."""
    spec = Spec.from_dict({"name": 'odd"', "notes": 'a """ b \\ c \x00 d "', "input": [1, 8, 8],
                           "layers": [{"conv": {"out": 2}}, "gap"]})
    out = export(spec, tmp_path / "e")
    source = (out / "model.py").read_text()
    namespace: dict = {}
    exec(compile(source, "model.py", "exec"), namespace)  # noqa: S102
    assert '\\x00' in source and "\x00" not in source
    assert 'a """ b \\ c \x00 d "' in namespace["__doc__"]  # the notes, exactly as written
    assert namespace["Net"].__doc__.startswith('odd": 20 params')
