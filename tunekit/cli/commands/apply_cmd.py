"""``tunekit apply RECIPE``: run a recipe on a model into an output folder."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tunekit.core.render import stdout_for_data
from tunekit.run import interrupts


@click.command("apply")
@click.argument("recipe")
@click.option("--model", help="Local Hugging Face model folder or .gguf file (default: model.path, else the "
              "shipped SmolLM2-135M-Instruct).")
@click.option("--data", help="Text for training, calibration and evaluation when the recipe names none.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output folder (default: output.dir).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set pruner.sparsity=0.3 (repeatable).")
@click.option("--force", is_flag=True, help="Replace an existing output (atomically).")
@click.option("--dry-run", is_flag=True, help="Print the plan and the checks, load nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or messages; errors only.")
@click.option("--log-json", is_flag=True, help="Plan, stage events, progress and the summary as JSON lines on stdout.")
@click.option("--resume", is_flag=True, help="Continue training from the newest checkpoint of an interrupted run.")
def apply(recipe: str, model: str | None, data: str | None, output: Path | None, overrides: tuple[str, ...],
          force: bool, dry_run: bool, quiet: bool, log_json: bool, resume: bool) -> None:
    """Run RECIPE (a file or a shipped name such as `demo`) and write a loadable model folder.

    Stages: load, context extension, pruning, quantization, adapter, training, evaluation, sampler,
    export. The output is written to a temporary folder beside --output and renamed at the end: an
    error or Ctrl-C leaves no partial output and an earlier output untouched.
    """
    from tunekit.run.pipeline import apply_recipe
    from tunekit.run.reporting import Reporter

    interrupts.install()
    try:
        with stdout_for_data() as stdout:
            reporter = Reporter(quiet=quiet, log_json=log_json, stream=stdout if log_json else None)
            result = apply_recipe(recipe, model=model, data=data, output=output, overrides=list(overrides),
                                  force=force, dry_run=dry_run, resume=resume, reporter=reporter)
    except KeyboardInterrupt:
        click.secho("interrupted: no output written (an earlier output is untouched)", fg="red", err=True)
        exit_interrupted()
    finally:
        interrupts.clear()
    if dry_run and not log_json and not quiet:
        click.echo("dry run: stopped before loading any weights", err=True)
    del result


def exit_interrupted() -> None:
    """Exit 130 (128 + SIGINT, what shells report for Ctrl-C) once the run has cleaned up.

    Why not ``sys.exit(130)``: measured here, about one run in two then died of SIGINT (-2) *after* the
    atexit handlers had run, during interpreter finalization, so a script checking for 130 saw a crash.
    The output is already removed and the lock released by then; atexit handlers still run, and only the
    finalization that re-delivered the signal is skipped.
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


commands = [apply]
