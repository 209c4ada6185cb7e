import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NAS_SHARED", ROOT.parent / "shared"))
SEEDS = SHARED / "seeds"
DATA = SHARED / "data"

# Searches run in this process unless a test asks for workers (`--jobs 2`): monkeypatched trainers
# and fake data do not reach worker processes.
os.environ.setdefault("NAS_JOBS", "1")


@pytest.fixture
def seeds_dir():
    if not SEEDS.is_dir():
        pytest.skip(f"seed documents not found at {SEEDS}")
    return SEEDS
