"""The ``nas`` command line. Each command is a thin wrapper over one stage module.

Every error a user can cause is a :class:`~nas.errors.NasError`; it is printed as one line
(``error: ...``) with exit code 2 and no traceback. Ctrl-C exits with 130.
"""
from __future__ import annotations

import sys

import click

from . import registry
from .analysis import analyse
from .constraints import FEATURES, Constraints, class_scores
from .errors import NasError
from .study import url_for
from .summary import format_checklist, format_table


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NasError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        except click.UsageError as err:  # a bad option or value: one line, not click's usage block
            where = err.ctx.command_path if err.ctx else ctx.command_path
            click.echo(f"error: {' '.join(err.format_message().split()).rstrip('.')}; see `{where} --help`", err=True)
            ctx.exit(2)
        except BrokenPipeError:  # the reader went away (`nas spaces | head`): nothing left to say to it
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except OSError as err:  # disk full, a folder that vanished or is read-only, ...
            what = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
            click.echo(f"error: {what}; check that the path exists, is writable and has space, then rerun", err=True)
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


def _data_dir_option(f):
    return click.option("--data-dir", envvar="NAS_DATA_DIR", type=click.Path(),
                        help="Local copy of the dataset (torchvision layout or image folder), or a file written "
                        "by nas.data.pack [env NAS_DATA_DIR].")(f)


def _storage_option(f, more: str = ""):
    return click.option("--storage", envvar="NAS_STORAGE",
                        help="Optuna storage URL: sqlite:///..., postgresql://..., journal:PATH [default: "
                        "sqlite:///RESULTS/studies.db; env NAS_STORAGE, which keeps a password out of `ps`]. "
                        + more)(f)


def _results_option(f):
    return click.option("--results", envvar="NAS_RESULTS", type=click.Path(file_okay=False),
                        help="Folder for studies.db and RESULTS/<study>/ (weights, specs, reports) "
                        "[default: runs; env NAS_RESULTS]. The shipped examples are in results.")(f)


def _data_options(f):
    f = _data_dir_option(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)
    f = click.option("--train-limit", type=click.IntRange(1), help="Train on this many random training images (quick looks).")(f)
    return f


def _confirm_options(f):
    f = click.option("--confirm", "confirm_top", default=3, show_default=True, type=click.IntRange(0),
                     help="Confirm this many designs at the end: the cheapest trained to the end whose validation "
                     "accuracy is within the noise of the target, each retrained on all training images over --seeds "
                     "seeds and tested once, stopping at its first seed below the target (0: skip).")(f)
    f = click.option("--seeds", type=click.IntRange(1, 20), help="Confirmation seeds [default: the task's, 3].")(f)
    return f


def _finite(value, option: str):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds; give a finite number such as 3600",
                                 param_hint=option)
    return value


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
    if class_scores(a) is None:  # a classifier's output, whatever the constraints: [10, 3, 3] is no answer
        click.echo(f"outputs one score per class ✗ (output {list(a.out_shape)}: end with a conv whose output is "
                   "1x1, or with gap and flatten)")
        failed.append(None)
        results.append(None)
    if failed:
        click.echo(f"{len(failed)} of {len(results)} constraints fail", err=True)
        sys.exit(1)


# Commands of later stages are registered below this line.


@main.command("export")
@click.argument("design", required=False)
@click.option("--study", help="Study to export a trial from (needed when the storage holds several).")
@_storage_option
@_results_option
@click.option("--trial", default="best", show_default=True, metavar="N|best",
              help="A search trial's number, or the study's best design: the cheapest confirmed to meet the target.")
@click.option("--weights", type=click.Path(dir_okay=False), help="state_dict .pt for DESIGN (e.g. from nas reproduce).")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Output folder [default: export/NAME].")
@_constraint_options
def export(design, study, storage, results, trial, weights, out, **limits) -> None:
    """Write a standalone model.py (needs only torch), weights.pt and spec.yaml.

    Exports DESIGN (untrained, or with --weights), or else a trial trained in a study. Constraint
    options add a checklist to DESIGN's docstring; a study's trials get the study's constraints.

    Example: nas export seed001 -o export/seed001   (then: cd export/seed001 && python model.py)
    """
    from pathlib import Path

    from .export import UNTRAINED, export as write_export, from_design, from_study

    if design and (study or trial != "best"):
        raise NasError("give a DESIGN or --study/--trial, not both; --weights goes with DESIGN")
    if design:
        src = from_design(design, weights, _constraints(**limits))
    elif weights:
        raise NasError("--weights needs a DESIGN to load them into, e.g. nas export seed001 --weights FILE")
    else:
        src = from_study(study, url_for(storage, results), trial, results)
    # A name from a spec file may hold "/" or "..": the default folder stays inside export/.
    safe = "".join(c if c.isalnum() or c in "_-+=@" else "_" for c in src.name).strip("_") or "model"
    folder = write_export(src.spec, Path(out or Path("export") / safe), src.state_dict, src.constraints, src.meta)
    click.echo(f"wrote {folder}/model.py, weights.pt, spec.yaml ({src.meta.get('weights', UNTRAINED)})")


