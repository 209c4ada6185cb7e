"""Datasets by name: sources, the decoded-tensor cache, clear errors, slices. Offline and fast."""
import gzip
import os
import struct
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from PIL import Image

from nas import data
from nas.errors import NasError

# As in conftest.py (which --import-mode=importlib does not let tests import).
DATA = Path(os.environ.get("NAS_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")) / "data"


def write_idx(path, array: torch.Tensor, gz: bool = False) -> None:
    """An MNIST-format idx file: magic (dtype 0x08 = uint8, n dims), the sizes, the bytes."""
    header = struct.pack(">I", 0x0800 | array.dim()) + b"".join(struct.pack(">I", n) for n in array.shape)
    blob = header + array.to(torch.uint8).numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if gz else blob)


def fake_mnist(root, n_train=40, n_test=20):
    """torchvision's MNIST layout with already-extracted files (torchvision then reads them as is)."""
    g = torch.Generator().manual_seed(0)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=g))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(n) % 10)
    return root


def fake_folder(root, size=(6, 5), classes=("cat", "dog"), per_class=3, mode="RGB"):
    for split in ("train", "test"):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                value = (40 * c + 10 * i) % 256
                Image.new(mode, size, (value,) * len(mode) if mode == "RGB" else value).save(root / split / cls / f"{i}.png")
    return root


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_torchvision_layout_decodes_caches_and_leaves_the_source_untouched(tmp_path):
    src = fake_mnist(tmp_path / "src")
    before = snapshot(src)
    d = data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    assert d.x_train.shape == (40, 1, 28, 28) and d.x_train.dtype == torch.uint8
    assert d.x_eval.shape == (20, 1, 28, 28) and d.y_eval.dtype == torch.int64 and d.eval_split == "test"
    assert d.y_train.tolist() == [i % 10 for i in range(40)]
    assert d.classes == list("0123456789") and d.mean == (0.1307,)
    assert snapshot(src) == before  # nothing extracted or written next to the source
    cached = list((tmp_path / "cache").glob("mnist-*.pt"))
    assert len(cached) == 1 and not (tmp_path / "cache" / "staging").exists()


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    src = fake_mnist(tmp_path / "src")
    first = data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded again"))
    again = data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    for key in ("x_train", "y_train", "x_eval", "y_eval"):
        assert torch.equal(getattr(first, key), getattr(again, key))
    assert again.classes == first.classes and again.mean == first.mean and again.std == first.std


def test_a_changed_source_gets_a_new_cache_entry(tmp_path):
    src = fake_mnist(tmp_path / "src")
    data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    fake_mnist(src, n_train=30)  # same files, new content and sizes
    d = data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    assert len(d.y_train) == 30 and len(list((tmp_path / "cache").glob("mnist-*.pt"))) == 2


