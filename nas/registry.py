"""Named things looked up by name: documented designs and search spaces.

A name is either a path to a YAML file or the stem of a file in one of the search folders:
designs in ``nas/designs/`` (shipped with the package) and ``./designs/``; spaces in
``./search_spaces/`` and the ones shipped with the package (``search_spaces/`` of the repository,
installed as ``nas/search_spaces/``).
"""
from __future__ import annotations

from pathlib import Path

from .errors import NasError
from .spec import Spec

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DESIGN_DIRS = (Path("designs"), PACKAGE_DIR / "designs")
# ./search_spaces (a user's own) wins over the installed copy (a wheel) and the repository's (a checkout).
SPACE_DIRS = (Path("search_spaces"), PACKAGE_DIR / "search_spaces", PROJECT_DIR / "search_spaces")


def _names(dirs: tuple[Path, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(dirs):  # earlier folders win
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            found[path.stem] = path
    return dict(sorted(found.items()))


def find(name: str, dirs: tuple[Path, ...], kind: str, list_command: str) -> Path:
    """The file for ``name`` (a path, or a stem in ``dirs``); a one-line error otherwise."""
    path = Path(name)
    # A folder of the same name (a results folder named after its space) is not a file to read.
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file() or len(path.parts) > 1:
        if not path.is_file():
            raise NasError(f"{kind} file {name} does not exist; check the path")
        return path
    known = _names(dirs)
    if name not in known:
        raise NasError(f"unknown {kind} {name!r} (known: {', '.join(known) or 'none'}); "
                       f"`{list_command}` lists them, or pass a path to a YAML file")
    return known[name]


def designs() -> dict[str, Path]:
    return _names(DESIGN_DIRS)


def spaces() -> dict[str, Path]:
    return _names(SPACE_DIRS)


def load_design(name: str) -> Spec:
    """The spec of a documented design, or of any spec file given by path.

    >>> from nas import load_design
    >>> load_design("seed001").input
    (1, 28, 28)
    """
    spec = Spec.load(find(name, DESIGN_DIRS, "design", "nas designs"))
    return spec if spec.name else Spec(spec.input, spec.blocks, Path(name).stem, spec.notes)


def space_path(name: str) -> Path:
    return find(name, SPACE_DIRS, "search space", "nas spaces")


def list_designs() -> list[str]:
    """The documented designs' names, for :func:`load_design` (``nas designs`` prints them).

    >>> from nas import list_designs
    >>> "seed001" in list_designs()
    True
    """
    return list(designs())


def list_spaces() -> list[str]:
    """The search spaces' names, for :meth:`nas.Space.load` and :func:`nas.search` (``nas spaces``).

    >>> from nas import list_spaces
    >>> "mnist_squeeze" in list_spaces()
    True
    """
    return list(spaces())
