"""``tunekit launch``: run ``tunekit apply`` on several GPUs or machines through ``accelerate launch``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from tunekit.core.errors import UsageError
from tunekit.core.sharding import STRATEGIES


def option_values(args: list[str], *names: str) -> list[str]:
    """Values of an apply option in ``args`` (``--set a=1``, ``--set=a=1``, ``-o DIR``), in order."""
    values = []
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                values.append(args[index + 1])
            elif name.startswith("--") and arg.startswith(name + "="):
                values.append(arg[len(name) + 1:])
    return values


@click.command("launch")
@click.argument("recipe")
@click.argument("apply_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- APPLY OPTIONS]")
@click.option("--strategy", type=click.Choice([s for s in STRATEGIES if s != "none"]),
              help="Override distributed.strategy [recipe].")
@click.option("--gpus", type=click.IntRange(1, 1024), help="Processes (GPUs) per node [recipe: distributed.gpus].")
@click.option("--nodes", type=click.IntRange(1, 1024), help="Machines [recipe: distributed.nodes].")
@click.option("--node-rank", type=click.IntRange(0), default=0, show_default=True, help="This machine's rank.")
@click.option("--main-address", metavar="HOST", help="Host name or IP of node rank 0 (several nodes).")
@click.option("--main-port", type=click.IntRange(1, 65535), help="Rendezvous port [29500; a free one on one node].")
@click.option("--cpu", is_flag=True, help="DDP over gloo with CPU processes (machines without GPUs, tests).")
@click.option("--dry-run", is_flag=True, help="Write the config files and print the command; run nothing.")
def command(recipe: str, apply_args: tuple[str, ...], strategy: str | None, gpus: int | None, nodes: int | None,
            node_rank: int, main_address: str | None, main_port: int | None, cpu: bool, dry_run: bool) -> None:
    """Write accelerate (and DeepSpeed) configs from RECIPE's distributed section beside the output, print
    the `accelerate launch ... tunekit apply RECIPE` line, and run it. Options after `--` go to apply."""
    from tunekit.core.recipe import load_recipe
    from tunekit.run.distributed import check_deepspeed
    from tunekit.run.launch_config import plan_launch

    passed = list(apply_args)
    chosen = (("strategy", strategy), ("gpus", gpus), ("nodes", nodes))
    extra = [f"distributed.{key}={value}" for key, value in chosen if value]
    resolved = load_recipe(recipe, overrides=[*option_values(passed, "--set"), *extra])
    section = resolved.recipe.distributed
    if section.strategy == "none":
        raise UsageError(f"{recipe}: distributed.strategy is none, nothing to launch; choose one with "
                         "--strategy ddp|fsdp|zero2|zero3 (or run `tunekit apply` directly)")
    outputs = option_values(passed, "--output", "-o") or ([resolved.recipe.output.dir] if resolved.recipe.output.dir
                                                          else [])
    if not outputs:
        raise UsageError("tunekit launch needs the output directory: pass -- --output DIR (or set output.dir)")
    models = option_values(passed, "--model")
    plan = plan_launch(
        resolved.recipe, output=Path(outputs[-1]), model_path=models[-1] if models else resolved.recipe.model.path,
        apply_argv=["apply", recipe, *passed, *(f"--set={item}" for item in extra)],
        node_rank=node_rank, main_address=main_address, main_port=main_port, cpu=cpu)
    click.echo(f"accelerate config: {plan.config_file}")
    if plan.deepspeed_file is not None:
        click.echo(f"deepspeed config:  {plan.deepspeed_file}")
    if section.nodes > 1:
        click.echo(f"run on each of the {section.nodes} nodes with its own --node-rank (this is node {node_rank}):")
    click.echo(plan.command_line())
    if dry_run:
        return
    check_deepspeed(section.strategy)
    returncode = subprocess.run(plan.argv, env={**os.environ, **plan.env}).returncode
    if returncode:
        raise SystemExit(returncode)
