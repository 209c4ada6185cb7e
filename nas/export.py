"""Export a net as a standalone ``model.py`` (needs only torch) plus its weights.

The exported file holds one readable ``nn.Module`` class whose attributes are the spec's blocks,
each an ``nn.Sequential`` of literal constructor calls, so ``nas.build.build(spec).state_dict()``
loads into it unchanged. Each call is written from the module that the op definition in
:mod:`nas.ops` builds (its constructor signature and attributes), then rebuilt and compared with
it, so nothing here restates layer logic. The module docstring carries the layer table with the
RF column, the constraint checklist and where the weights came from.

>>> import tempfile
>>> from nas.spec import Spec
>>> spec = Spec.from_dict({"name": "tiny", "input": [1, 8, 8], "layers": [
...     {"conv": {"out": 4, "padding": 1, "bias": False}}, "relu", {"maxpool": {"kernel": 2}}, "gap"]})
>>> src = render(spec)
>>> print(src[src.index("        self.features"):src.index("\\n\\n    def forward")])
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False),  # [4, 8, 8]  RF 3
            nn.ReLU(),                                  # [4, 8, 8]  RF 3
            nn.MaxPool2d(2),                            # [4, 4, 4]  RF 4
            nn.AdaptiveAvgPool2d(1),                    # [4, 1, 1]  RF 10
        )
>>> out = export(spec, Path(tempfile.mkdtemp()) / "tiny")
>>> sorted(p.name for p in out.iterdir())
['model.py', 'spec.yaml', 'weights.pt']
"""
from __future__ import annotations

import inspect
import keyword
import math
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from . import ops, registry, trials
from . import study as studies
from .analysis import Analysis, analyse
from .build import build
from .constraints import Constraints
from .errors import NasError
from .files import non_finite, save_torch, write_atomic
from .spec import Spec
from .summary import format_checklist, format_table

DEFAULT_STORAGE = studies.DEFAULT_STORAGE
UNTRAINED = "untrained: freshly initialised with torch.manual_seed(0)"


# ---- one layer as source ------------------------------------------------------------------------

def layer_source(module: nn.Module) -> str:
    """The shortest ``nn.X(...)`` call that rebuilds ``module``, checked by rebuilding it.

    >>> layer_source(nn.Conv2d(8, 16, 3, stride=1, padding=2, dilation=2, bias=False))
    'nn.Conv2d(8, 16, 3, padding=2, dilation=2, bias=False)'
    """
    cls = _torch_class(module)
    if cls is None:
        raise NasError(f"cannot export {type(module).__name__}: only torch.nn layers can be written as source")
    # Collapsed tuples ((3, 3) -> 3) read better; the raw values are the fallback if they differ.
    for collapse in (True, False):
        positional, keywords = _arguments(module, collapse)
        if _rebuilds(module, positional, keywords):
            return _call(cls.__name__, positional, _pruned(module, positional, keywords))
    raise NasError(f"cannot write {module!r} as a constructor call; report this as a bug in nas.export")


def _torch_class(module: nn.Module) -> type | None:
    """The torch.nn class ``module`` is, or stands in for: a nas layer that only trains faster than a
    torch one (:class:`nas.dropout.Dropout`) names it as ``exports_as``."""
    cls = getattr(type(module), "exports_as", type(module))
    return cls if getattr(nn, cls.__name__, None) is cls else None


def _arguments(module: nn.Module, collapse: bool) -> tuple[list[Any], dict[str, Any]]:
    """Constructor arguments read back from the module's attributes; defaults left out."""
    positional, keywords = [], {}
    for name, p in inspect.signature(_torch_class(module).__init__).parameters.items():
        if name in ("self", "device", "dtype") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(module, name):
            continue  # a mismatch this causes is caught by the rebuild check
        value = getattr(module, name)
        if isinstance(p.default, bool) and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None  # `bias=True` is stored as a Parameter, `bias=False` as None
        if collapse and isinstance(value, tuple) and value and len(set(value)) == 1:
            value = value[0]
        if p.default is p.empty and p.kind != p.KEYWORD_ONLY:
            positional.append(value)
        elif p.default is p.empty or value != p.default:
            keywords[name] = value
    return positional, keywords


