"""``tunekit recommend``: hardware + model + goal/symptoms -> ranked recipes, with why and memory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tunekit.advise.goals import GOALS
from tunekit.cli.commands import bounds
from tunekit.core.errors import TunekitError, UsageError

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts, Recommendation, Result

TASKS = ("simple", "general", "reasoning", "code")


def hardware_options(func: Any) -> Any:
    for option in reversed([
        click.option("--vram", type=bounds.GB,
                     help="GPU memory per GPU in GB = 1e9 bytes (a \"24 GB\" card has 24 GiB = 25.77 GB; "
                     "--gpu NAME knows it) (default: detect)."),
        click.option("--gpus", type=bounds.GPUS, help="Number of GPUs."),
        click.option("--gpu", "gpu_name", help="GPU model, e.g. rtx-4090, a100-40gb, h100 (sets VRAM, bf16, fp8)."),
        click.option("--ram", type=bounds.GB, help="CPU RAM, GB (default: detect)."),
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
@click.option("--seq-len", type=bounds.TOKENS, help="Tokens per sequence (training or serving).")
@click.option("--batch", type=bounds.BATCH, default=1, show_default=True, help="Micro-batch / concurrent sequences.")
@click.option("--context", "context_target", type=bounds.TOKENS, help="Context the model must read (tokens).")
@click.option("--task", type=click.Choice(TASKS), default="general", show_default=True,
              help="With no --model: what the model is for (ranks code/reasoning-tuned models up).")
@click.option("--latency-ms", type=bounds.MILLISECONDS,
              help="Serving: slowest acceptable decode, ms per token (recipes slower than it are dropped; "
              "with no --model, reading speed, 200 ms, by default).")
@click.option("--method", type=click.Choice(["adapter", "full"]),
              help="Fine-tuning method wanted (full: every weight).")
@click.option("--engine", type=click.Choice(["hf", "vllm", "llama.cpp"]),
              help="Serving engine: only recipes it reads, its memory model (hf prefills the whole prompt) and "
              "its command line (default: whichever serves each recipe).")
@click.option("--data", help="Training data path to put into written fine-tuning recipes.")
@click.option("--top", type=bounds.TOP, default=5, show_default=True, help="How many recommendations.")
@click.option("--margin", type=bounds.MARGIN, default=0.1, show_default=True, help="VRAM fraction kept free.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {facts, recommendations}.")
@click.option("--explain", is_flag=True, help="Show every rule considered and every candidate dropped.")
@click.option("--write", "write_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each recommended recipe as YAML into this directory.")
@click.option("--list-symptoms", is_flag=True, help="Explain each symptom and exit.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the ranked candidates with their memory bars as one HTML page.")
@click.option("--measure", is_flag=True, help="Measure the top candidates on --model (a local folder): KL or "
              "passkey; re-rank by the measurement.")
@click.option("--budget-minutes", type=bounds.MINUTES, default=10.0, show_default=True,
              help="Time --measure may spend (cached measurements are free).")
def command(vram: float | None, gpus: int | None, gpu_name: str | None, ram: float | None, cpu_only: bool,
            model_name: str | None, params: str | None, goal: str, symptoms: tuple[str, ...], seq_len: int | None,
            batch: int, context_target: int | None, task: str, latency_ms: float | None, method: str | None,
            engine: str | None, data: str | None, top: int, margin: float, as_json: bool, explain: bool,
            write_dir: Path | None, list_symptoms: bool, html_file: Path | None, measure: bool,
            budget_minutes: float) -> None:
    """Recommend recipes for your hardware, model and goal (or symptoms), ranked, with reasons.

    With no --model (and no --params), rank the catalog's models that fit, each with its best recipe."""
    from tunekit.advise.hardware import resolve_hardware
    from tunekit.advise.rules import Facts, load_rules, recommend
    from tunekit.core.model_facts import resolve_model
    from tunekit.core.registry import get_registry

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
    if not model_name and not params:
        return rank(registry, rules, Facts(
            hardware=hardware, model=resolve_model("llama-3.1-8b"), goal=goal, symptoms=tuple(symptoms),
            seq_len=seq_len, batch=batch, context_target=context_target, margin=margin, data=data, method=method,
            engine=engine, latency_ms=latency_ms),
            task=task, top=top, as_json=as_json, write_dir=write_dir)
    arch = resolve_model(model_name, params=params, registry=registry)
    facts = Facts(hardware=hardware, model=arch, goal=goal, symptoms=tuple(symptoms), seq_len=seq_len, batch=batch,
                  context_target=context_target, margin=margin, data=data, method=method, engine=engine,
                  latency_ms=latency_ms)
    result = recommend(facts, rules, registry, top=top)
    measured = None
    if measure:
        from tunekit.run import measure_recipes  # torch: only with --measure

        if not model_name:
            raise UsageError("--measure needs --model: a local model folder")
        from tunekit.core.render import stdout_for_data

        with stdout_for_data():  # backends' banners (GPTQModel's) must not land in --json's stdout
            measured = measure_recipes.measure_and_rerank(result, Path(model_name).expanduser(), registry,
                                                          budget_minutes=budget_minutes, target=context_target,
                                                          log=lambda line: click.echo(line, err=True))
    written = write_recipes(result, write_dir) if write_dir else []
    if written and result.no_fit:
        name_written(result.no_fit, result.recommendations, written)
    if html_file is not None:
        from tunekit.cli.html_report import recommend_report

        html_file.write_text(recommend_report(result.to_dict()), encoding="utf-8")
    if as_json:
        from tunekit.core.render import echo_json

        payload = result.to_dict()
        if measured is not None:
            for rec in payload["recommendations"]:
                rec["measured"] = measured[rec["rank"]].to_dict()
        echo_json(payload)
        return
    from tunekit.cli.commands.recommend_render import render

    render(result, facts, explain=explain, written=written)
    if measured is not None:
        measure_recipes.render(result, measured, echo=click.echo)


