"""The ``nas`` command line. Each command is a thin wrapper over one stage module.

Every error a user can cause is a :class:`~nas.errors.NasError`; it is printed as one line
(``error: ...``) with exit code 2 and no traceback. Ctrl-C exits with 130.
"""
from __future__ import annotations

import sys

import click

from . import registry
from .analysis import analyse
from .constraints import FEATURES, Constraints
from .errors import NasError
from .summary import format_checklist, format_table


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NasError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: everything finished so far is saved", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nas")
def main() -> None:
    """Constraint-first architecture search for small CNNs."""


def _constraint_options(f):
    f = click.option("--max-params", type=click.IntRange(0), help="Params must be below N.")(f)
    f = click.option("--min-rf", type=click.IntRange(0), help="Receptive field must be above N.")(f)
    f = click.option("--max-rf", type=click.IntRange(0), help="Receptive field must be at most N.")(f)
    f = click.option("--max-macs", type=click.IntRange(0), help="Multiply-adds must be below N.")(f)
    f = click.option("--require", default="", metavar="OPS",
                     help=f"Comma-separated operations the net must use: {', '.join(FEATURES)}.")(f)
    f = click.option("--fc", type=click.Choice(["any", "none", "after_gap"]), default="any",
                     show_default=True, help="Where a fully-connected layer may appear.")(f)
    return f


def _constraints(max_params, min_rf, max_rf, max_macs, require, fc) -> Constraints:
    return Constraints.from_dict({"max_params": max_params, "min_rf": min_rf, "max_rf": max_rf,
                                  "max_macs": max_macs, "require": require, "fc": fc})


@main.command()
def designs() -> None:
    """List the documented designs (use a name with summary, check, train, reproduce, export)."""
    for name, path in registry.designs().items():
        a = analyse(registry.load_design(str(path)))
        first = a.spec.notes.split(". ")[0][:70] if a.spec.notes else ""
        click.echo(f"{name:<12} {a.params:>9,} params  RF {a.rf:>3}  input {list(a.spec.input)}  {first}")


@main.command()
@click.argument("design")
@click.option("--torchsummary", "plain", is_flag=True, help="Print only torchsummary's own columns.")
@_constraint_options
def summary(design, plain, **limits) -> None:
    """Print DESIGN's layer table (a design name or a spec file), with RF and multiply-adds.

    Example: nas summary seed001 --max-params 20000
    """
    a = analyse(registry.load_design(design))
    click.echo(format_table(a, extras=not plain))
    constraints = _constraints(**limits)
    if constraints.check(a):
        click.echo(format_checklist(a, constraints))


@main.command()
@click.argument("design")
@_constraint_options
def check(design, **limits) -> None:
    """Exit 0 only if DESIGN meets every constraint given; print each one's result.

    Example: nas check seed004 --max-params 1000000 --min-rf 44 --require dws,dilated,gap
    """
    a = analyse(registry.load_design(design))
    constraints = _constraints(**limits)
    click.echo(f"{design}: {a.params:,} params, RF {a.rf}, {a.macs:,} multiply-adds")
    results = constraints.check(a)
    if results:
        click.echo(format_checklist(a, constraints))
    failed = [r for r in results if not r.ok]
    if failed:
        click.echo(f"{len(failed)} of {len(results)} constraints fail", err=True)
        sys.exit(1)


# Commands of later stages are registered below this line.
