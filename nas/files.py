"""Every file nas writes (weights, exports, reports, plots, the dataset cache) goes through here.

A write goes to a new temporary file in the same folder, is flushed to disk, and then replaces the
target with :func:`os.replace`. So a reader (another worker, a report) sees the old file or the whole
new one; a failed write (a full disk) leaves the previous file as it was; and a symlink planted at
the target is replaced, never followed, so a shared results folder cannot be used to overwrite a
file elsewhere. The temporary file is created with ``O_EXCL``, which refuses an existing name,
link or not.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> (folder / "elsewhere.txt").write_text("keep me")
7
>>> (folder / "out.txt").symlink_to(folder / "elsewhere.txt")
>>> write_atomic(folder / "out.txt", "new", "the report", "pass another --results").read_text()
'new'
>>> (folder / "elsewhere.txt").read_text(), (folder / "out.txt").is_symlink()
('keep me', False)
>>> (folder / "out.txt").stat().st_mode & 0o777 == (folder / "elsewhere.txt").stat().st_mode & 0o777
True
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import NasError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask can only be read by setting it


def write_atomic(path: str | Path, data: bytes | str, what: str, fix: str) -> Path:
    """Write ``data`` to ``path`` atomically (see the module). On failure raise a one-line
    :class:`NasError` naming ``what`` could not be written, why, and ``fix``; nothing is left behind."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise NasError(f"cannot write {what} in {path.parent}: {err.strerror or err}; {fix}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # as open() would make it: mkstemp's 0600 hides it from a team
            _write(f, payload, tmp)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise NasError(f"cannot write {what} to {path}: {_why(err, path, len(payload))}; {fix}") from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def save_torch(path: str | Path, obj: Any, what: str, fix: str) -> Path:
    """``torch.save(obj)`` through :func:`write_atomic`. Serialised in memory first: these nets' weights
    are small, and a full disk then fails as an OSError with the size needed (``torch.save`` to a
    file fails with a RuntimeError that names neither)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_atomic(path, buf.getvalue(), what, fix)


def non_finite(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` that hold a NaN or an infinity.

    >>> import torch
    >>> non_finite({"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")]), "n": torch.tensor(3)})
    ['b']
    """
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _write(f, payload: bytes, name: str) -> None:  # the one place to inject a fault in tests (a full disk)
    f.write(payload)


def _why(err: OSError, path: Path, size: int) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            return f"no space left on the device (needs {size:,} bytes)"
        return f"no space left on the device (needs {size:,} bytes, {free:,} free)"
    return err.strerror or str(err)


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