def _pruned(module: nn.Module, positional: list[Any], keywords: dict[str, Any]) -> dict[str, Any]:
    """Drop keywords the constructor derives anyway (MaxPool2d's stride = kernel)."""
    for name in list(keywords):
        fewer = {k: v for k, v in keywords.items() if k != name}
        if _rebuilds(module, positional, fewer):
            keywords = fewer
    return keywords


def _call(cls_name: str, positional: list[Any], keywords: dict[str, Any]) -> str:
    args = [repr(v) for v in positional] + [f"{k}={v!r}" for k, v in keywords.items()]
    return f"nn.{cls_name}({', '.join(args)})"


def _rebuilds(module: nn.Module, positional: list[Any], keywords: dict[str, Any]) -> bool:
    source = _call(_torch_class(module).__name__, positional, keywords)
    try:
        with torch.device("meta"):  # no memory, no draws from the caller's random generator
            rebuilt = eval(source, {"nn": nn})  # noqa: S307 - our own literal source
    except Exception:
        return False
    return type(rebuilt) is _torch_class(module) and repr(rebuilt) == repr(module) and _shapes(rebuilt) == _shapes(module)


def _shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in module.state_dict().items()]


# ---- the whole file ------------------------------------------------------------------------------

def render(spec: Spec, constraints: Constraints | None = None, class_name: str = "Net", title: str = "",
           meta: dict[str, Any] | None = None) -> str:
    """Standalone Python source for ``spec``: one class, a ``load()`` helper, only torch imported.

    ``meta`` lines (``key: value``) go into the docstring, e.g. where the weights came from.
    """
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise NasError(f"class name {class_name!r} is not a Python identifier; pick another")
    a = analyse(spec)
    parts = [_docstring(a, constraints, title or spec.name or "model", meta or {}),
             "import torch\nfrom torch import nn\n\n",
             _class(a, class_name),
             _loader(class_name),
             _main(a)]
    return "\n".join(parts)


def _docstring(a: Analysis, constraints: Constraints | None, title: str, meta: dict[str, Any]) -> str:
    version = _version()
    lines = [f"{title}: a standalone PyTorch model exported by nas{' ' + version if version else ''}.", ""]
    if a.spec.notes:
        lines += textwrap.wrap(a.spec.notes, 96) + [""]
    lines += [f"{k}: {v}" for k, v in meta.items()] + ([""] if meta else [])
    sample = ", ".join(str(n) for n in a.spec.input)
    lines += [
        "Needs only torch. Usage, next to weights.pt:",
        "",
        "    >>> import torch",
        "    >>> from model import load",
        '    >>> net = load("weights.pt")  # in eval mode',
        f"    >>> net(torch.zeros(1, {sample})).shape",
        f"    torch.Size([1, {math.prod(a.out_shape)}])",
        "",
        "Layer table (torchsummary's format, with receptive field and multiply-adds):",
        "",
        textwrap.indent(format_table(a), "    "),
    ]
    checks = constraints.check(a) if constraints else []
    if checks:
        lines += ["", "Constraints:", "", textwrap.indent(format_checklist(a, constraints), "    ")]
    body = "\n".join(lines)
    return f'"""{_escaped(body)}\n"""'


