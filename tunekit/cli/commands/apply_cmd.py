"""``tunekit apply RECIPE`` (run a recipe on a model into an output folder) and ``tunekit generate``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tunekit.core.render import echo_json, stdout_for_data
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
        sys.exit(130)
    finally:
        interrupts.clear()
    if dry_run and not log_json and not quiet:
        click.echo("dry run: stopped before loading any weights", err=True)
    del result


@click.command("generate")
@click.argument("target", metavar="RECIPE_OR_OUTPUT")
@click.option("--prompt", "-p", required=True, help="The prompt (a chat template is applied when the model has one).")
@click.option("--model", help="Model folder for a recipe (default: model.path, else the shipped SmolLM2).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key (recipes only).")
@click.option("--max-new-tokens", type=click.IntRange(1, 100_000), help="Override the sampler's max_new_tokens.")
@click.option("--chat/--no-chat", default=None, help="Force the chat template on or off (default: when present).")
@click.option("--seed", type=int, help="Random seed for sampling.")
@click.option("--json", "as_json", is_flag=True, help="Print the completion with timing as JSON.")
def generate(target: str, prompt: str, model: str | None, overrides: tuple[str, ...], max_new_tokens: int | None,
             chat: bool | None, seed: int | None, as_json: bool) -> None:
    """Print a completion of --prompt from a `tunekit apply` output folder, or from a recipe's model and sampler."""
    from tunekit.run.generate import generate as run

    with stdout_for_data() as stdout:  # stdout is the completion alone, whatever a backend prints
        done = run(target, prompt, model=model, overrides=list(overrides), max_new_tokens=max_new_tokens, chat=chat,
                   seed=seed)
    if as_json:
        echo_json({"text": done.text, "new_tokens": done.new_tokens, "seconds": done.seconds, "source": done.source,
                   "generation_config": done.generation}, stdout)
    else:
        click.echo(done.text, file=stdout)


commands = [apply, generate]
