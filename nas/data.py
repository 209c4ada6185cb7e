"""Datasets by name, decoded once and held in memory as uint8 tensors on the training device.

``load("mnist")`` finds the data in this order:

1. ``data_dir`` (or the ``NAS_DATA_DIR`` environment variable) when given: torchvision's layout
   (``DIR/MNIST/raw/*.gz``, ``DIR/FashionMNIST/raw/*.gz``, ``DIR/cifar-10-batches-py/`` or
   ``DIR/cifar-10-python.tar.gz``) or an image folder (``DIR/<name>/train/<class>/*.png`` and
   ``.../test/<class>/*.png``);
2. otherwise torchvision downloads it into the cache directory (``NAS_CACHE_DIR``, default
   ``~/.cache/nas``).

A path to an image folder works as a name too, which serves custom datasets. The decoded tensors
are saved in the cache directory as one ``.pt`` file keyed by the source, so the next load is a
single ``torch.load``. Nothing is ever written into ``data_dir``: torchvision extracts archives next
to them, so they are copied into the cache first.

>>> import torch
>>> d = TensorData("toy", torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1] * 3),
...                torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"], (0.5,), (0.25,))
>>> d.subset(train=4).x_train.shape, d.shape, d.num_classes
(torch.Size([4, 1, 4, 4]), (1, 4, 4), 2)
"""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from .errors import NasError
from .files import save_torch

CACHE_VERSION = 1
# Small CNNs train on small images; a larger one is a photo in the wrong folder or a decompression bomb.
MAX_SIDE = 2048
MAX_PIXELS = MAX_SIDE * MAX_SIDE
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision: str  # class name in torchvision.datasets
    folder: str  # torchvision's folder under root
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