def rank(registry: Any, rules: Any, base: Facts, *, task: str, top: int, as_json: bool,
         write_dir: Path | None) -> None:
    """No --model: rank the catalog (and plugin) models that fit, each with its best recipe."""
    from tunekit.advise.rules.models import rank_models
    from tunekit.core.model_facts import catalog_entries, load_catalog

    rows = {str(row["id"]): dict(row) for row in catalog_entries()}
    archs = list(load_catalog(registry).models.values())
    picks, left_out = rank_models(base, archs, rows, rules, registry, task=task, top=top)
    written = write_recipes([p.rec for p in picks], write_dir) if write_dir else []
    if as_json:
        from tunekit.core.render import echo_json

        echo_json({"facts": {"hardware": base.hardware.to_dict(), "goal": base.goal, "task": task,
                             "context_target": base.context_target, "latency_ms": base.latency_ms},
                   "models": [p.to_dict() for p in picks],
                   "left_out": [{"model": n, "why": w} for n, w in left_out]})
        return
    from tunekit.cli.commands.recommend_render import render_models

    render_models(picks, base, task=task, written=written)


def write_recipes(recs: Result | list[Recommendation], directory: Path) -> list[Path]:
    """Save each recommendation's recipe (only the keys it sets) as ``NN-name.yaml``.

    Nothing is written over a file that says something else: a recipe kept under version control and edited
    since an earlier ``--write`` would be lost, so the command stops (exit 2) naming the files, before it writes
    any. A file with the same text is left as it is (re-running is harmless), and each file is written whole
    (a temporary file renamed into place), so an interrupted write never leaves half a recipe."""
    import yaml

    from tunekit.advise.rules.engine import recipe_file

    texts = {}
    for index, rec in enumerate(recs.recommendations if not isinstance(recs, list) else recs):
        rec = replace(rec, rank=index + 1)
        header = f"# tunekit recommend: rank {rec.rank}, ~{rec.to_dict()['memory']['total_gb']} GB\n"
        texts[directory / recipe_file(rec)] = header + yaml.safe_dump(rec.recipe, sort_keys=False)
    try:
        differing = [path for path, text in texts.items() if path.exists() and _read(path) != text]
        if differing:
            names = ", ".join(path.name for path in differing)
            raise UsageError(f"--write {directory}: {names} already exist with other content; not overwriting "
                             "(move them away, or write to another directory)")
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            if not path.exists():
                temporary = path.with_name(f".{path.name}.tmp")
                temporary.write_text(text, encoding="utf-8")
                temporary.replace(path)
    except OSError as exc:  # /proc, a read-only or full disk, a parent that is a file
        raise TunekitError(f"--write {directory}: cannot write {exc.filename or directory}: "
                           f"{exc.strerror or exc}") from None
    return list(texts)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError):
        return None


def name_written(no_fit: dict[str, Any], recs: list[Recommendation], written: list[Path]) -> None:
    """The multi-GPU/offload commands name the recipe by the file ``--write`` wrote for it (its path)."""
    from tunekit.advise.rules.engine import recipe_file

    for rec, path in zip(recs, written, strict=False):
        if recipe_file(rec) == no_fit.get("recipe"):
            no_fit["commands"] = [line.replace(no_fit["recipe"], str(path)) for line in no_fit.get("commands", [])]
            no_fit["recipe"] = str(path)
            return
