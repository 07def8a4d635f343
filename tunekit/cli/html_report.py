"""One self-contained HTML page for a run's output (``tunekit report``) or for ``recommend --html``.

Everything is inline (CSS and SVG from :mod:`tunekit.cli.svg_charts`), nothing is fetched, so the page
opens offline, from a CI artifact or an e-mail. The numbers come from the files the run wrote
(``metrics.json``, ``tunekit-recipe.yaml``, ``config.json``) and from the estimator, never a second
table of them. Torch-free.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import yaml

from tunekit.cli.svg_charts import COLORS, legend, line_chart, stacked_bar
from tunekit.core.errors import UsageError

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:900px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left}
pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:12px}
.legend{margin:6px 0}.key{margin-right:14px;font-size:13px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.candidate{margin:14px 0}.muted{color:#666;font-size:13px}
"""


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n")


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows) + "</table>"


def memory_section(breakdown_gb: dict[str, float], limit_gb: float | None, note: str) -> str:
    total = sum(breakdown_gb.values())
    vs = f" of {limit_gb:g} GB" if limit_gb else ""
    limit_text = "dashed line: the VRAM" if limit_gb else "no GPU memory given (--vram GB draws the limit)"
    return ("<h2>Memory</h2>"
            f'<p>Estimated peak: <b>{total:.2f} GB</b>{vs} per device. <span class="muted">{escape(note)}; '
            f"{limit_text}.</span></p>"
            + stacked_bar(breakdown_gb, limit=limit_gb, label=f"estimated {total:.2f} GB")
            + legend([k for k, v in breakdown_gb.items() if v > 0]))


# -- tunekit report OUTPUT -----------------------------------------------------------------------


def _read_output(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics_file, recipe_file = folder / "metrics.json", folder / "tunekit-recipe.yaml"
    if not metrics_file.is_file():
        raise UsageError(f"{folder}: no metrics.json (not a tunekit apply output)")
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{metrics_file}: invalid JSON: {exc}") from None
    recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) if recipe_file.is_file() else {}
    return metrics, recipe if isinstance(recipe, dict) else {}