DIGITS = tuple(str(i) for i in range(10))
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in [
    DatasetInfo("mnist", "MNIST", "MNIST", (1, 28, 28), DIGITS, (0.1307,), (0.3081,)),
    DatasetInfo("fashion_mnist", "FashionMNIST", "FashionMNIST", (1, 28, 28),
                ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"), (0.2860,), (0.3530,)),
    DatasetInfo("cifar10", "CIFAR10", "cifar-10-batches-py", (3, 32, 32),
                ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
]}
_ALIASES = {"fashionmnist": "fashion_mnist", "cifar": "cifar10", "cifar_10": "cifar10"}


@dataclass
class TensorData:
    """A whole dataset as tensors: uint8 images ``(N, C, H, W)`` and int64 labels, on one device.

    ``x_eval``, ``y_eval`` are what a run is scored on: the test set as loaded, or the validation
    split after :meth:`held_out`; ``eval_split`` says which, so no caller mistakes one for the other.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_eval: Tensor
    y_eval: Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_split: str = "test"  # "test" or "validation"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: str | torch.device) -> "TensorData":
        return replace(self, **{k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_eval", "y_eval")})

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "TensorData":
        """A class-stratified random slice of ``train`` and ``test`` images (None keeps all)."""
        gen = torch.Generator().manual_seed(seed)
        xtr, ytr = _stratified(self.x_train, self.y_train, train, gen)
        xte, yte = _stratified(self.x_eval, self.y_eval, test, gen)
        return replace(self, x_train=xtr, y_train=ytr, x_eval=xte, y_eval=yte)

    def check_fits(self, input_shape, out_shape, what: str) -> None:
        """A net of that input and output shape must take these images and give one score per class."""
        if tuple(input_shape) != self.shape:
            raise NasError(f"{what} takes input {list(input_shape)} but {self.name}'s images are {list(self.shape)}; "
                           "use the matching dataset, or change the spec's input")
        if tuple(out_shape) not in ((self.num_classes,), (self.num_classes, 1, 1)):
            raise NasError(f"{what} gives outputs of shape {list(out_shape)} but {self.name} has {self.num_classes} "
                           f"classes; its last layer must give {self.num_classes} scores (e.g. a "
                           f"{self.num_classes}-channel conv, then gap and flatten)")

    def validation_count(self, validation: float) -> int:
        """How many training images ``validation`` (a count, or a fraction below 1) holds out; an error
        unless some remain on each side."""
        n = len(self.y_train)
        count = round(validation * n) if validation < 1 else int(validation)
        if not 0 < count < n:
            raise NasError(f"cannot hold out {validation} of the {n:,} training images of {self.name} for validation; "
                           "set task.validation in the space file to a smaller count or a fraction such as 0.1")
        return count

    def held_out(self, validation: float, seed: int) -> "TensorData":
        """The training images split in two, so that choices are made without the test set.

        ``validation`` images (a count, or a fraction below 1), drawn class-stratified with
        ``seed``, become the evaluation part (``x_eval``, ``y_eval``); the rest stay for training.
        The test images are never read.

        >>> d = TensorData("toy", torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.tensor([0, 1] * 5),
        ...                None, None, ["a", "b"], (0.5,), (0.25,))
        >>> v = d.held_out(4, seed=0)
        >>> len(v.y_train), len(v.y_eval), sorted(v.x_train.flatten().tolist() + v.x_eval.flatten().tolist())
        (6, 4, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        """
        n, count = len(self.y_train), self.validation_count(validation)
        keep = _stratified_index(self.y_train, count, torch.Generator().manual_seed(seed))
        rest = torch.ones(n, dtype=torch.bool, device=self.y_train.device)
        rest[keep] = False
        return TensorData(f"{self.name} (validation split)", self.x_train[rest], self.y_train[rest],
                          self.x_train[keep], self.y_train[keep], self.classes, self.mean, self.std, "validation")


def _stratified(x: Tensor, y: Tensor, n: int | None, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    if n is None or n >= len(y):
        return x, y
    keep = _stratified_index(y, n, gen)
    return x[keep], y[keep]


def _stratified_index(y: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """``n`` indices into ``y``, each class in proportion to its size, which ones at random."""
    # Rank each sample within its class in a random order, then take the lowest relative ranks.
    perm = torch.randperm(len(y), generator=gen).to(y.device)
    yp = y[perm]
    order = torch.argsort(yp, stable=True)
    counts = torch.bincount(yp)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(yp), device=y.device) - starts[yp[order]]
    frac = (rank.double() + 0.5) / counts[yp].double()
    keep = perm[torch.argsort(frac, stable=True)[:n]]
    return keep.sort().values  # keep the source's order, so a slice of a slice stays predictable


# ---- locations -----------------------------------------------------------------------------------

def default_data_dir() -> Path | None:
    value = os.environ.get("NAS_DATA_DIR")
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas").expanduser()


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def _is_image_folder(path: Path) -> bool:
    return (path / "train").is_dir() and ((path / "test").is_dir() or (path / "val").is_dir())


# ---- the public entry point ---------------------------------------------------------------------

def load(name: str, data_dir: str | Path | None = None, device: str | torch.device = "cpu",
         cache_dir: str | Path | None = None) -> TensorData:
    """The dataset ``name`` (or an image folder path) as :class:`TensorData` on ``device``.

    Raises :class:`NasError` with the fix when the data is missing, corrupt or unreadable.

    >>> from nas import load_dataset
    >>> data = load_dataset("mnist", data_dir="../shared/data")  # no data_dir: downloaded to ~/.cache/nas
    >>> len(data.y_train), len(data.y_eval), data.shape
    (60000, 10000, (1, 28, 28))
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    data = _packed(name, root) if root is not None and root.is_file() else _cached(_find_source(name, root, cache), cache)
    return data.to(device) if torch.device(device) != data.device else data


def pack(data: TensorData, path: str | Path, train: int | None = None, test: int | None = None,
         seed: int = 0) -> Path:
    """Write ``data`` (or a class-stratified slice of ``train`` and ``test`` images) to one file in the
    cache's format: uint8 tensors that ``load(name, data_dir=path)`` reads back without decoding a
    single image. For a machine the dataset's own files are too many or too big to carry to.

    >>> import tempfile, torch
    >>> toy = TensorData("mnist", torch.zeros(8, 1, 2, 2, dtype=torch.uint8), torch.arange(8) % 2,
    ...                  torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4) % 2, ["0", "1"], (0.1,), (0.3,))
    >>> f = pack(toy, tempfile.mkdtemp() + "/mnist.pt", train=4)
    >>> len(load("mnist", data_dir=f).y_train)
    4
    """
    path = Path(path)
    _save(data.subset(train=train, test=test, seed=seed), path)
    return path


def _packed(name: str, path: Path) -> TensorData:
    """A file written by :func:`pack` (or a cache file), given as ``data_dir``."""
    try:
        data = _from_payload(torch.load(path, weights_only=True))
    except Exception as err:  # noqa: BLE001 - a foreign or truncated file
        raise NasError(f"{path} is not a dataset file written by nas.data.pack ({type(err).__name__}); pass "
                       "--data-dir pointing at the dataset's folder, or pack it again") from None
    wanted = _canonical(name) if _canonical(name) in DATASETS else Path(name).name
    if data.name != wanted:
        raise NasError(f"{path} holds {data.name}, not {wanted}; pass the file packed from {wanted}")
    return data


@dataclass(frozen=True)
class _Source:
    name: str
    kind: str  # "torchvision", "download" or "folder"
    path: Path  # torchvision root, or the image folder
    info: DatasetInfo | None

    def fingerprint(self) -> str:
        """Identifies the source's content cheaply: paths, sizes and modification times."""
        parts = [str(CACHE_VERSION), self.name, self.kind, str(self.path.resolve())]
        if self.kind == "folder":
            for split in ("train", "test", "val"):
                for d in sorted((self.path / split).glob("*")) if (self.path / split).is_dir() else []:
                    if d.is_dir():
                        st = d.stat()
                        parts.append(f"{split}/{d.name}:{len(os.listdir(d))}:{st.st_mtime_ns}")
        elif self.kind == "torchvision":
            for f in sorted(_torchvision_files(self.path, self.info)):
                st = f.stat()
                parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _find_source(name: str, root: Path | None, cache: Path) -> _Source:
    as_path = Path(name).expanduser()
    if name not in DATASETS and _canonical(name) not in DATASETS and (as_path.is_dir() or os.sep in name):
        if not _is_image_folder(as_path):
            raise NasError(f"{name} is not an image folder: it needs train/<class>/*.png and test/<class>/*.png "
                           "(or a dataset name: " + ", ".join(DATASETS) + ")")
        return _Source(as_path.resolve().name, "folder", as_path, None)
    key = _canonical(name)
    if key not in DATASETS:
        raise NasError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)}); or pass the path of an "
                       "image folder with train/<class>/*.png and test/<class>/*.png")
    info = DATASETS[key]
    if root is None:
        return _Source(key, "download", cache / "torchvision", info)
    if not root.is_dir():
        raise NasError(f"data directory {root} does not exist: pass --data-dir pointing at a folder that holds "
                       f"{_expected(info)}, or set NAS_DATA_DIR")
    if _torchvision_files(root, info):
        return _Source(key, "torchvision", root, info)
    for folder in (root / key, root / key.replace("_", "-"), root / info.folder, root):
        if _is_image_folder(folder):
            return _Source(key, "folder", folder, info)
    raise NasError(f"{info.torchvision} not found in {root}: pass --data-dir pointing at a folder that holds "
                   f"{_expected(info)}, or set NAS_DATA_DIR (without either, it is downloaded when online)")