@main.command("spaces")
def list_spaces() -> None:
    """List the search spaces (files in search_spaces/)."""
    from .space import Space

    names = registry.spaces()
    width = max((len(name) for name in names), default=0) + 1
    for name in names:
        space = Space.load(name)
        task = space.task
        click.echo(f"{name:<{width}} {space.size:>8,} points  {task.dataset:<8} target {task.target:.2%} "
                   f"in {task.max_epochs} epochs  points: {', '.join(space.points) or '-'}")


@main.command("space")
@click.argument("name")
@click.option("--exact-limit", type=click.IntRange(0), default=20_000, show_default=True,
              help="Enumerate spaces up to this size; sample larger ones.")
@click.option("--samples", type=click.IntRange(1), default=4_000, show_default=True,
              help="Random points to check when sampling.")
@click.option("--search", "search_budget", type=click.IntRange(0), default=2_000, show_default=True,
              help="Points a greedy walk may check for a feasible one when no sample is feasible.")
@click.option("--seed", default=0, show_default=True)
def space_cmd(name, exact_limit, samples, search_budget, seed) -> None:
    """Check space NAME before any training: size, feasible candidates, params and RF ranges.

    Exits 1 when no candidate meeting every constraint was found, with a hint on what to change
    (a sampled space is not proven infeasible; the output says what came closest).
    """
    from .feasibility import feasibility
    from .space import Space

    space = Space.load(name)
    click.echo(f"{space.name}: {space.description}" if space.description else space.name)
    click.echo(f"task: {space.task.dataset}, target {space.task.target:.2%} within {space.task.max_epochs} epochs; "
               + (", ".join(space.task.constraints.names()) or "no constraints"))
    f = feasibility(space, exact_limit=exact_limit, samples=samples, seed=seed, search=search_budget)
    for line in f.lines():
        click.echo(line)
    if not f.any_feasible:
        sys.exit(1)


def _search_options(f):
    f = click.option("--study", help="Study name [default: the space's name].")(f)
    f = _storage_option(f, "Workers sharing one storage share the study.")
    f = _results_option(f)
    f = _data_options(f)
    f = click.option("--seed", default=0, show_default=True, help="Sampler, training and validation-split seed.")(f)
    f = click.option("--finish", is_flag=True, help="Train the whole schedule even after the validation target is met.")(f)
    f = _confirm_options(f)
    return f


def _quiet_optuna() -> None:
    """Optuna at ERROR until the command ends: nas prints its own line per trial."""
    import optuna

    from . import study as studies
    click.get_current_context().with_resource(studies.quiet(optuna.logging.ERROR))


def _run_search(cfg, jobs: int = 1) -> None:
    """The search (:func:`nas.search.execute`: ``jobs`` workers, then a last pass here), then its summary."""
    from . import trials
    from .search import describe, execute

    _quiet_optuna()
    import functools

    ends = cfg.deadline()  # the budget counts from the command's start (a worker's: its coordinator's)
    runs = (trials.confirm_study_name(cfg.name, cfg.train_limit), cfg.storage)
    outcome = execute(cfg, jobs, on_trial=functools.partial(_print_trial, ends=ends),
                      on_run=functools.partial(_print_run, runs=runs), signals=True)
    if cfg.quiet and jobs == 1:  # a worker of --jobs: the coordinator sums up
        sys.exit(130 if outcome.interrupted else 0)
    for line in describe(outcome, cfg):
        click.echo(line)
    if outcome.interrupted:
        _interrupted(cfg.name)


def _interrupted(name: str) -> None:
    click.echo(f"interrupted: every finished trial is saved; run the same command to resume study {name}", err=True)
    sys.exit(130)


