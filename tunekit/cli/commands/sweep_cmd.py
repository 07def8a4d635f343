"""``tunekit sweep RECIPE --grid KEY=V1,V2 ...``: run every combination, print them ranked best first."""

from __future__ import annotations

from pathlib import Path

import click

from tunekit.core.render import console, echo_json, stdout_for_data, table


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@click.command("sweep")
@click.argument("recipe")
@click.option("--grid", "grid", multiple=True, required=True, metavar="KEY=V1,V2",
              help="A recipe key and the values to try, e.g. --grid adapter.r=8,16,32 (repeatable: the product).")
@click.option("--model", help="Local model folder (overrides the recipe's model.path).")
@click.option("--data", help="Training data file (when the recipe names none).")
@click.option("--output", type=click.Path(path_type=Path), default=Path("sweep-out"), show_default=True,
              help="Folder that receives one output folder per variant.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override applied to every variant.")
@click.option("--force", is_flag=True, help="Overwrite variant outputs that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the ranked rows as JSON.")
def command(recipe: str, grid: tuple[str, ...], model: str | None, data: str | None, output: Path,
            overrides: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Grid-search recipe keys (adapter rank, alpha, lr, ...) and rank the variants by held-out loss."""
    from tunekit.run.sweep import run_sweep

    log = (lambda _: None) if as_json else (lambda line: click.echo(line, err=True))
    with stdout_for_data() as stdout:
        rows = run_sweep(recipe, list(grid), output=output, model=model, data=data, overrides=list(overrides),
                         force=force, log=log)
    if as_json:
        echo_json([row.to_dict() for row in rows], stdout)
        return
    t = table(f"sweep of {recipe} (best first)",
              ["variant", "eval loss", "perplexity", "trainable", "time s", "peak MiB", "output"])
    for row in rows:
        t.add_row(row.label, _fmt(row.eval_loss, ".4f"), _fmt(row.perplexity, ".2f"),
                  _fmt(row.trainable_params, ","), _fmt(row.time_s, ".1f"), _fmt(row.peak_memory_mb, ".0f"),
                  f"error: {row.error}" if row.error else row.output)
    console().print(t)  # after the runs: the table alone on stdout
