"""The documented designs reproduce their seed documents' tables, row by row."""
import re

import pytest

from nas import registry
from nas.analysis import analyse
from nas.summary import format_table, table_rows

SEED_OF = {"seed000": "000_", "seed001": "001_", "seed002": "002_", "seed004": "004_"}
TOTALS = {"seed000": 13_474, "seed001": 18_666, "seed002": 19_570, "seed004": 671_690}
ROW = re.compile(r"^\s*(\w+-\d+)\s+(\[[-\d, ]+\])\s+([\d,]+)\s*$")


def seed_text(seeds_dir, design):
    return next(seeds_dir.glob(SEED_OF[design] + "*.txt")).read_text()


def seed_rows(text):
    rows = []
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            shape = [int(n) for n in m.group(2)[1:-1].split(",")]
            rows.append((m.group(1), shape, int(m.group(3).replace(",", ""))))
    return rows


@pytest.mark.parametrize("design", sorted(SEED_OF))
def test_rows_match_seed_table(seeds_dir, design):
    text = seed_text(seeds_dir, design)
    expected = seed_rows(text)
    assert len(expected) > 20
    ours = [(name, shape, params) for name, shape, params, _, _ in table_rows(analyse(registry.load_design(design)))]
    assert ours == expected
    total = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    assert total == TOTALS[design] == analyse(registry.load_design(design)).params


@pytest.mark.parametrize("design", ["seed000", "seed002", "seed004"])
def test_torchsummary_text_is_exact(seeds_dir, design):
    """Seeds 000, 002 and 004 paste torchsummary's output unedited: ours is the same text."""
    text = seed_text(seeds_dir, design)
    start = text.index("----------------------------------------------------------------\n        Layer")
    block = text[start:].split("```")[0].rstrip("\n")
    assert format_table(analyse(registry.load_design(design)), extras=False) == block


def test_totals_without_seed_documents():
    for design, total in TOTALS.items():
        assert analyse(registry.load_design(design)).params == total


def test_designs_are_listed_and_noted():
    assert set(SEED_OF) <= set(registry.designs())
    for name in SEED_OF:
        assert "../shared/seeds/" in registry.load_design(name).notes
