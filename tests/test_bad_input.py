"""The catalogue of bad input: each case fails with exit code 2 and one line that names the problem
and the fix, prints no traceback, and leaves the studies already in the storage as they were.

Cases run through the real command line (click's test runner, in this process); a few also run as
real `nas` processes, where Python warnings would show up as extra lines.
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner

from nas.cli import main
from toys import assert_one_line_error, image_folder

SPACE = {
    "name": "tiny",
    "task": {"dataset": None, "target": 0.9, "max_epochs": 1, "validation": 4,
             "constraints": {"max_params": 5000, "classes": 2}},
    "train": {"batch_size": 16},
    "input": [1, 16, 16],
    "choices": {"w": [4, 8], "pool": ["maxpool", "avgpool"]},
    "blocks": {"f": [{"conv": {"out": "$w", "padding": 1}}, "relu", "$pool", {"pwconv": {"out": 2}}, "gap"]},
    "points": {"small": {"w": 4, "pool": "maxpool"}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keep_study(db: Path) -> None:
    study = optuna.create_study(study_name="keep", storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    study.set_user_attr("space", "mnist_squeeze")
    for acc in (0.97, 0.99):
        study.add_trial(optuna.trial.create_trial(
            params={"w": 8}, distributions={"w": optuna.distributions.CategoricalDistribution([4, 8])},
            values=[acc, 1000], user_attrs={"status": "complete", "trained": True, "accuracies": [acc]}))


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Made once: the image folder (only read) and a storage holding study 'keep' (copied for each case)."""
    root = tmp_path_factory.mktemp("bad_input")
    _keep_study(root / "studies.db")
    return image_folder(root / "data"), root / "studies.db"


class World:
    """A folder with a tiny image dataset, space files, and a storage holding study 'keep'."""

    def __init__(self, root: Path, data: Path, db: Path):
        self.root, self.data = root, data
        self.db = root / "results" / "studies.db"
        self.db.parent.mkdir()
        shutil.copyfile(db, self.db)
        self.storage = f"sqlite:///{self.db}"

    @property
    def known(self) -> set[str]:
        """What the case itself put in the folder: its data, spaces, files and the storage."""
        return {p.name for p in self.root.iterdir() if p.suffix in (".yaml", ".pt") or p.name in (
            "results", "data", "corrupt", "one_sided", "a_file", "p.yaml", "q.yaml")}

    def space(self, edit=None, raw: str | None = None) -> str:
        self.spaces = getattr(self, "spaces", 0) + 1
        path = self.root / f"tiny{self.spaces}.yaml"  # a new file each time: processes may run at once
        if raw is not None:
            path.write_text(raw)
            return str(path)
        data = copy.deepcopy(SPACE)
        data["task"]["dataset"] = str(self.data)
        if edit:
            edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    def file(self, name: str, text: str) -> str:
        path = self.root / name
        path.write_text(text)
        return str(path)

    def snapshot(self) -> tuple:
        """Study 'keep' as stored: its attributes and every trial; and the database file's bytes."""
        study = optuna.load_study(study_name="keep", storage=self.storage)
        trials = [(t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs) for t in study.get_trials()]
        return study.user_attrs, trials, hashlib.sha256(self.db.read_bytes()).hexdigest()


def _set(path: str, value):
    def edit(data):
        *keys, last = path.split(".")
        node = data
        for k in keys:
            node = node[k]
        node[last] = value
    return edit


