"""Text output of ``tunekit recommend``: the ranked table, notes, serving options, no-fit advice."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tunekit.core.render import terminal_width, text_table, wrap

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts, Recommendation, Result
    from tunekit.advise.rules.models import ModelPick


def bar(used_gb: float, budget_gb: float, width: int = 12) -> str:
    """``#######-----`` of the budget; ``!`` past it."""
    if budget_gb <= 0:
        return ""
    filled = min(width, round(width * used_gb / budget_gb))
    return "#" * filled + "-" * (width - filled) + ("!" if used_gb > budget_gb else "")


def render(result: Result, facts: Facts, *, explain: bool = False, written: list[Path] | None = None) -> None:
    from tunekit.advise.rules.serve import serve_lines

    out = Printer()
    hw, arch = facts.hardware, facts.model
    speeds = facts.goal != "finetune"  # the bandwidth a bare --vram assumed shapes only decode speeds
    out.print(f"hardware: {hw.describe(speeds)}   model: {arch.name} ({arch.param_count() / 1e9:.2f}B)   "
              f"goal: {facts.goal}"
              + (f"   symptoms: {', '.join(facts.symptoms)}" if facts.symptoms else ""))
    budget = facts.budget_gb()
    if result.recommendations:
        # 80 columns: the model is in the header line, so a row names the recipe without it, and the
        # memory column is the same figure the notes and the `needs ~` reason print
        rows = []
        for rec in result.recommendations:
            mem = rec.candidate.memory
            assert mem is not None
            specific = [r for r in rec.reasons if not r.startswith(("lever ", "needs ~"))]
            why = "; ".join((specific or rec.reasons)[:2])
            rows.append([str(rec.rank), rec.candidate.name, f"{mem.total_gb:.1f} {bar(mem.total_gb, budget, 6)}",
                         "yes" if rec.fits else "NO", why])
        out.table(["#", "recipe", f"GB of {round(budget, 1):g}", "fits", "why"], rows)
    for note in result.notes:
        out.print(f"note: {note}")
    if result.no_fit:
        nf = result.no_fit
        if nf.get("multi_gpu"):
            mg = nf["multi_gpu"]
            out.print(f"multi-GPU: {mg['gpus']} GPUs with {mg['strategy']} (~{mg['per_gpu_gb']} GB each):")
            for line in nf.get("commands", []):
                out.print(f"  {line}", soft_wrap=True)
        if nf.get("cpu_offload"):
            off = nf["cpu_offload"]
            out.print(f"offload: ~{off['per_gpu_gb']} GB GPU + {off['cpu_ram_gb']} GB CPU RAM ({off['how']})")
    if facts.goal in ("serve", "long-context"):
        for rec in [r for r in result.recommendations if r.candidate.method == "infer"][:3]:
            lines = serve_lines(facts, rec, facts.engine)
            out.print(f"serve #{rec.rank}:\n  " + "\n  ".join(lines), soft_wrap=True)
    if result.recommendations:
        first = result.recommendations[0]
        out.print("#1 because: " + "; ".join(first.reasons))
        if first.next:
            out.print("if not enough: " + "; ".join(first.next))
    for rec, path in zip(result.recommendations, written or [], strict=False):
        out.print(f"wrote {path}")
        if rec.rank == 1:
            out.print(f"run: {run_line(rec, str(path))}", soft_wrap=True)
    if result.recommendations and not written:
        first = result.recommendations[0]
        out.print(f"run: {run_line(first, None)}  (--write DIR saves the recipe)", soft_wrap=True)
    if explain:
        out.print("\nrules considered:")
        for item in result.trace:
            out.print(f"  [{'x' if item.fired else ' '}] {item.rule}: {item.detail}", soft_wrap=True)
        if result.below_top:
            out.print(f"ranked below the top {len(result.recommendations)}:")
            for name, why in result.below_top:
                out.print(f"  - {name}: {why}", soft_wrap=True)
        if result.dropped:
            out.print("candidates dropped:")
            for name, why in result.dropped:
                out.print(f"  - {name}: {why}", soft_wrap=True)


class Printer:
    """Plain text to stdout, prose wrapped at word boundaries to the terminal, commands (``soft_wrap``) as
    they are so they copy and run; no rich: ``tunekit recommend`` is a command people run to start."""

    def __init__(self) -> None:
        self.width = terminal_width()

    def print(self, text: str = "", *, soft_wrap: bool = False) -> None:
        click.echo(text if soft_wrap else wrap(text, self.width))

    def table(self, columns: list[str], rows: list[list[str]]) -> None:
        click.echo(text_table(columns, rows, width=self.width))


def run_line(rec: Recommendation, path: str | None) -> str:
    """The command that runs ``rec``'s recipe, as printed: ``tunekit launch`` (with what apply needs after
    ``--``) for a sharded one, ``tunekit apply`` otherwise."""
    from tunekit.advise.rules.engine import recipe_file
    from tunekit.advise.rules.serve import output_dir

    recipe = path or recipe_file(rec)
    out = output_dir(rec)
    dist = rec.recipe.get("distributed")
    if dist:
        return f"tunekit launch {recipe} --gpus {dist['gpus']} --strategy {dist['strategy']} -- --output {out}"
    return f"tunekit apply {recipe} --output {out}"


def render_models(picks: list[ModelPick], facts: Facts, *, task: str, written: list[Path]) -> None:
    """The model ranking: one row per model with its best recipe, then why each was chosen."""
    out = Printer()
    budget = facts.budget_gb()
    out.print(f"hardware: {facts.hardware.describe(facts.goal != 'finetune')}   goal: {facts.goal}   task: {task}"
              + (f"   context: {facts.context_target}" if facts.context_target else ""))
    if not picks:
        out.print("no catalog model fits: try --cpu-only for llama.cpp in RAM, or more GPUs (--gpus)")
        return
    serve = any(p.tokens_per_s for p in picks)
    # 80 columns: model and recipe names are never broken; what was traded wraps
    columns = ["#", "model", "recipe", f"GB/{round(budget, 1):g}", *(["tok/s"] if serve else []), "traded"]
    rows = []
    for index, pick in enumerate(picks, 1):
        mem = pick.rec.candidate.memory
        assert mem is not None
        speed = [f"~{pick.tokens_per_s:.0f}" if pick.tokens_per_s else "-"] if serve else []
        rows.append([str(index), pick.arch.name, pick.rec.candidate.name, f"{mem.total_gb:.1f}", *speed,
                     ", ".join(pick.traded)])
    out.table(columns, rows)
    for index, pick in enumerate(picks, 1):
        out.print(f"#{index} {pick.arch.name}: " + "; ".join([*pick.why, *pick.rec.reasons[2:4]]))
    for path in written:
        out.print(f"wrote {path}")
    first = picks[0]
    hw = facts.hardware
    where = (f" --gpu {hw.gpu}" if hw.gpu else f" --vram {hw.vram_gb:g}") if hw.gpus else " --cpu-only"
    where += f" --gpus {hw.gpus}" if hw.gpus > 1 else ""
    out.print(f"more: tunekit recommend --model {first.arch.name} --goal {facts.goal}{where}", soft_wrap=True)