def _print_trial(t, ends: float | None = None) -> None:
    """One line per trained candidate; ``ends``: when the search budget runs out (time.perf_counter())."""
    from . import trials

    r = trials.Record.of(t)
    status = r.status
    if status in ("rejected", "dominated", "duplicate"):  # counted in the summary: no training, no line
        return
    accs, stop = r.accuracies, r.rung_stop
    acc = f"val {accs[-1]:.4f} after {len(accs)} epochs" if accs else ""
    if stop:
        acc = f"val {stop[1]:.4f} after {stop[0]:,} images"
    if status == "stopped":
        acc += f" (forecast {r.predicted or 0:.4f})"
    first = r.first_try
    if first is not None:
        acc += f"  lr {r.lr:g} (trained again: {first['outcome']} at lr {first['lr']:g})"
    left = ""
    if ends is not None:
        import time
        from .search import budget_left

        left = f"  [{budget_left(ends - time.perf_counter())}]"
    click.echo(f"trial {t.number:>3} {status:<11} {r.params or 0:>7,} params  RF {r.rf or 0:>3}  {acc}"
               f"{'  ' + format(r.seconds, '.0f') + ' s' if r.seconds is not None else ''}{left}")


def _print_run(t, runs: tuple[str, str | None] | None = None) -> None:
    """One line per confirmation run; ``runs``: (study name, storage URL) of the runs, for the time left."""
    from . import trials

    r = trials.Run.of(t)
    if r.status not in ("confirmed", "nan"):
        return
    left = ""
    if runs is not None:
        from . import study as studies

        seconds = trials.confirm_left(studies.load_runs(*runs))
        if seconds:
            left = f"  [at most {max(1, round(seconds / 60))} min of confirmation left]"
    click.echo(f"confirm {r.source:<12} seed {r.seed}  {r.figures.get('params', 0):>7,} params  "
               f"test {r.accuracy:.4f} after {r.epochs} epochs  {r.seconds or 0:.0f} s{left}")


@main.command()
@click.option("--space", "space_name", required=True, help="Search space name (see `nas spaces`) or file.")
@click.option("--trials", type=click.IntRange(1),
              help="Trained candidates the study should hold (rejected ones do not count) [default: no limit when "
              "the task has a time budget (search_minutes), else 20].")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), callback=lambda ctx, param, v: _finite(v, "--timeout"),
              help="Stop starting new trials after S seconds [default: the task's search_minutes].")
@click.option("--enqueue", multiple=True, metavar="DESIGN", help="Train a documented design (or params file) first.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), envvar="NAS_JOBS",
              help="Worker processes on this machine sharing the study, each with its share of the CPU threads "
              "[default: 2 on a CPU with 2 or more cores (measured faster than 1), 1 on a GPU; env NAS_JOBS].")
@click.option("--halving", type=click.IntRange(0, 16), default=3, show_default=True,
              help="Score candidates on validation at rungs of training images seen (the schedule / N, / N^2, ...) "
              "as well as after each epoch, and stop those whose forecast end misses the target (0: epochs only).")
@click.option("--worker", is_flag=True, hidden=True, help="Run as one of --jobs workers: no summary.")
@_search_options
def search(space_name, trials, timeout, enqueue, study, storage, results, data_dir, device, train_limit, seed,
           finish, confirm_top, seeds, jobs, halving, worker) -> None:
    """Search SPACE: check every candidate analytically, train the valid ones, confirm the cheapest.

    Candidates train the schedule that confirms, on the training images less a validation split,
    and stop early only when their forecast end misses the target; no net is proposed twice, and
    once one reaches the target only cheaper ones are. At the end (the time budget, --trials, or the
    space covered) the cheapest ones whose validation accuracy is within noise of the target are
    retrained on every training image over several seeds and tested once (--confirm), a design
    stopping at its first seed below the target. Running the same command again resumes the study.
    Ctrl-C stops after the current epoch. Any number of workers started with the same command and a
    shared --storage share one study.

    Example: nas search --space mnist_squeeze --data-dir ../shared/data
    """
    from .search import SearchConfig, started_here
    from .space import Space

    cfg = SearchConfig(Space.load(space_name), study, url_for(storage, results), trials, timeout, seed, finish,
                       tuple(enqueue), data_dir=data_dir, device=device, train_limit=train_limit,
                       confirm=confirm_top, seeds=seeds, halving=halving, quiet=worker,
                       started=started_here() if worker else None, **_results(results))
    if worker:
        jobs = 1  # a worker never starts workers of its own (NAS_JOBS may still be set around it)
    elif jobs is None:
        from .jobs import default_jobs
        from .train import pick_device
        jobs = default_jobs(pick_device(device).type)
    _run_search(cfg, jobs)