def _corrupt(w: World) -> str:
    folder = w.root / "corrupt"
    image_folder(folder)
    (folder / "train" / "c0" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return str(folder)


def _search(w: World, space: str, *more: str, trials: str = "1", storage: str | None = None,
            results: str | None = None) -> list[str]:
    return ["search", "--space", space, "--trials", trials, "--storage", storage or w.storage,
            "--results", results or str(w.root / "results"), *more]


# Each case: (id, how to make the command line from the world, expected message, extra env, writes a new study)
CASES = [
    ("malformed space file", lambda w: _search(w, w.space(raw="name: x\ntask: [unclosed\n")),
     r"not valid YAML at line \d+; fix the syntax", {}),
    ("unknown field in space", lambda w: _search(w, w.space(edit=_set("colour", "red"))),
     r"unknown field 'colour' \(allowed: .*\)", {}),
    ("unknown space", lambda w: _search(w, "no_such_space"),
     r"unknown search space 'no_such_space' \(known: .*\); `nas spaces` lists them", {}),
    ("unknown design", lambda w: ["reproduce", "no_such_design", "--storage", w.storage],
     r"no search space lists design 'no_such_design' under points:; pass --space NAME", {}),
    ("design not in the space", lambda w: _search(w, w.space(), "--enqueue", "seed001"),
     r"design 'seed001' is not a point of space tiny .*; add it under 'points:' in ", {}),
    ("params value out of range",
     lambda w: _search(w, w.space(), "--enqueue", w.file("p.yaml", "{w: 3, pool: maxpool}")),
     r"w=3 is outside space tiny \(allowed: \[4, 8\]\)", {}),
    ("params file not YAML", lambda w: _search(w, w.space(), "--enqueue", w.file("q.yaml", "{w: [")),
     r"params file .*q\.yaml is not valid YAML at line 1; fix the syntax", {}),
    ("target out of range", lambda w: _search(w, w.space(edit=_set("task.target", 1.5))),
     r"task\.target must be a test accuracy in \(0, 1\], e\.g\. 0\.994; got 1\.5", {}),
    ("negative epoch count", lambda w: _search(w, w.space(edit=_set("task.max_epochs", -1))),
     r"task\.max_epochs must be a positive integer, got -1", {}),
    ("option out of range", lambda w: _search(w, w.space(), trials="0"),
     r"Invalid value for '--trials': 0 is not in the range x>=1; see `nas search --help`", {}),
    ("negative timeout", lambda w: _search(w, w.space(), "--timeout", "-5"),
     r"Invalid value for '--timeout': -5\.0 is not in the range x>0; see `nas search --help`", {}),
    ("misspelt option", lambda w: ["search", "--space", w.space(), "--trails", "3"],
     r"No such option '--trails'.*'--trials'.*; see `nas search --help`", {}),
    ("impossible constraints", lambda w: _search(w, w.space(edit=_set("task.constraints.max_params", 10))),
     r"space tiny is infeasible: none of 4 points of it meets every constraint; fewest params in this space "
     r"is \d+ >= 10: offer narrower widths", {}),
    ("space whose shapes collapse", lambda w: _search(w, w.space(edit=lambda d: d["blocks"]["f"].__setitem__(
        slice(2, 2), ["maxpool"] * 4 + [{"conv": {"out": 4, "kernel": 3}}]))),
     r"space tiny is infeasible: .*no point of this space builds a valid net \(invalid shapes .*\): "
     r"widen the input or remove pools/strides", {}),
    ("design whose shapes collapse", lambda w: ["check", w.file("collapse.yaml", yaml.safe_dump(
        {"name": "collapse", "input": [1, 4, 4], "blocks": {"f": [{"conv": {"out": 8, "kernel": 3}}, "maxpool",
                                                                  {"conv": {"out": 8, "kernel": 3}}]}}))],
     r"layer 2: conv: kernel 3 .* is larger than its padded input .*: lower the kernel or dilation, or pool later", {}),
    ("missing dataset", lambda w: _search(w, w.space(edit=_set("task.dataset", "mnist")), "--data-dir",
                                          str(w.root / "nowhere")),
     r"data directory .*nowhere does not exist: pass --data-dir pointing at a folder that holds .*, "
     r"or set NAS_DATA_DIR", {}),
    ("dataset folder without images", lambda w: _search(w, w.space(edit=_set("task.dataset", str(w.root)))),
     r"is not an image folder: it needs train/<class>/\*\.png and test/<class>/\*\.png", {}),
    ("corrupt dataset file", lambda w: _search(w, w.space(edit=_set("task.dataset", _corrupt(w)))),
     r"cannot read image .*0\.png .*: remove or replace the file", {}),
    ("dataset of another image size", lambda w: _search(w, w.space(edit=_set("input", [1, 28, 28]))),
     r"dataset .* has images of shape \[1, 16, 16\] but space tiny takes input \[1, 28, 28\]; fix 'input:' in ", {}),
    ("dataset with other classes", lambda w: _search(w, w.space(edit=lambda d: (
        d["task"]["constraints"].update(classes=3), d["blocks"]["f"][3]["pwconv"].update(out=3)))),
     r"dataset .* has 2 classes but space tiny asks for 3; fix 'classes' under task\.constraints in ", {}),
    ("unknown trainer setting", lambda w: _search(w, w.space(edit=_set("train", {"lrate": 0.1}))),
     r"tiny\d*\.yaml: train: unknown setting 'lrate'; use fields of nas\.train\.TrainConfig", {}),
    ("unknown device", lambda w: _search(w, w.space(), "--device", "tpu"),
     r"unknown device 'tpu': use auto, cpu or cuda", {}),
    ("unwritable results directory", lambda w: _search(w, w.space(), results=w.file("a_file", "") + "/results"),
     r"cannot create results folder .*a_file/results.*: Not a directory; pass a writable --storage or --results", {}),
    ("storage that is not a URL", lambda w: _search(w, w.space(), storage="results/studies.db"),
     r"storage 'results/studies\.db' is not a URL: use sqlite:///path\.db, postgresql://user@host/db or "
     r"journal:path\.log", {}),
    ("storage of an unknown kind", lambda w: _search(w, w.space(), storage="nosuchdb://host/x"),
     r"cannot open storage nosuchdb://host/x: .*; check the URL and that the database server is running", {}),
    ("unreachable database", lambda w: _search(
        w, w.space(), storage=f"postgresql://nas:secret@127.0.0.1:{_free_port()}/nas"),
     r"cannot open storage postgresql://\*\*\*@127\.0\.0\.1:\d+/nas: .*refused.*; check the URL and that the "
     r"database server is running", {}),
    ("study made for another space", lambda w: _search(w, w.space(), "--study", "keep"),
     r"study 'keep' was made for space 'mnist_squeeze', not 'tiny'; pass another --study", {}),
    ("bad heartbeat setting", lambda w: _search(w, w.space()),
     r"NAS_HEARTBEAT_SECONDS='abc' is not a whole number of seconds >= 1; fix or unset it",
     {"NAS_HEARTBEAT_SECONDS": "abc"}),
    ("grace shorter than the heartbeat", lambda w: _search(w, w.space()),
     r"NAS_GRACE_SECONDS=2 must be longer than NAS_HEARTBEAT_SECONDS=5 .*",
     {"NAS_HEARTBEAT_SECONDS": "5", "NAS_GRACE_SECONDS": "2"}),
    ("NaN loss", lambda w: _search(w, w.space(edit=_set("train", {"batch_size": 4, "lr": 1e30}))),
     r"every candidate trained in this run diverged \(loss became (NaN|infinite) at epoch 1 batch \d+\); "
     r"lower 'lr' under 'train:' in .*tiny\d*\.yaml and rerun the same command", {}),
]


def _spec(w: World, name: str, layers: list, side: int = 16) -> str:
    return w.file(f"{name}.yaml", yaml.safe_dump({"name": name, "input": [1, side, side], "layers": layers}))


def _empty_class(w: World) -> str:
    folder = image_folder(w.root / "one_sided")
    for f in (folder / "train" / "c1").iterdir():
        f.unlink()
    return str(folder)


def _train(w: World, design: str, *more: str) -> list[str]:
    return ["train", design, "--dataset", str(w.data), "--epochs", "1", *more]


CASES += [  # issue 13: what crashed or was accepted silently
    ("train a net of the wrong output size", lambda w: _train(w, _spec(w, "seven", [{"conv": {"out": 7}}, "gap"])),
     r"seven\.yaml gives outputs of shape \[7, 1, 1\] but .* has 2 classes; its last layer must give 2 scores", {}),
    ("train a net of another input size", lambda w: _train(w, "seed001"),
     r"seed001 takes input \[1, 28, 28\] but .*'s images are \[1, 16, 16\]; use the matching dataset", {}),
    ("train a GAP net on larger images", lambda w: _train(w, _spec(w, "small", [{"conv": {"out": 2}}, "gap"], 12)),
     r"small\.yaml takes input \[1, 12, 12\] but .*'s images are \[1, 16, 16\]", {}),
    ("train and save into a missing folder",
     lambda w: _train(w, _spec(w, "fine", [{"conv": {"out": 2}}, "gap"]), "--save", str(w.root / "no" / "w.pt")),
     r"cannot save weights to .*no/w\.pt: folder .*no does not exist; create it or pass another --save", {}),
    ("zero batch size", lambda w: _search(w, w.space(edit=_set("train", {"batch_size": 0}))),
     r"tiny\d*\.yaml: train: batch_size must be a whole number of at least 1 and at most 1048576, got 0", {}),
    ("learning rate that is a word", lambda w: _search(w, w.space(edit=_set("train", {"lr": "fast"}))),
     r"tiny\d*\.yaml: train: lr must be a number above 0 and at most 1e\+30, got 'fast'", {}),
    ("negative learning rate", lambda w: _search(w, w.space(edit=_set("train", {"lr": -0.1}))),
     r"tiny\d*\.yaml: train: lr must be a number above 0 and at most 1e\+30, got -0\.1", {}),
    ("journal storage on a YAML file", lambda w: _search(w, w.space(), storage="journal:" + w.space()),
     r"tiny\d*\.yaml is not an Optuna journal file; pass a new file or an existing journal", {}),
    ("journal storage on an SQLite file", lambda w: _search(w, w.space(), storage=f"journal:{w.db}"),
     r"studies\.db is not an Optuna journal file", {}),
    ("sqlite storage on a YAML file", lambda w: _search(w, w.space(), storage=f"sqlite:///{w.space()}"),
     r"tiny\d*\.yaml is not an SQLite database; pass a new file", {}),
    ("in-memory storage", lambda w: _search(w, w.space(), storage="sqlite://"),
     r"storage sqlite:// keeps the study in memory, so it is lost on exit; use a file", {}),
    ("timeout that is not a number", lambda w: _search(w, w.space(), "--timeout", "nan"),
     r"Invalid value for --timeout: nan is not a number of seconds; give a finite number", {}),
    ("study name that climbs out of results", lambda w: _search(w, w.space(), "--study", "../../../x"),
     r"study name '\.\./\.\./\.\./x' is not a plain name; use letters, digits and _ - \.", {}),
    ("study name that is an absolute path", lambda w: _search(w, w.space(), "--study", str(w.root / "abs")),
     r"study name '/.*abs' is not a plain name", {}),
    ("a net too large to build", lambda w: ["export", _spec(w, "huge", [{"conv": {"out": 10 ** 10}}, "gap"]),
                                            "-o", str(w.root / "huge")],
     r"huge has 100,000,000,000 params \(372\.5 GiB of weights\), more than this machine can build", {}),
    ("a training class without images", lambda w: _search(w, w.space(edit=_set("task.dataset", _empty_class(w)))),
     r"class 'c1' has no training images in .*one_sided/train/c1; add images there or remove the class", {}),
    ("storage error after the results folder is named", lambda w: _search(
        w, w.space(), storage=f"postgresql://nas@127.0.0.1:{_free_port()}/nas", results=str(w.root / "fresh")),
     r"cannot open storage postgresql://\*\*\*@127\.0\.0\.1:\d+/nas", {}),
]


def _raw(w: World, data: bytes) -> str:
    path = w.root / f"raw{len(list(w.root.glob('raw*.yaml')))}.yaml"
    path.write_bytes(data)
    return str(path)


def _tiny_text(w: World, edit=None) -> str:
    data = copy.deepcopy(SPACE)
    data["task"]["dataset"] = str(w.data)
    if edit:
        edit(data)
    return yaml.safe_dump(data, sort_keys=False)


BOMB = ("name: bomb\na: &a [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]\n"  # ~800 bytes, 10^7 layers
        + "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdef", "bcdefg")))