def _expected(info: DatasetInfo) -> str:
    if info.name == "cifar10":
        tv = "cifar-10-batches-py/ or cifar-10-python.tar.gz"
    else:
        tv = f"{info.folder}/raw/*.gz"
    return f"{tv} (torchvision's layout) or {info.name}/train/<class>/*.png and {info.name}/test/<class>/*.png"


def _torchvision_files(root: Path, info: DatasetInfo | None) -> list[Path]:
    """The files of ``info`` in torchvision's layout under ``root`` (empty if it is not there)."""
    if info is None:
        return []
    if info.name == "cifar10":
        folder, archive = root / info.folder, root / "cifar-10-python.tar.gz"
        if folder.is_dir():
            return [p for p in folder.iterdir() if p.is_file()]
        return [archive] if archive.is_file() else []
    raw = root / info.folder / "raw"
    return [p for p in raw.iterdir() if p.is_file()] if raw.is_dir() else []


# ---- the decoded-tensor cache ---------------------------------------------------------------------

def cache_path(source: _Source, cache: Path) -> Path:
    return cache / f"{source.name}-{source.fingerprint()}.pt"


def _cached(source: _Source, cache: Path) -> TensorData:
    path = cache_path(source, cache)
    if path.is_file():
        try:
            return _from_payload(torch.load(path, weights_only=True))
        except Exception:  # a truncated or foreign file: decode again and overwrite it
            pass
    data = _decode(source, cache)
    _save(data, path)
    return data


def _save(data: TensorData, path: Path) -> None:
    payload = {"version": CACHE_VERSION, "name": data.name, "classes": list(data.classes),
               "mean": list(data.mean), "std": list(data.std),
               # the cache holds a dataset as loaded, whose evaluation part is its test set
               "x_train": data.x_train.cpu(), "y_train": data.y_train.cpu(),
               "x_test": data.x_eval.cpu(), "y_test": data.y_eval.cpu()}
    save_torch(path, payload, "the dataset cache", "free some space or set NAS_CACHE_DIR to a writable folder")


def _from_payload(p: dict) -> TensorData:
    if p.get("version") != CACHE_VERSION:
        raise ValueError("old cache format")
    return TensorData(p["name"], p["x_train"], p["y_train"], p["x_test"], p["y_test"], list(p["classes"]),
                      tuple(p["mean"]), tuple(p["std"]))


# ---- decoding --------------------------------------------------------------------------------------

def _decode(source: _Source, cache: Path) -> TensorData:
    if source.kind == "folder":
        return _decode_folder(source)
    return _decode_torchvision(source, cache)


