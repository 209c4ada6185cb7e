"""nas: constraint-first architecture search for small CNNs.

Check a design before any training, search a space, and load the smallest net that met the target
in every confirmation seed::

    import nas

    a = nas.analyse(nas.load_design("seed001"))         # params, RF, shapes: no training
    out = nas.search("mnist_squeeze", data_dir="../shared/data")
    net = nas.best(out).model()                         # the trained nn.Module

``__all__`` is the whole public API; everything else may change between versions.

>>> import nas
>>> nas.analyse(nas.load_design("seed001")).params
18666
"""
from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("nas")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# Imported here, not on first use: several names are also modules' names (nas.search, nas.train,
# nas.export, nas.build, nas.confirm), and a submodule imported later would replace a lazy name.
from .analysis import analyse
from .build import build
from .constraints import Constraints
from .data import load as load_dataset
from .errors import NasError
from .export import best, export
from .feasibility import feasibility
from .registry import list_designs, list_spaces, load_design
from .report import trials_frame
from .search import confirm, search
from .space import Space
from .spec import Spec
from .train import TrainConfig, train

__all__ = ["Constraints", "NasError", "Space", "Spec", "TrainConfig", "__version__", "analyse", "best", "build",
           "confirm", "export", "feasibility", "list_designs", "list_spaces", "load_dataset", "load_design",
           "search", "train", "trials_frame"]