def _escaped(text: str) -> str:
    r"""Text that cannot end or alter the docstring it goes into (notes and names are user text): every
    quote escaped (so none can close it, even last), and control characters, which Python source
    cannot hold (a NUL), written as escapes.

    >>> print(_escaped('say "hi" \\ \x07'))
    say \"hi\" \\ \x07
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(c if c in "\n\t" or (32 <= ord(c) != 127) else f"\\x{ord(c):02x}" for c in text)


def _class(a: Analysis, class_name: str) -> str:
    summary = (f"{a.spec.name or class_name}: {a.params:,} params, receptive field {a.rf}, "
               f"input {list(a.spec.input)}, output {[math.prod(a.out_shape)]}.")
    lines = [f"class {class_name}(nn.Module):", f'    """{_escaped(summary)}"""', "",
             "    def __init__(self):", "        super().__init__()"]
    for block in a.spec.blocks:
        lines += _block(block.name, [r for r in a.rows if r.block == block.name])
    lines += ["", "    def forward(self, x):"]
    lines += [f"        x = {_attr(b.name)}(x)" for b in a.spec.blocks]
    lines += ["        # As nas builds it: a final (N, C, 1, 1) map is the logits, flattened to (N, C).",
              "        return x.flatten(1) if x.dim() > 2 else x", "", ""]
    return "\n".join(lines)


def _block(name: str, rows: list) -> list[str]:
    calls = []
    for r in rows:
        with torch.device("meta"):
            module = ops.get(r.op).module(r.in_shape, r.args)
        note = f"{list(r.out_shape)}  RF {r.rf}" + ("  (functional in the design)" if r.functional else "")
        calls.append((layer_source(module) + ",", note))
    width = max((len(c) for c, _ in calls), default=0)
    body = [f"            {c:<{width}}  # {n}" for c, n in calls]
    if keyword.iskeyword(name):  # `self.class = ...` would not parse; the state_dict key stays the same
        return [f"        self.add_module({name!r}, nn.Sequential(", *body, "        ))"]
    return [f"        self.{name} = nn.Sequential(", *body, "        )"]


def _attr(name: str) -> str:
    return f"getattr(self, {name!r})" if keyword.iskeyword(name) else f"self.{name}"


def _loader(class_name: str) -> str:
    return (f'def load(path="weights.pt", map_location="cpu"):\n'
            f'    """A {class_name} holding the weights saved at ``path``, in eval mode."""\n'
            f"    net = {class_name}()\n"
            f"    net.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))\n"
            f"    return net.eval()\n")


def _main(a: Analysis) -> str:
    sample = ", ".join(str(n) for n in a.spec.input)
    return ('\nif __name__ == "__main__":  # `python model.py` next to weights.pt: a smoke test\n'
            f"    print(load()(torch.zeros(1, {sample})).shape)\n")


def _version() -> str:
    try:
        return metadata.version("nas")
    except metadata.PackageNotFoundError:
        return ""


# ---- writing an export ---------------------------------------------------------------------------

def export(spec: Spec, out_dir: Path, state_dict: dict | None = None, constraints: Constraints | None = None,
           meta: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/model.py``, ``weights.pt`` and ``spec.yaml``; return ``out_dir``.

    Without ``state_dict`` the weights are a fresh build seeded with ``torch.manual_seed(0)``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from nas import export, load_design
    >>> folder = export(load_design("seed001"), Path(tempfile.mkdtemp()) / "seed001")
    >>> sorted(p.name for p in folder.iterdir())
    ['model.py', 'spec.yaml', 'weights.pt']
    """
    out_dir = Path(out_dir)
    meta = dict(meta or {})
    if state_dict is None:
        state_dict = _fresh_weights(spec)
        meta["weights"] = UNTRAINED
    source = render(spec, constraints, meta=meta)
    weights = _fitted(spec, source, state_dict)
    fix = "free some space or pass a writable directory with -o"
    # weights first, model.py last: an export cut short never has a model.py without its weights
    save_torch(out_dir / "weights.pt", weights, "the exported weights", fix)
    write_atomic(out_dir / "spec.yaml", spec.to_yaml(), "the exported spec", fix)
    write_atomic(out_dir / "model.py", source, "the exported model.py", fix)
    return out_dir


def _fresh_weights(spec: Spec) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):  # seed for reproducibility without resetting the caller's RNG
        torch.manual_seed(0)
        return build(spec).state_dict()


def _fitted(spec: Spec, source: str, state_dict: dict) -> dict[str, torch.Tensor]:
    """``state_dict`` on the CPU, after checking it loads into the rendered class exactly."""
    name = spec.name or "the spec"
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise NasError(f"the weights for {name} are not a state_dict (names to tensors); "
                       "save them with torch.save(net.state_dict(), path)")
    expected = {k: tuple(v.shape) for k, v in _shapes_of(spec).items()}
    given = {k: tuple(v.shape) for k, v in state_dict.items()}
    problem = (next((f"missing {k}" for k in expected if k not in given), None)
               or next((f"unexpected {k}" for k in given if k not in expected), None)
               or next((f"{k} has shape {list(given[k])}, the spec needs {list(s)}"
                        for k, s in expected.items() if given[k] != s), None))
    if problem:
        raise NasError(f"the weights do not fit {name} ({problem}); export the spec they were trained with")
    bad = non_finite(state_dict)
    if bad:
        raise NasError(f"the weights for {name} hold NaN or infinite values ({', '.join(bad[:3])}"
                       f"{', ...' if len(bad) > 3 else ''}): the run that made them diverged; export weights of a run "
                       "that trained (nas train --lr lower, or a confirmed trial)")
    weights = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    namespace: dict[str, Any] = {"__name__": "nas_export_check"}
    exec(compile(source, "model.py", "exec"), namespace)  # noqa: S102 - proves the file itself loads them
    with torch.device("meta"):  # checks names and shapes without drawing from the caller's RNG
        namespace["Net"]().load_state_dict(weights, strict=True, assign=True)
    return weights