def test_a_corrupt_cache_file_is_rebuilt(tmp_path):
    src = fake_mnist(tmp_path / "src")
    data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("mnist-*.pt")
    cached.write_bytes(b"not a torch file")
    assert len(data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache").y_train) == 40


def test_environment_variables_give_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_DATA_DIR", str(fake_mnist(tmp_path / "src")))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "envcache"))
    assert len(data.load("MNIST").y_eval) == 20
    assert list((tmp_path / "envcache").glob("mnist-*.pt"))


def test_image_folder_by_path(tmp_path):
    root = fake_folder(tmp_path / "pets")
    d = data.load(str(root), cache_dir=tmp_path / "cache")
    assert d.name == "pets" and d.classes == ["cat", "dog"]
    assert d.x_train.shape == (6, 3, 5, 6) and d.x_train.dtype == torch.uint8  # (N, C, H, W) of 6x5 images
    assert d.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.x_train[4, :, 0, 0].tolist() == [50, 50, 50]
    assert len(d.mean) == 3 and all(0 <= m <= 1 for m in d.mean)


def test_grayscale_image_folder_under_a_dataset_name(tmp_path):
    fake_folder(tmp_path / "root" / "fashion_mnist", size=(28, 28), classes=tuple("ab"), mode="L")
    d = data.load("fashion-mnist", data_dir=tmp_path / "root", cache_dir=tmp_path / "cache")
    assert d.x_eval.shape == (6, 1, 28, 28) and d.name == "fashion_mnist"


def test_image_folder_with_mixed_sizes_is_one_clear_error(tmp_path):
    root = fake_folder(tmp_path / "mixed")
    Image.new("RGB", (7, 7)).save(root / "train" / "cat" / "big.png")
    with pytest.raises(NasError, match="differ in size"):
        data.load(str(root), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name, message", [
    ("imagenet", "unknown dataset 'imagenet'"),
    ("mnist", "MNIST not found in .*--data-dir.*MNIST/raw/\\*.gz.*NAS_DATA_DIR"),
])
def test_missing_datasets_say_how_to_get_them(tmp_path, name, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NasError, match=message):
        data.load(name, data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_a_missing_data_dir_is_one_clear_error(tmp_path):
    with pytest.raises(NasError, match="does not exist.*--data-dir"):
        data.load("mnist", data_dir=tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_a_corrupt_archive_is_one_clear_error(tmp_path, monkeypatch):
    raw = tmp_path / "src" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes(b"garbage")
    import torchvision.datasets.mnist as tv_mnist

    def offline(*args, **kwargs):  # the md5 check fails, so torchvision tries the network: be offline
        raise URLError("no network")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(NasError, match="missing or corrupt and download failed.*--data-dir") as err:
        data.load("mnist", data_dir=tmp_path / "src", cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_subset_is_stratified_random_and_repeatable(tmp_path):
    y = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    ids = torch.arange(1000)
    x = torch.stack([ids % 256, ids // 256], 1).to(torch.uint8).view(-1, 1, 1, 2)  # each image names its index
    d = data.TensorData("toy", x, y, x[:100], y[:100], ["a", "b", "c"], (0.5,), (0.5,))
    s = d.subset(train=100, test=10, seed=3)
    assert s.y_train.bincount().tolist() == [60, 30, 10]
    assert len(s.y_eval) == 10 and s.x_train.shape == (100, 1, 1, 2)
    picked = s.x_train[:, 0, 0, 0].long() + 256 * s.x_train[:, 0, 0, 1].long()
    assert torch.equal(s.y_train, y[picked]) and len(set(picked.tolist())) == 100
    assert torch.equal(s.x_train, d.subset(train=100, test=10, seed=3).x_train)
    assert not torch.equal(s.x_train, d.subset(train=100, test=10, seed=4).x_train)
    assert d.subset().x_train is d.x_train


def test_registry_lists_the_three_datasets():
    assert {"mnist", "fashion_mnist", "cifar10"} <= set(data.DATASETS)
    assert data.DATASETS["cifar10"].shape == (3, 32, 32)


@pytest.mark.slow
def test_real_mnist_from_the_shared_copy(tmp_path):
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {DATA}")
    d = data.load("mnist", data_dir=DATA, cache_dir=tmp_path / "cache")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_eval.shape == (10000, 1, 28, 28)
    assert d.y_train.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(d.x_train.float().mean().item() / 255 - 0.1307) < 1e-3
    assert os.access(tmp_path / "cache", os.W_OK)


def test_two_processes_decoding_a_cold_cache_at_once_both_load(tmp_path, monkeypatch):
    """Workers of one machine, started together on a fresh cache: while this process stages its copy of
    the source, another decodes the same dataset from start to end (and cleans up after itself)."""
    import subprocess
    import sys

    src, cache = fake_mnist(tmp_path / "src"), tmp_path / "cache"
    copy = data._copy_source
    other = []

    def copy_then_let_another_process_load(*args):
        copy(*args)
        other.append(subprocess.run(
            [sys.executable, "-c", f"from nas import data; print(len(data.load('mnist', data_dir={str(src)!r}, "
             f"cache_dir={str(cache)!r}).y_train))"], capture_output=True, text=True))

    monkeypatch.setattr(data, "_copy_source", copy_then_let_another_process_load)
    d = data.load("mnist", data_dir=src, cache_dir=cache)
    assert other[0].returncode == 0 and other[0].stdout.strip() == "40", other[0].stderr
    assert len(d.y_train) == 40 and not (cache / "staging").exists()


def test_a_packed_slice_loads_as_the_dataset_and_a_wrong_file_says_so(tmp_path):
    src = fake_mnist(tmp_path / "src")
    full = data.load("mnist", data_dir=src, cache_dir=tmp_path / "cache")
    f = data.pack(full, tmp_path / "carry" / "mnist-slice.pt", train=20, test=10)
    again = data.load("MNIST", data_dir=f, cache_dir=tmp_path / "elsewhere")
    assert len(again.y_train) == 20 and len(again.y_eval) == 10 and again.name == "mnist"
    assert sorted(again.y_train.tolist()) == sorted([c for c in range(10)] * 2)  # stratified: 2 a class
    assert not (tmp_path / "elsewhere").exists()  # nothing decoded, nothing cached
    with pytest.raises(NasError, match=r"mnist-slice\.pt holds mnist, not cifar10; pass the file packed from cifar10"):
        data.load("cifar10", data_dir=f)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(NasError, match=r"junk\.pt is not a dataset file written by nas\.data\.pack"):
        data.load("mnist", data_dir=junk)