def _results(results) -> dict:
    from pathlib import Path

    return {"results": Path(results)} if results else {}


@main.command("confirm")
@click.option("--study", help="Study name (needed when the storage holds several).")
@_storage_option
@_results_option
@_data_options
@_confirm_options
def confirm_cmd(study, storage, results, data_dir, device, train_limit, confirm_top, seeds) -> None:
    """Confirm a study's chosen designs: retrain on every training image over several seeds, test once.

    The designs are the cheapest trained to the end whose validation accuracy is within the noise
    of the target, up to --confirm of them, cheapest first. A design meets the target only when
    every seed's final test accuracy does, so it stops at its first seed below. Designs already
    decided count towards --confirm; runs already done are kept; running it again resumes, and
    several workers share the runs.

    Example: nas confirm --study mnist_squeeze --data-dir ../shared/data
    """
    from .search import confirm

    _quiet_optuna()
    import functools

    from . import trials
    runs = (trials.confirm_study_name(study, train_limit), url_for(storage, results)) if study else None
    done = confirm(study, storage=storage, results=results, data_dir=data_dir, device=device, train_limit=train_limit,
                   designs=confirm_top, seeds=seeds, on_run=functools.partial(_print_run, runs=runs), signals=True)
    for line in done.lines():
        click.echo(line)
    if done.interrupted:
        click.echo("interrupted: every finished run is saved; run the same command to resume", err=True)
        sys.exit(130)


@main.command()
@click.argument("design")
@click.option("--space", "space_name", help="Space whose task DESIGN is confirmed on [default: one that lists it].")
@click.option("--study", help="Study name [default: the space's name].")
@_storage_option
@_results_option
@_data_options
@click.option("--seeds", type=click.IntRange(1, 20), help="Confirmation seeds [default: the task's, 3].")
def reproduce(design, space_name, study, storage, results, data_dir, device, train_limit, seeds) -> None:
    """Confirm documented DESIGN on its space's task: every training image, several seeds, tested once.

    Prints e.g. "seed001: 18,666 params; 3/3 seeds >= 99.40%; test mean ..., min ..., max ...".
    The runs are stored with the space's study, so running it again resumes.

    Example: nas reproduce seed001 --data-dir ../shared/data
    """
    from .confirm import confirm
    from .search import SearchConfig, check_data, load_data, open_study
    from .space import Space

    space = Space.load(space_name) if space_name else _space_holding(design)
    registry.load_design(design)  # an unknown design fails before anything is created
    _quiet_optuna()
    cfg = SearchConfig(space, study, url_for(storage, results), data_dir=data_dir, device=device,
                       train_limit=train_limit, confirm=0, seeds=seeds, **_results(results))
    data = load_data(cfg)
    check_data(space, data)
    from . import study as studies
    studies.writable(studies.study_dir(cfg.name, cfg.results))
    import functools

    from . import trials
    runs = (trials.confirm_study_name(cfg.name, cfg.train_limit), cfg.storage)
    done = confirm(cfg, open_study(cfg), data, on_run=functools.partial(_print_run, runs=runs), designs=(design,))
    click.echo(done.lines()[0])
    c = done.found.get(done.asked[-1])
    click.echo(c.line(space.task.target, space.task.cost, name=design) if c else f"{design}: no seed finished")
    if done.interrupted:
        click.echo("interrupted: every finished run is saved; run the same command to resume", err=True)
        sys.exit(130)


def _space_holding(design: str):
    from .space import Space

    for name in registry.spaces():
        space = Space.load(name)
        if design in space.points:
            return space
    raise NasError(f"no search space lists design {design!r} under points:; pass --space NAME "
                   "(`nas spaces` shows which designs each holds)")


@main.command("train")
@click.argument("design")
@click.option("--dataset", help="mnist, fashion_mnist, cifar10 or an image folder [default: from the input shape].")
@_data_dir_option
@click.option("--epochs", type=click.IntRange(1), help="Epochs of the fixed schedule [default: TrainConfig's].")
@click.option("--target", type=click.FloatRange(0, 1), help="Test accuracy to report reaching, e.g. 0.994.")
@click.option("--stop-at-target", is_flag=True, help="End training at the first epoch that meets --target.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", default=0, show_default=True, help="Seed of the weights, batches and augmentation.")
@click.option("--batch-size", type=click.IntRange(1), help="Training batch size.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Peak learning rate of the one-cycle schedule.")
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option("--cutout", type=click.IntRange(0), help="Cutout square side in pixels (crop_flip policy).")
@click.option("--bf16/--no-bf16", default=None,
              help="bfloat16 autocast [default: only where the hardware does it natively: a bf16 GPU, a CPU with AMX].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (pays a compile first).")
@click.option("--train-limit", type=click.IntRange(1), help="Train on this many random training images (quick looks).")
@click.option("--save", type=click.Path(dir_okay=False), help="Write the trained state_dict here.")
def train_cmd(design, dataset, data_dir, epochs, target, stop_at_target, device, seed, batch_size, lr,
              no_augment, cutout, bf16, compile_, train_limit, save) -> None:
    """Train DESIGN once and print its test accuracy after each epoch.

    Example: nas train seed001 --data-dir ../shared/data --target 0.994
    """
    import time

    from .train import design_run

    if save:
        _writable_file(save)  # before training: weights that cannot be saved would be lost
    run = design_run(design, dataset, data_dir, device, train_limit, epochs=epochs, batch_size=batch_size, lr=lr,
                     cutout=cutout, seed=seed, target=target, stop_at_target=stop_at_target, augment=not no_augment,
                     bf16="auto" if bf16 is None else bf16, compile=compile_)
    a, data, config, model = run.analysis, run.data, run.config, run.model
    click.echo(f"{a.spec.name}: {a.params:,} params on {data.name} "
               f"({len(data.y_train):,} train / {len(data.y_eval):,} {data.eval_split} images), {config.epochs} epochs, "
               f"{config.device}")
    last = [time.perf_counter()]

    def on_epoch(epoch: int, acc: float) -> None:
        now = time.perf_counter()
        click.echo(f"epoch {epoch:>3}: test accuracy {acc:.4f}  ({now - last[0]:.1f}s)")
        last[0] = now

    last[0] = time.perf_counter()
    result = run.train(on_epoch=on_epoch)
    if target is not None:
        met = f"first met at epoch {result.target_epoch}" if result.target_epoch else "not met"
        click.echo(f"target {target}: {met}")
    click.echo(f"{result.status}: {result.message}; {result.seconds:.1f}s in all")
    if result.status == "nan":  # no weights kept: a diverged net's are not worth exporting
        click.echo(f"weights not saved to {save}: the run diverged; try a lower --lr" if save else
                   "the run diverged; try a lower --lr", err=True)
        sys.exit(1)
    if save:
        from .files import save_torch
        save_torch(save, model.state_dict(), "the weights", "free some space or pass another --save path")
        click.echo(f"weights saved to {save}")


def _writable_file(path: str) -> None:
    import os
    from pathlib import Path

    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise NasError(f"cannot save weights to {path}: folder {folder} does not exist; create it or pass another --save")
    if not os.access(folder, os.W_OK) or Path(path).is_dir():
        raise NasError(f"cannot save weights to {path}: not writable; pass another --save")


@main.command("report")
@click.option("--study", help="Study name (needed when the storage holds several).")
@_storage_option
@_results_option
@click.option("--all", "show_all", is_flag=True, help="Also list rejected candidates (trials.csv always has every trial).")
def report_cmd(study, storage, results, show_all) -> None:
    """Print a table of the study's trials and confirmations; write trials.csv, trials.md and PNG plots
    under RESULTS/<study>/.

    Example: nas report --study mnist_squeeze --results results   (the shipped example study)
    """
    from pathlib import Path

    from . import report as reporting
    from . import study as studies

    s = studies.load(study, url_for(storage, results))
    frame = reporting.trials_frame(s)
    paths = reporting.write(s, studies.study_dir(s.study_name, Path(results) if results else None), show_all, frame)
    click.echo(reporting.format_trials(frame if show_all else reporting.without_rejected(frame)))
    click.echo()
    for line in reporting.summary(s, frame):
        click.echo(line)
    for path in paths.values():
        click.echo(f"wrote {path}")