def _shapes_of(spec: Spec) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build(spec).state_dict()


# ---- where the spec and weights come from ----------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """A net and where its weights came from: everything :func:`export` needs, and a default name
    for the output directory. :func:`best` returns one."""

    spec: Spec
    state_dict: dict | None
    constraints: Constraints | None
    meta: dict[str, Any]
    name: str

    def model(self) -> nn.Module:
        """The net with these weights, in eval mode (untrained, seeded with 0, when there are none)."""
        net = build(self.spec)
        net.load_state_dict(self.state_dict if self.state_dict is not None else _fresh_weights(self.spec))
        return net.eval()

    def export(self, out_dir: str | Path) -> Path:
        """Write ``model.py``, ``weights.pt`` and ``spec.yaml`` into ``out_dir`` (see :func:`export`)."""
        return export(self.spec, Path(out_dir), self.state_dict, self.constraints, self.meta)


def from_design(design: str, weights: str | Path | None = None,
                constraints: Constraints | None = None) -> Source:
    """A documented design (or spec file), untrained or with a saved state_dict (``nas reproduce``)."""
    spec = registry.load_design(design)
    state = load_weights(weights) if weights else None
    meta = {"weights": f"trained, from {weights}"} if weights else {}
    return Source(spec, state, constraints, meta, spec.name)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``torch.save``'d state_dict (also accepted: a checkpoint dict with a ``state_dict`` key)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise NasError(f"cannot read weights {path}: {err.strerror or err}; check the path") from None
    except Exception:
        raise NasError(f"{path} is not a torch.save'd state_dict; "
                       "save one with torch.save(net.state_dict(), path)") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise NasError(f"{path} holds a {type(data).__name__}, not a state_dict; "
                       "save one with torch.save(net.state_dict(), path)")
    return data


def from_study(study: str | None = None, storage: str | None = None, trial: int | str = "best",
               results: str | Path | None = None) -> Source:
    """A net trained by ``nas search``: ``trial`` is a search trial's number, or ``"best"``.

    ``best`` is the study's one best design (:func:`nas.trials.best`): the cheapest confirmed design
    that meets the target in every seed; its weights are those of its first confirmation seed.
    Weights paths are relative to ``<results>/<study>/`` (``results`` defaults to ``$NAS_RESULTS``
    or ``runs``); the study database's own folder is tried next.
    """
    storage = storage or studies.DEFAULT_STORAGE
    s = studies.load(study, storage)
    constraints = Constraints.from_dict(trials.StudyTask.of(s).constraints)
    dirs = _results_dirs(storage, results)
    if str(trial) == "best":
        return _best(s, constraints, dirs, storage)
    t = _numbered(s, _trial_number(trial))
    r = trials.Record.of(t)
    if r.spec is None:
        raise NasError(f"trial {t.number} of study {s.study_name!r} has no spec; "
                       "it was not recorded by `nas search`, pick another with --trial N")
    spec = Spec.from_dict(r.spec)
    if not spec.name:
        spec = Spec(spec.input, spec.blocks, f"{s.study_name}_trial{t.number}", spec.notes)
    rel = r.weights
    if not rel:
        raise NasError(f"trial {t.number} of study {s.study_name!r} has no weights (not trained, or stopped "
                       "before saving); pick another with --trial N, or export its spec as a DESIGN")
    state = load_weights(_weights_path(s, rel, f"trial {t.number}", dirs))
    return Source(spec, state, constraints, _trial_meta(s, t, storage), f"{s.study_name}_trial{t.number}")


def best(study, storage: str | None = None, results: str | Path | None = None) -> Source:
    """The study's best design with its weights: the cheapest confirmed to meet the target in every
    seed (:func:`nas.trials.best`). ``study`` is what :func:`nas.search` returned, an Optuna study,
    or a study's name (in ``storage``, else in ``results``' ``studies.db``).

    >>> from nas import best
    >>> net = best("mnist_squeeze", results="results").model()
    >>> sum(p.numel() for p in net.parameters())
    9970
    """
    results = results if results is not None else getattr(study, "results", None)
    study = getattr(study, "study", study)  # a search's Outcome
    if not isinstance(study, optuna.Study):
        return from_study(study, studies.url_for(storage, results), "best", results)
    constraints = Constraints.from_dict(trials.StudyTask.of(study).constraints)
    shown = storage or getattr(study._storage, "shown_url", "its storage")
    return _best(study, constraints, _results_dirs(storage or "", results), shown)


def _best(s, constraints: Constraints, dirs: list[Path], storage: str) -> Source:
    from .confirm import found

    c, task = found(s)[1], trials.StudyTask.of(s)
    target, cost = (task.target if task.target is not None else 1.0), task.cost
    if c is None:
        raise NasError(f"study {s.study_name!r} has no confirmed design that meets its target yet; run "
                       f"`nas confirm --study {s.study_name}`, or export a search trial with --trial N")
    seed = min(c.weights)
    name = f"{s.study_name}_{c.source.replace(' ', '')}"
    spec = Spec.from_dict(c.spec)
    spec = spec if spec.name else Spec(spec.input, spec.blocks, name, spec.notes)
    state = load_weights(_weights_path(s, c.weights[seed], f"{c.source} seed {seed}", dirs))
    meta = {"weights": f"confirmation seed {seed} of {c.source}, study {s.study_name!r} ({storage})",
            "confirmed": c.line(target, cost), "target": _pct(target), "meets target": "yes"}
    return Source(spec, state, constraints, {**meta, **_input_meta(s)}, name)


def _trial_number(trial: int | str) -> int:
    try:
        return int(trial)
    except (TypeError, ValueError):
        raise NasError(f"--trial must be a trial number or 'best', got {trial!r}") from None


def _numbered(s, number: int):
    found_trials = s.get_trials(deepcopy=False)
    found = next((t for t in found_trials if t.number == number), None)
    if found is None:
        span = f"0-{max(t.number for t in found_trials)}" if found_trials else "none yet"
        raise NasError(f"study {s.study_name!r} has no trial {number} (trials: {span}); "
                       "pass another --trial N, or --trial best")
    return found


def _results_dirs(storage: str, results: str | Path | None) -> list[Path]:
    dirs = [Path(results) if results else studies.RESULTS]
    kind, file = studies.local_file(storage)
    if kind == "sqlite":
        dirs.append(file.parent)
    return dirs


def _weights_path(s, rel: str, what: str, results_dirs: list[Path]) -> Path:
    paths = [Path(rel)] if Path(rel).is_absolute() else [d / s.study_name / rel for d in results_dirs]
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        raise NasError(f"{what} of study {s.study_name!r} has weights {rel}, but {paths[0]} does not "
                       "exist; pass the study's results folder with --results")
    return found


def _trial_meta(s, t, storage: str) -> dict[str, Any]:
    accs = trials.Record.of(t).accuracies
    meta: dict[str, Any] = {"weights": f"trained in study {s.study_name!r}, trial {t.number} ({storage}), "
                            "on the training images less the validation split"}
    if accs:
        meta["final validation accuracy"] = f"{_pct(accs[-1])} after {len(accs)} epochs"
        meta["validation accuracy per epoch"] = ", ".join(_pct(a) for a in accs)
    target = trials.StudyTask.of(s).target
    if target is not None:
        meta["target"] = _pct(target) if isinstance(target, (int, float)) else target
    meta["meets target"] = "not confirmed (a search trial; `nas confirm` tests designs over several seeds)"
    return {**meta, **_input_meta(s)}


def _input_meta(s) -> dict[str, str]:
    task = trials.StudyTask.of(s)
    norm = task.input_norm
    if not norm:
        return {}
    return {"input": f"{task.dataset or 'dataset'} images scaled to 0..1, then normalised "
                     f"per channel with mean {norm['mean']} and std {norm['std']}"}


def _pct(value: float) -> str:
    """Accuracies may be stored as fractions or percentages; both print as a percentage."""
    value = float(value)
    return f"{value * 100 if value <= 1 else value:.2f}%"
