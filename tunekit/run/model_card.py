"""The output's ``README.md``: what was done to which model, the measured numbers, and the caveats.

A Hugging Face model card (YAML front matter + Markdown) built from the resolved recipe and the run's
metrics, so a reader of the folder knows the perplexity cost and the warnings (e.g. "magnitude pruning
needs a healing fine-tune") without running anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from tunekit.core.kind_specs import KIND_SPECS

if TYPE_CHECKING:
    from tunekit.core.context import StageContext

SLOTS = tuple((spec.kind, spec.title) for spec in KIND_SPECS if spec.stage is not None)


def _params(stage: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in stage.items() if k not in ("kind", "method") and v is not None)


def render_card(ctx: StageContext, recipe: dict[str, Any]) -> str:
    metrics = ctx.metrics
    base = str(ctx.model_path) if ctx.model_path else "unknown"
    front = {"library_name": "peft" if recipe.get("adapter") else "transformers", "tags": ["tunekit"],
             "base_model_path": base}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {recipe.get('name', 'tunekit output')}", ""]
    if recipe.get("description"):
        lines += [str(recipe["description"]).strip(), ""]
    lines += [f"Made with `tunekit apply` from `{base}`.", "", "## Stages", "", "| stage | method | parameters |",
              "|---|---|---|"]
    for slot, title in SLOTS:
        stage = recipe.get(slot)
        if stage:
            lines.append(f"| {title} | {stage.get('method')} | {_params(stage)} |")
    if recipe.get("train"):
        lines.append(f"| Training | {recipe['train'].get('optimizer', '')} | "
                     f"max_steps={recipe['train'].get('max_steps')}, lr={recipe['train'].get('lr')} |")
    ev = metrics.get("evaluate", {})
    run = metrics.get("run", {})
    load = metrics.get("load", {})
    lines += ["", "## Measured", "", "| metric | value |", "|---|---|"]
    rows = [("perplexity before", ev.get("perplexity_before")), ("perplexity after", ev.get("perplexity_after")),
            ("evaluation tokens", ev.get("eval_tokens")), ("ROUGE-L", ev.get("rouge_l")), ("BLEU", ev.get("bleu")),
            ("size in memory before (MiB)", load.get("size_mb")),
            ("size in memory after (MiB)", run.get("size_mb_after")),
            ("output size (MiB)", metrics.get("export", {}).get("output_mb")),
            ("sparsity", metrics.get("prune", {}).get("sparsity")),
            ("context length", metrics.get("context", {}).get("max_position_embeddings")),
            ("run time (s)", run.get("seconds")), ("peak memory (MiB)", run.get("peak_memory_mb"))]
    gguf = metrics.get("export", {}).get("gguf")
    if isinstance(gguf, dict):  # the gguf exporter's own measurement, in llama.cpp itself
        llama = gguf.get("llamacpp") or {}
        rows += [("GGUF type", gguf.get("type")), ("GGUF bits per weight", gguf.get("bpw")),
                 ("GGUF perplexity in llama.cpp", llama.get("perplexity") if isinstance(llama, dict) else None)]
    lines += [f"| {name} | {value} |" for name, value in rows if value is not None]
    checks = metrics.get("check") or {}
    if checks:
        lines += ["", "## Checks", "", "| check | verdict | why |", "|---|---|---|"]
        lines += [f"| {name} | {r.get('verdict')} | {'; '.join(r.get('why', []))} |" for name, r in checks.items()]
        lines += ["", "All checks against the base: `tunekit check PATH`."]
    warnings = metrics.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    imports = ("from transformers import AutoModelForCausalLM, AutoTokenizer" if not recipe.get("adapter") else
               "from peft import AutoPeftModelForCausalLM as AutoModelForCausalLM\n"
               "from transformers import AutoTokenizer")
    lines += ["", "## Use", "", "```python", imports,
              'model = AutoModelForCausalLM.from_pretrained("PATH")',
              'tokenizer = AutoTokenizer.from_pretrained("PATH")', "```", "",
              "Or: `tunekit generate PATH --prompt \"...\"`. The resolved recipe is in `tunekit-recipe.yaml`, "
              "all numbers in `metrics.json`.", ""]
    return "\n".join(lines)
