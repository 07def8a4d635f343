"""``tunekit recommend``: hardware + model + goal/symptoms -> ranked recipes, with why and memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tunekit.errors import UsageError

if TYPE_CHECKING:
    from tunekit.rules.engine import Result

GOALS = ("finetune", "serve", "long-context", "compress")


def hardware_options(func: Any) -> Any:
    for option in reversed([
        click.option("--vram", type=float, help="GPU memory per GPU, GB (default: detect)."),
        click.option("--gpus", type=int, help="Number of GPUs."),
        click.option("--gpu", "gpu_name", help="GPU model, e.g. rtx-4090, a100-40gb, h100 (sets VRAM, bf16, fp8)."),
        click.option("--ram", type=float, help="CPU RAM, GB (default: detect)."),
        click.option("--cpu-only", is_flag=True, help="No GPU: plan for the CPU."),
    ]):
        func = option(func)
    return func


@click.command("recommend")
@hardware_options
@click.option("--model", "model_name", help="Catalog id or alias, HF id, local folder or config.json.")
@click.option("--params", help="Generic dense model of this size, e.g. 7B (when the model is not in the catalog).")
@click.option("--goal", type=click.Choice(GOALS), default="finetune", show_default=True)
@click.option("--symptom", "symptoms", multiple=True, help="What goes wrong (repeatable); see --list-symptoms.")
@click.option("--seq-len", type=int, help="Tokens per sequence (training or serving).")
@click.option("--batch", type=int, default=1, show_default=True, help="Micro-batch / concurrent sequences.")
@click.option("--context", "context_target", type=int, help="Target context length (long-context goal).")
@click.option("--data", help="Training data path to put into written fine-tuning recipes.")
@click.option("--top", type=int, default=5, show_default=True, help="How many recommendations.")
@click.option("--margin", type=float, default=0.1, show_default=True, help="VRAM fraction kept free.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {facts, recommendations}.")
@click.option("--explain", is_flag=True, help="Show every rule considered and every candidate dropped.")
@click.option("--write", "write_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each recommended recipe as YAML into this directory.")
@click.option("--list-symptoms", is_flag=True, help="Explain each symptom and exit.")
@click.option("--measure", is_flag=True, help="Measure the top candidates on --model (a local folder): KL or "
              "passkey; re-rank by the measurement.")
@click.option("--budget-minutes", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Time --measure may spend (cached measurements are free).")
def command(vram: float | None, gpus: int | None, gpu_name: str | None, ram: float | None, cpu_only: bool,
            model_name: str | None, params: str | None, goal: str, symptoms: tuple[str, ...], seq_len: int | None,
            batch: int, context_target: int | None, data: str | None, top: int, margin: float, as_json: bool,
            explain: bool, write_dir: Path | None, list_symptoms: bool, measure: bool, budget_minutes: float) -> None:
    """Recommend recipes for your hardware, model and goal (or symptoms), ranked, with reasons."""
    from tunekit.hardware import resolve_hardware
    from tunekit.model_facts import resolve_model
    from tunekit.plugins import get_registry
    from tunekit.rules import Facts, load_rules, recommend

    registry = get_registry()
    rules = load_rules(registry)
    known = {r.symptom: r.description for r in rules if r.symptom}
    if list_symptoms:
        for name, description in known.items():
            click.echo(f"{name:<26} {description}")
        return
    unknown = [s for s in symptoms if s not in known]
    if unknown:
        raise UsageError(f"unknown symptom {unknown[0]!r}; known: {', '.join(known)} (see --list-symptoms)")
    hardware = resolve_hardware(vram=vram, gpus=gpus, gpu=gpu_name, ram=ram, cpu_only=cpu_only)
    arch = resolve_model(model_name, params=params, registry=registry)
    facts = Facts(hardware=hardware, model=arch, goal=goal, symptoms=tuple(symptoms), seq_len=seq_len, batch=batch,
                  context_target=context_target, margin=margin, data=data)
    result = recommend(facts, rules, registry, top=top)
    measured = None
    if measure:
        from tunekit import measure as measuring  # torch: only with --measure

        if not model_name:
            raise UsageError("--measure needs --model: a local model folder")
        measured = measuring.measure_and_rerank(result, Path(model_name).expanduser(), registry,
                                                budget_minutes=budget_minutes, target=context_target,
                                                log=lambda line: click.echo(line, err=True))
    written = write_recipes(result, write_dir) if write_dir else []
    if as_json:
        from tunekit.render import echo_json

        payload = result.to_dict()
        if measured is not None:
            for rec in payload["recommendations"]:
                rec["measured"] = measured[rec["rank"]].to_dict()
        echo_json(payload)
        return
    from tunekit.commands.recommend_render import render

    render(result, facts, explain=explain, written=written)
    if measured is not None:
        measuring.render(result, measured, echo=click.echo)


def write_recipes(result: Result, directory: Path) -> list[Path]:
    """Save each recommendation's recipe (only the keys it sets) as ``NN-name.yaml``."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for rec in result.recommendations:
        path = directory / f"{rec.rank:02d}-{rec.recipe['name']}.yaml"
        header = f"# tunekit recommend: rank {rec.rank}, ~{rec.to_dict()['memory']['total_gb']} GB\n"
        path.write_text(header + yaml.safe_dump(rec.recipe, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths
