"""``tunekit generate RECIPE_OR_OUTPUT --prompt ...``: a completion from an apply output or a recipe's model."""

from __future__ import annotations

import click

from tunekit.core.render import echo_json, stdout_for_data


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


commands = [generate]