def _decode_torchvision(source: _Source, cache: Path) -> TensorData:
    import torchvision

    info = source.info
    assert info is not None
    if source.kind == "torchvision":
        # one folder per process: workers loading a cold cache at once must not remove each other's files
        root = cache / "staging" / f"{source.fingerprint()}-{os.getpid()}"
        where = str(source.path)
        _copy_source(source.path, root, info)
    else:
        root, where = source.path, str(source.path)
    cls = getattr(torchvision.datasets, info.torchvision)
    try:
        splits = [cls(str(root), train=train, download=True) for train in (True, False)]
    except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError, EOFError...
        _remove_extracted(root, info)
        detail = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise NasError(
            f"{info.torchvision} in {where} is missing or corrupt and download failed (offline?) [{detail}]: "
            f"pass --data-dir pointing at a folder with {_expected(info)}, or set NAS_DATA_DIR") from None
    finally:
        if source.kind == "torchvision":
            shutil.rmtree(root, ignore_errors=True)  # the original stays in data_dir; the .pt is the cache
            _rmdir_if_empty(root.parent)
    (xtr, ytr), (xte, yte) = (_as_tensors(ds) for ds in splits)
    return TensorData(info.name, xtr, ytr, xte, yte, list(info.classes), info.mean, info.std)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _copy_source(src_root: Path, dst_root: Path, info: DatasetInfo) -> None:
    for f in _torchvision_files(src_root, info):
        rel = f.relative_to(src_root)
        dst = dst_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)  # not copy2: read-only modes would make the staging copy undeletable


def _remove_extracted(root: Path, info: DatasetInfo) -> None:
    """Drop half-extracted files so a retry does not mistake them for good ones."""
    raw = root / info.folder / "raw"
    for p in raw.glob("*") if raw.is_dir() else []:
        if p.suffix != ".gz":
            p.unlink(missing_ok=True)


def _as_tensors(ds) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(ds.data)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # MNIST (N,H,W); CIFAR (N,H,W,C)
    return x.contiguous().to(torch.uint8), torch.as_tensor(ds.targets, dtype=torch.int64)


def _decode_folder(source: _Source) -> TensorData:
    from PIL import Image, UnidentifiedImageError

    path = source.path
    classes = sorted(d.name for d in (path / "train").iterdir() if d.is_dir())
    if not classes:
        raise NasError(f"{path}/train has no class folders: put images in train/<class>/ and test/<class>/")
    test_dir = path / "test" if (path / "test").is_dir() else path / "val"
    extra = sorted({d.name for d in test_dir.iterdir() if d.is_dir()} - set(classes))
    if extra:
        raise NasError(f"{test_dir} has classes not in train/: {', '.join(extra[:5])}; use the same class folders")
    mode = None
    out = []
    for split in (path / "train", test_dir):
        images, labels = [], []
        for label, cls in enumerate(classes):
            folder = split / cls
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
            for f in files:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes are checked below
                        im = Image.open(f)
                    with im:
                        # The header's size is checked before anything is decoded: a small file can
                        # declare billions of pixels (a decompression bomb).
                        w, h = im.size
                        if w * h > MAX_PIXELS:
                            raise NasError(f"image {f} is {w}x{h} pixels, more than nas reads ({MAX_SIDE}x{MAX_SIDE}); "
                                           "resize it, or remove it if it is not an image of this dataset")
                        if mode is None:
                            mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                        images.append(torch.frombuffer(bytearray(im.convert(mode).tobytes()), dtype=torch.uint8)
                                      .view(im.size[1], im.size[0], -1))
                except Image.DecompressionBombError:
                    raise NasError(f"image {f} declares more pixels than nas reads ({MAX_SIDE}x{MAX_SIDE}); resize "
                                   "it, or remove it if it is not an image of this dataset") from None
                except (OSError, UnidentifiedImageError) as err:
                    raise NasError(f"cannot read image {f} ({err}): remove or replace the file") from None
                labels.append(label)
        if not images:
            raise NasError(f"no images in {split}/<class>/: add .png (or .jpg) files")
        sizes = {tuple(im.shape) for im in images}
        if len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise NasError(f"images in {path} differ in size ({a[1]}x{a[0]} and {b[1]}x{b[0]}): resize them to one size")
        out.append((torch.stack(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64)))
    (xtr, ytr), (xte, yte) = out
    empty = [cls for label, cls in enumerate(classes) if not (ytr == label).any()]
    if empty:  # a class to be tested on but never learnt: its test images could only be wrong
        raise NasError(f"class {empty[0]!r} has no training images in {path / 'train' / empty[0]}; add images "
                       "there or remove the class from test/ too")
    if xtr.shape[1:] != xte.shape[1:]:
        raise NasError(f"train and test images in {path} differ in size: resize them to one size")
    if source.info is not None and tuple(xtr.shape[1:]) == source.info.shape:
        mean, std = source.info.mean, source.info.std
    else:
        mean, std = channel_stats(xtr)
    return TensorData(source.name, xtr, ytr, xte, yte, classes, mean, std)


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double() / 255
    return tuple(round(v, 4) for v in flat.mean(1).tolist()), tuple(round(v, 4) for v in flat.std(1).tolist())
