"""Text output of ``tunekit recommend``: the ranked table, notes, serving options, no-fit advice."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunekit.rules.engine import Facts, Result


def bar(used_gb: float, budget_gb: float, width: int = 12) -> str:
    """``#######-----`` of the budget; ``!`` past it."""
    if budget_gb <= 0:
        return ""
    filled = min(width, round(width * used_gb / budget_gb))
    return "#" * filled + "-" * (width - filled) + ("!" if used_gb > budget_gb else "")


def render(result: Result, facts: Facts, *, explain: bool = False, written: list[Path] | None = None) -> None:
    from tunekit.render import console, table
    from tunekit.rules.serve import serve_options

    out = console()
    out.print = _plain(out.print)  # rule ids look like [markup]: print text as it is
    hw, arch = facts.hardware, facts.model
    out.print(f"hardware: {hw.describe()}   model: {arch.name} ({arch.param_count() / 1e9:.2f}B)   goal: {facts.goal}"
              + (f"   symptoms: {', '.join(facts.symptoms)}" if facts.symptoms else ""))
    budget = facts.budget_gb()
    if result.recommendations:
        t = table(None, ["#", "recipe", "method", f"memory vs {budget:.0f} GB", "fits", "why"])
        for rec in result.recommendations:
            mem = rec.candidate.memory
            assert mem is not None
            specific = [r for r in rec.reasons if not r.startswith(("lever ", "needs ~"))]
            why = "; ".join((specific or rec.reasons)[:2])
            t.add_row(str(rec.rank), rec.recipe["name"], rec.candidate.method,
                      f"{mem.total_gb:5.1f} {bar(mem.total_gb, budget)}", "yes" if rec.fits else "NO", why)
        out.print(t)
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
        for rec in result.recommendations[:3]:
            opts = serve_options(facts, rec)
            engines = [opts["llama_cpp"]] if rec.candidate.export or not facts.hardware.gpus else [
                opts["vllm"], opts["llama_cpp"]]  # vLLM serves GPUs; a GGUF is llama.cpp's file
            out.print(f"serve #{rec.rank}:\n  " + "\n  ".join(engines), soft_wrap=True)
    if result.recommendations:
        first = result.recommendations[0]
        out.print("#1 because: " + "; ".join(first.reasons))
        if first.next:
            out.print("if not enough: " + "; ".join(first.next))
    for path in written or []:
        out.print(f"wrote {path}")
    if explain:
        out.print("\nrules considered:")
        for item in result.trace:
            out.print(f"  [{'x' if item.fired else ' '}] {item.rule}: {item.detail}", soft_wrap=True)
        if result.dropped:
            out.print("candidates dropped:")
            for name, why in result.dropped:
                out.print(f"  - {name}: {why}", soft_wrap=True)


def _plain(print_: Any) -> Any:
    def wrapped(*objects: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        print_(*objects, **kwargs)

    return wrapped
