"""`nas summary`, `nas check` and `nas designs` as a user runs them."""
from click.testing import CliRunner

from nas.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_summary_prints_table_rf_and_checklist():
    r = run("summary", "seed004", "--max-params", "1000000", "--min-rf", "44", "--require", "dws,dilated,gap")
    assert r.exit_code == 0, r.output
    assert "Total params: 671,690" in r.output
    assert "Receptive field: 48" in r.output
    assert "params < 1,000,000 ✓ (671,690)" in r.output
    assert "RF > 44 ✓ (48)" in r.output and "requires dilated ✓" in r.output


def test_check_exit_codes():
    assert run("check", "seed004", "--max-params", "1000000", "--min-rf", "44", "--require", "dws,dilated,gap").exit_code == 0
    r = run("check", "seed001", "--max-params", "18000", "--require", "dws")
    assert r.exit_code == 1
    assert "params < 18,000 ✗ (18,666)" in r.output and "requires dws ✗" in r.output


def test_check_spec_file(tmp_path):
    f = tmp_path / "net.yaml"
    f.write_text("input: [1, 28, 28]\nlayers:\n  - conv: {out: 10, kernel: 28}\n")
    r = run("check", str(f), "--max-params", "20000", "--min-rf", "27")
    assert r.exit_code == 0, r.output
    assert "RF > 27 ✓ (28)" in r.output


def test_errors_are_one_line_without_traceback(tmp_path):
    r = run("summary", "nope")
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and r.output.startswith("error: unknown design 'nope'")
    r = run("check", "seed001", "--require", "wings")
    assert r.exit_code == 2 and "unknown required operation 'wings'" in r.output
    f = tmp_path / "broken.yaml"
    f.write_text("input: [1, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 9}\n")
    r = run("summary", str(f))
    assert r.exit_code == 2 and "layer 0: conv: kernel 9" in r.output and "Traceback" not in r.output


def test_designs_lists_all_four():
    r = run("designs")
    assert r.exit_code == 0
    for name, total in [("seed000", "13,474"), ("seed001", "18,666"), ("seed002", "19,570"), ("seed004", "671,690")]:
        assert name in r.output and total in r.output