CASES += [  # issue 13, while loading: the same guarantees through `nas search` (the loaders have their own tests)
    ("space file in Latin-1", lambda w: _search(w, _raw(w, _tiny_text(w).replace("tiny", "t\u00eeny").encode("latin-1"))),
     r"search space file .*raw\d\.yaml is not UTF-8 text \(byte 0xee .*\); save it as UTF-8", {}),
    ("binary space file", lambda w: _search(w, _raw(w, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")),
     r"search space file .*raw\d\.yaml is not UTF-8 text", {}),
    ("division by zero in a template", lambda w: _search(w, w.space(edit=lambda d: d["blocks"]["f"][0]["conv"].update(
        out="$w // 0"))), r"expression '\$w // 0' cannot be computed", {}),
    ("string times a huge count", lambda w: _search(w, w.space(edit=lambda d: d["blocks"]["f"][0]["conv"].update(
        out="$w * 'a' * 100000000000000"))), r"expression .* computes a number above 1,000,000,000,000; fix", {}),
    ("input that is a number", lambda w: _search(w, w.space(edit=_set("input", 5))),
     r"input must be \[channels, height, width\] of positive integers", {}),
    ("duplicate key in a space", lambda w: _search(w, _raw(w, (_tiny_text(w) + "choices: {w: [4]}\n").encode())),
     r"duplicate key 'choices' at line \d+", {}),
    ("alias bomb", lambda w: _search(w, _raw(w, BOMB.encode())),
     r"raw\d\.yaml: its aliases expand to more than [\d,]+ values", {}),
]
def _blocks(w: World, name: str) -> str:
    return w.file("blocks.yaml", yaml.safe_dump({"name": "b", "input": [1, 16, 16], "blocks": {
        name: [{"conv": {"out": 2}}], "head": ["gap"]}}, allow_unicode=True))


CASES += [  # issue 20: names that collide with what a block becomes (an nn.Module attribute), or a reserved suffix
    *[(f"block named {name}", lambda w, n=name: _train(w, _blocks(w, n)), rf"block name '{re.escape(name)}' {re.escape(why)}; "
       "rename the block", {})
      for name, why in [("forward", "is an attribute of torch's nn.Module"),
                        ("training", "is an attribute of torch's nn.Module"),
                        ("load_state_dict", "is an attribute of torch's nn.Module"),
                        *[(n, "starts with two underscores (Python mangles those, or keeps them for its own)")
                          for n in ("__init__", "__x", "__debug__")],
                        ("\ufb01", "is not ASCII (Python folds some letters into others)")]],
    ("block named like a spec field in export", lambda w: ["export", _blocks(w, "state_dict"), "-o", str(w.root / "e")],
     r"block name 'state_dict' is an attribute of torch's nn.Module", {}),
    *[(f"device {dev}", lambda w, d=dev: _train(w, _spec(w, "fine", [{"conv": {"out": 2}}, "gap"]), "--device", d),
       rf"device '{dev}' cannot train nas models: use auto, cpu, cuda or mps", {}) for dev in ("meta", "xla", "ipu")],
    ("learning rate past what float32 holds", lambda w: _search(w, w.space(edit=_set("train", {"lr": 1.0e308}))),
     r"tiny\d*\.yaml: train: lr must be a number above 0 and at most 1e\+30, got 1e\+308", {}),
    ("nested list bomb in a template", lambda w: _search(w, w.space(edit=lambda d: d["blocks"]["f"][0]["conv"].update(
        out="[[[$w] * 10000] * 10000] * 10000"))), r"would build a value of 100,000,000 items \(at most 10,000\)", {}),
    ("bytes in a template", lambda w: _search(w, w.space(edit=lambda d: d["blocks"]["f"][0]["conv"].update(
        out="$w if len(b'a' * 1000000000) else 0"))), r"bytes are not allowed in templates", {}),
    ("repeat inside repeat", lambda w: _search(w, w.space(edit=lambda d: d["blocks"]["f"].insert(1, {"repeat": {
        "times": 1000, "layers": [{"repeat": {"times": 1000, "as": "j", "layers": ["relu"]}}]}}))),
     r"a point renders more than 10,000 layers", {}),
    ("study named like a confirmation study", lambda w: _search(w, w.space(), "--study", "tiny.confirm"),
     r"study name 'tiny\.confirm' holds '\.confirm', which names a study's confirmation runs; pick another --study", {}),
]
def _bomb(w: World, side: int = 60_000) -> str:
    """An image folder where one PNG's header declares side x side pixels (a 57-byte file)."""
    import struct
    import zlib

    folder = image_folder(w.root / "corrupt")
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    (folder / "train" / "c1" / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                                    + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return str(folder)


def _wide(d: dict) -> None:
    """Six width choices of six values: 46,656 points, more than `nas space` enumerates, so it samples."""
    d["choices"] = {f"w{i}": [2, 3, 4, 5, 6, 7] for i in range(6)}
    d["blocks"]["f"] = [{"conv": {"out": f"$w{i}", "padding": 1}} for i in range(6)] + [{"pwconv": {"out": 2}}, "gap"]


HUGE = str(10 ** 20)
CASES += [  # issue 20: limits no net can meet, values past what any run uses, and what a dataset can hold
    ("min-rf above max-rf", lambda w: ["check", "seed001", "--min-rf", "60", "--max-rf", "40"],
     r"min_rf 60 is not below max_rf 40, so no net meets both .*; lower min_rf or raise max_rf", {}),
    ("space whose min_rf is above its max_rf", lambda w: _search(w, w.space(
        edit=lambda d: d["task"]["constraints"].update(min_rf=30, max_rf=20))),
     r"task\.constraints: min_rf 30 is not below max_rf 20", {}),
    ("max-params 0", lambda w: ["check", "seed001", "--max-params", "0"],
     r"max_params 0 admits no net; give at least 1 or leave it out", {}),
    ("space whose classes is 0", lambda w: _search(w, w.space(edit=_set("task.constraints.classes", 0))),
     r"task\.constraints: classes 0 admits no net", {}),
    ("epochs past any schedule", lambda w: _train(w, _spec(w, "fine", [{"conv": {"out": 2}}, "gap"]), "--epochs", HUGE),
     r"nas train: epochs must be a whole number of at least 1 and at most 10000, got 10{20}", {}),
    ("seed past every RNG", lambda w: _train(w, _spec(w, "fine", [{"conv": {"out": 2}}, "gap"]), "--seed", HUGE),
     r"nas train: seed must be a whole number of at least 0 and at most 4294967295", {}),
    ("cutout larger than any image", lambda w: _train(w, _spec(w, "fine", [{"conv": {"out": 2}}, "gap"]),
                                                      "--cutout", "5000"),
     r"cutout must be a whole number of at least 0 and at most 1024, got 5000", {}),
    ("space train batch past the limit", lambda w: _search(w, w.space(edit=_set("train", {"batch_size": 2 ** 40}))),
     r"train: batch_size must be a whole number of at least 1 and at most 1048576", {}),
    ("space max_epochs past any schedule", lambda w: _search(w, w.space(edit=_set("task.max_epochs", 10 ** 20))),
     r"epochs must be a whole number of at least 1 and at most 10000", {}),
    ("search seed past every RNG", lambda w: _search(w, w.space(), "--seed", HUGE),
     r"seed .*at most 4294967295", {}),
    ("nets of another class count without classes:", lambda w: _search(w, w.space(edit=lambda d: (
        d["task"]["constraints"].pop("classes"), d["blocks"]["f"][3]["pwconv"].update(out=3)))),
     r"space tiny's head gives outputs of shape \[3, 1, 1\] but .* has 2 classes; its last layer must give 2 scores", {}),
    ("image that declares billions of pixels", lambda w: _search(w, w.space(edit=_set("task.dataset", _bomb(w)))),
     r"image .*5\.png declares more pixels than nas reads \(2048x2048\); resize it", {}),
    ("image larger than nas reads", lambda w: _search(w, w.space(edit=_set("task.dataset", _bomb(w, 3000)))),
     r"image .*5\.png is 3000x3000 pixels, more than nas reads \(2048x2048\); resize it", {}),
    ("study name too long for a folder", lambda w: _search(w, w.space(), "--study", "s" * 300),
     r"study name 'sssss+'\.\.\. is 300 characters long; use at most 100", {}),
    ("results folder name too long", lambda w: _search(w, w.space(), results=str(w.root / ("r" * 300))),
     r"results folder .* has a name of 300 bytes, more than this filesystem's 255; pass a shorter --results", {}),
    ("results path too long", lambda w: _search(w, w.space(), results=str(w.root / "/".join(["d" * 200] * 20))),
     r"results folder .* is a path too long for this filesystem .*; pass a shorter --results", {}),
    ("sampled space with no feasible point", lambda w: _search(w, w.space(edit=lambda d: (
        _wide(d), d.pop("points"), d["task"]["constraints"].update(max_params=20)))),
     r"no feasible point found in space tiny among 3,000 tried .*; the search would propose only nets that fail: "
     r"loosen the constraints or change the space", {}),
    ("validation larger than the training set", lambda w: _search(w, w.space(edit=_set("task.validation", 5000))),
     r"cannot hold out 5000 of the 24 training images of .* for validation; set task\.validation in the space file "
     r"to a smaller count or a fraction such as 0\.1", {}),
    ("timeout that is infinite", lambda w: _search(w, w.space(), "--timeout", "inf"),
     r"Invalid value for --timeout: inf is not a number of seconds; give a finite number", {}),
]


WRITES_A_STUDY = {"NaN loss"}  # the trials that diverged are recorded in a new study 'tiny'


@pytest.fixture
def world(tmp_path, monkeypatch, template):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("NAS_DATA_DIR", "NAS_RESULTS", "NAS_STORAGE", "NAS_HEARTBEAT_SECONDS", "NAS_GRACE_SECONDS",
                "NAS_DB_RETRY_SECONDS"):
        monkeypatch.delenv(var, raising=False)
    return World(tmp_path, *template)


def test_the_catalogue_holds_at_least_fifteen_kinds():
    assert len(CASES) >= 15 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,args,message,env", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, name, args, message, env):
    before = world.snapshot()
    result = CliRunner().invoke(main, args(world), env=env, prog_name="nas")
    assert_one_line_error(result, message)
    if name not in WRITES_A_STUDY:
        assert not result.stdout.strip(), result.stdout  # nothing else printed
    after = world.snapshot()
    assert after[:2] == before[:2], "study 'keep' changed"
    if name not in WRITES_A_STUDY:  # nothing written outside the named folders, and no empty ones
        made = {p.relative_to(world.root).parts[0] for p in world.root.iterdir()} - world.known
        assert made <= {"cache"}, f"{name} wrote {sorted(made)}"
        assert not (world.root / "results" / "tiny").exists() and not (world.root / "fresh").exists()
        assert not (world.root / "export").exists() and not (world.root / "huge").exists()
    if name not in WRITES_A_STUDY:
        assert after[2] == before[2], "the storage was written to"
    names = optuna.get_all_study_names(world.storage)
    assert names == (["keep", "tiny"] if name in WRITES_A_STUDY else ["keep"])


@pytest.mark.slow
def test_real_processes_print_one_line_and_no_warnings(world):
    """As separate processes: Optuna's 'experimental' warnings, logging and tqdm must not add lines."""
    picked = {c[0]: c for c in CASES if c[0] in ("study made for another space", "unreachable database", "NaN loss")}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "from nas.cli import main; main(prog_name='nas')"
    procs = {name: subprocess.Popen([sys.executable, "-W", "default", "-c", code, *case[1](world)], env=env,
                                    cwd=world.root, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, case in picked.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and re.search(picked[name][2], lines[0]), (name, err)
    assert optuna.load_study(study_name="keep", storage=world.storage).trials[1].values == [0.99, 1000]


def test_a_spec_named_like_a_path_exports_inside_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "sneaky.yaml"
    spec.write_text(yaml.safe_dump({"name": "../../x", "input": [1, 8, 8], "layers": [{"conv": {"out": 2}}, "gap"]}))
    result = CliRunner().invoke(main, ["export", str(spec)])
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("model.py")]
    assert len(written) == 1 and written[0].parent.parent == tmp_path / "export", written
    assert not (tmp_path.parent / "x").exists() and not (tmp_path.parent.parent / "x").exists()


def test_check_refuses_an_output_that_is_not_one_score_per_class(tmp_path):
    spec = tmp_path / "map.yaml"
    spec.write_text(yaml.safe_dump({"name": "map", "input": [1, 5, 5], "layers": [{"conv": {"out": 10}}]}))
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 1, result.output
    assert "outputs one score per class ✗ (output [10, 3, 3]" in result.output
    assert CliRunner().invoke(main, ["check", "seed001"]).exit_code == 0


@pytest.mark.parametrize("url, example", [("sqlite:///{dir}", "sqlite:///runs/studies.db"),
                                          ("journal:{dir}", "journal:runs/studies.log")])
def test_a_storage_that_is_a_folder_names_a_url_of_its_kind(tmp_path, url, example):
    from nas.errors import NasError
    from nas.study import check_url

    with pytest.raises(NasError, match=f"is a folder; name a file, e.g. {example}$"):
        check_url(url.format(dir=tmp_path))



def test_a_space_file_edited_between_runs_is_refused_and_the_study_kept(world):
    """The task is frozen in the study: a resume (search or confirm) from an edited file stops at once."""
    space = world.space()
    first = CliRunner().invoke(main, _search(world, space, "--confirm", "0"), prog_name="nas")
    assert first.exit_code == 0, first.output

    def stored():
        s = optuna.load_study(study_name="tiny", storage=world.storage)
        return s.user_attrs, [(t.number, t.state, t.values, t.user_attrs) for t in s.trials]

    def edit(change):
        data = yaml.safe_load(Path(space).read_text())
        change(data)
        Path(space).write_text(yaml.safe_dump(data, sort_keys=False))

    before = stored()
    edit(_set("task.target", 0.8))
    for args, command in ((_search(world, space, "--confirm", "0"), "search"),
                          (["confirm", "--study", "tiny", "--storage", world.storage], "confirm")):
        result = CliRunner().invoke(main, args, prog_name="nas")
        assert_one_line_error(result, r"study 'tiny' was made from another version of .*tiny1\.yaml: its target "
                                      r"changed since; restore the file, or pass another --study")
        assert stored() == before, command
    edit(lambda d: (d["task"].__setitem__("target", 0.9), d["choices"]["w"].append(6)))
    result = CliRunner().invoke(main, _search(world, space, "--confirm", "0"), prog_name="nas")
    assert_one_line_error(result, r"its nets \(choices, blocks, input or train settings\) changed since")
    assert stored() == before
    edit(lambda d: (d["choices"]["w"].pop(), d["task"].__setitem__("search_minutes", 5)))  # a budget may change
    again = CliRunner().invoke(main, _search(world, space, "--confirm", "0", trials="2"), prog_name="nas")
    assert again.exit_code == 0, again.output
    assert stored()[0]["target"] == 0.9