def _model_config(folder: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    model = (recipe.get("model") or {}).get("path")
    for candidate in (folder / "config.json", folder / "merged" / "config.json",
                      Path(str(model)).expanduser() / "config.json" if model else None):
        if candidate is not None and candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
    return None


def estimate_for_output(folder: Path, recipe: dict[str, Any]) -> tuple[dict[str, float], str] | None:
    """The estimator's breakdown (GB) for the recipe the output was made with, on its own model config."""
    from tunekit.advise import estimate as est
    from tunekit.core.arch import ModelArch
    from tunekit.core.kinds import KINDS
    from tunekit.core.recipe import resolve_stages
    from tunekit.core.recipe_model import Recipe
    from tunekit.core.registry import get_registry

    config = _model_config(folder, recipe)
    if config is None:
        return None
    data = {k: v for k, v in recipe.items() if v is not None}
    for kind in KINDS:  # the written recipe describes each plugin with its kind: back to a recipe entry
        if isinstance(data.get(kind), dict):
            data[kind] = {k: v for k, v in data[kind].items() if k != "kind"}
    if isinstance(data.get("distributed"), dict):
        data["distributed"] = {k: v for k, v in data["distributed"].items() if k != "world_size"}
    try:
        resolved = resolve_stages(Recipe.model_validate(data), get_registry(), source=str(folder))
        arch = ModelArch.from_hf_config(config, name=folder.name)
        result = est.estimate(arch, est.setup_from_recipe(resolved, arch))
    except Exception as exc:  # a report still renders when the estimate cannot be made; it says why
        return {}, f"no estimate: {exc}"
    a = result.assumptions
    note = f"{a['method']}, {a['weights']} weights, seq {a['seq_len']}, batch {a['batch']} (tunekit estimate)"
    return {k: v / est.GB for k, v in result.breakdown.items()}, note


def output_report(folder: Path, *, vram_gb: float | None = None) -> str:
    """The HTML page for a ``tunekit apply`` output folder."""
    folder = Path(folder)
    metrics, recipe = _read_output(folder)
    evaluate, run, train = metrics.get("evaluate", {}), metrics.get("run", {}), metrics.get("train", {})
    rows: list[tuple[str, str]] = [("output", str(folder)), ("recipe", str(recipe.get("name") or "-"))]
    before, after = evaluate.get("perplexity_before"), evaluate.get("perplexity_after")
    if before is not None:
        rows.append(("perplexity before", f"{before:.3f}"))
    if after is not None:
        change = f" ({(after / before - 1) * 100:+.1f}%)" if before else ""
        rows.append(("perplexity after", f"{after:.3f}{change}"))
    if run.get("peak_memory_mb") is not None:
        rows.append(("measured peak memory", f"{run['peak_memory_mb']:.0f} MB"))
    if run.get("seconds") is not None:
        rows.append(("run time", f"{run['seconds']:.1f} s"))
    export = metrics.get("export", {})
    if export.get("output_mb") is not None:
        rows.append(("output size", f"{export['output_mb']:.1f} MB"))
    body = ["<h2>Summary</h2>", _table(rows)]
    found = estimate_for_output(folder, recipe)
    if found and found[0]:
        body.append(memory_section(found[0], vram_gb, found[1]))
    elif found:
        body.append(f'<h2>Memory</h2><p class="muted">{escape(found[1])}</p>')
    curves = {name: [(float(s), float(v)) for s, v in train.get(key) or []]
              for name, key in (("train loss", "loss_curve"), ("eval loss", "eval_curve"))}
    curves = {k: v for k, v in curves.items() if v}
    if curves:
        body.append("<h2>Loss</h2>" + line_chart(curves) + legend(list(curves)))
    checks = metrics.get("checks")
    if checks:
        body.append("<h2>Checks</h2><pre>" + escape(json.dumps(checks, indent=2, default=str)) + "</pre>")
    body.append("<h2>Recipe</h2><pre>" + escape(yaml.safe_dump(recipe, sort_keys=False)) + "</pre>")
    return page(f"tunekit report: {recipe.get('name') or folder.name}", "\n".join(body))


# -- tunekit recommend --html -------------------------------------------------------------------


def recommend_report(data: dict[str, Any]) -> str:
    """The HTML page for ``recommend``'s result (``Result.to_dict()``): ranked candidates, each a bar."""
    facts = data.get("facts", {})
    hardware, model = facts.get("hardware", {}), facts.get("model", {})
    budget = facts.get("budget_gb") or hardware.get("vram_gb") or None
    recs = data.get("recommendations", [])
    widest = max([sum(r["memory"]["breakdown"].values()) for r in recs] + [budget or 0.0])
    rows = [("model", f"{model.get('id', '?')} ({model.get('params_b', '?')}B)"), ("goal", str(facts.get("goal"))),
            ("memory budget", f"{budget:g} GB per device" if budget else "CPU only"),
            ("symptoms", ", ".join(facts.get("symptoms") or []) or "-")]
    body = ["<h2>Facts</h2>", _table(rows), "<h2>Ranked candidates</h2>",
            legend([k for k in COLORS if any(r["memory"]["breakdown"].get(k) for r in recs)])]
    for rec in recs:
        memory = rec["memory"]
        name = rec["recipe"].get("name", "?")
        fits = "fits" if rec.get("fits") else "does not fit"
        body.append(
            f'<div class="candidate"><b>{rec["rank"]}. {escape(name)}</b> '
            f'<span class="muted">~{memory["total_gb"]} GB ({memory["low_gb"]}-{memory["high_gb"]}), {fits}, '
            f'score {rec.get("score")}</span><br>'
            + stacked_bar(memory["breakdown"], limit=budget, scale_max=widest, label=f"{name} {memory['total_gb']} GB")
            + "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in rec.get("reasons", [])) + "</ul>"
            + "<pre>" + escape(yaml.safe_dump(rec["recipe"], sort_keys=False)) + "</pre></div>")
    return page(f"tunekit recommend: {model.get('id', '')} ({facts.get('goal')})", "\n".join(body))
