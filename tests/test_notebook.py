"""examples/quickstart.ipynb runs end to end: every code cell, in order, on real MNIST at a tiny budget
(a 2-net, one-epoch space), the way a Jupyter kernel would run it (IPython magics aside)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DATA, ROOT
from toys import ONE_EPOCH_MNIST

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"

RUNNER = """
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
scope = {"__name__": "__main__"}
for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
    source = "".join(line for line in cell["source"] if not line.lstrip().startswith("%"))
    exec(compile(source, f"cell {i}", "exec"), scope)
print("ran", i + 1, "cells")
"""


def test_the_quickstart_notebook_runs_end_to_end(tmp_path):
    if not (DATA / "MNIST").is_dir():
        pytest.skip(f"MNIST not found under {DATA}")
    space = tmp_path / "api.yaml"
    space.write_text(ONE_EPOCH_MNIST)
    env = {**os.environ, "NAS_NB_SPACE": str(space), "NAS_DATA_DIR": str(DATA), "NAS_NB_MINUTES": "2",
           "NAS_NB_RESULTS": str(tmp_path / "runs"), "NAS_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RUNNER, str(NOTEBOOK)], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    code_cells = sum(c["cell_type"] == "code" for c in json.loads(NOTEBOOK.read_text())["cells"])
    assert f"ran {code_cells} cells" in out.stdout
    assert "18,666 params" in out.stdout  # the design check
    assert "2 trained" in out.stdout and "seeds >= 50.00%" in out.stdout  # the search and its confirmation
    assert "predicted:" in out.stdout
    assert sorted(p.name for p in (tmp_path / "export" / "best").iterdir()) == ["model.py", "spec.yaml", "weights.pt"]


def test_the_notebook_is_shipped_without_outputs():
    """Outputs would go stale with every change; a reader runs the cells."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
