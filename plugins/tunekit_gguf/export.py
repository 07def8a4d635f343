"""The ``gguf`` exporter's work: write, quantize with llama.cpp if needed, Modelfile, verify in llama.cpp."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.output_paths import inside
from tunekit_gguf.inspect import summarize
from tunekit_gguf.kquant import llama_cpp_available, quantize
from tunekit_gguf.modelfile import write_modelfile
from tunekit_gguf.types import LLAMACPP_PREFERRED, gguf_type
from tunekit_gguf.writer import write_gguf

if TYPE_CHECKING:
    from tunekit import StageContext
    from tunekit_gguf.plugin import GGUFParams


def _stem(ctx: StageContext) -> str:
    name = getattr(getattr(ctx, "recipe", None), "name", None) or "model"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-") or "model"


def _generation(model: Any) -> dict[str, Any]:
    config = getattr(model, "generation_config", None)
    if config is None:
        return {}
    values = config.to_diff_dict()
    values.setdefault("do_sample", bool(getattr(config, "do_sample", False)))
    return values


def _eval_ids(tokenizer: Any, ctx: StageContext) -> tuple[list[int], int, int | None] | None:
    """The run's held-out token ids, window and stride, tokenized by the HF tokenizer exactly as
    :func:`tunekit.run.evaluate.perplexity` does, or None when the run does not measure perplexity."""
    from tunekit.core.texts import eval_text

    evaluation = getattr(getattr(ctx, "recipe", None), "eval", None)
    if evaluation is None or not evaluation.perplexity:
        return None
    text = eval_text(evaluation.data)
    limit = evaluation.max_tokens
    ids = tokenizer(text if limit is None else text[: limit * 8], add_special_tokens=False)["input_ids"]
    return (ids if limit is None else ids[:limit]), evaluation.seq_len, evaluation.stride


def verify(path: Path, tokenizer: Any, ctx: StageContext) -> dict[str, Any]:
    """Load the GGUF in llama.cpp, generate a few tokens, and measure perplexity when text is known."""
    from tunekit.serve.llamacpp import generate, load, perplexity

    eval_data = _eval_ids(tokenizer, ctx)
    seq_len = eval_data[1] if eval_data else 256
    llm = load(path, n_ctx=max(seq_len, 64), logits_all=eval_data is not None)
    prompt = tokenizer("The weather today is", add_special_tokens=False)["input_ids"]
    gen = generate(llm, prompt, 16)
    out: dict[str, Any] = {"loads": True, "sample": gen["text"], "gen_tokens_per_s": gen["gen_tokens_per_s"]}
    if eval_data is not None:
        out.update(perplexity(llm, eval_data[0], seq_len, eval_data[2]))
        out["seq_len"] = seq_len
        hf = ctx.metrics.get("evaluate", {}).get("perplexity_after")
        if hf:
            out["vs_transformers"] = round(out["perplexity"] / hf - 1, 5)
    return out


def export_gguf(params: GGUFParams, model: Any, tokenizer: Any, out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    gtype = gguf_type(params.type)
    if callable(getattr(model, "merge_and_unload", None)):
        # A PEFT model: GGUF holds plain weights. The pipeline runs exporters after its own saves, so
        # merging in place changes nothing already written.
        model = model.merge_and_unload()
    stem = _stem(ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = inside(out_dir, params.filename or f"{stem}-{gtype.name.upper()}.gguf")
    via_llamacpp = not gtype.direct or (gtype.name in LLAMACPP_PREFERRED and llama_cpp_available())
    if via_llamacpp:
        f16 = inside(out_dir, f"{stem}-F16.gguf" if params.keep_f16 else f".{stem}-f16.tmp.gguf")
        report = write_gguf(model, tokenizer, f16, "f16", name=stem)
        try:
            kquant = quantize(f16, target, gtype.name)
            report.fallbacks.update(kquant.fallbacks)
        finally:
            if not params.keep_f16:
                f16.unlink(missing_ok=True)
    else:
        report = write_gguf(model, tokenizer, target, gtype.name, name=stem)
    facts = summarize(target)
    result: dict[str, Any] = {
        "path": target.name,
        "type": gtype.name,
        "encoder": "llama.cpp llama_model_quantize" if via_llamacpp else "gguf-py",
        "file_bytes": facts["file_bytes"],
        "bpw": facts["bpw"],
        "type_share": facts["type_share"],
        "fallbacks": report.fallbacks,
    }
    if params.modelfile:
        mf_name = "Modelfile" if not (out_dir / "Modelfile").exists() else f"Modelfile.{gtype.name.upper()}"
        num_ctx = params.num_ctx or min(int(model.config.max_position_embeddings), 8192)
        mf = write_modelfile(out_dir, target.name, _generation(model), num_ctx,
                             getattr(tokenizer, "chat_template", None), filename=mf_name)
        result["modelfile"] = mf.name
    if params.verify and llama_cpp_available():
        result["llamacpp"] = verify(target, tokenizer, ctx)
    ctx.log(f"gguf: wrote {target.name} ({facts['file_bytes'] / 1e6:.1f} MB, {facts['bpw']} bpw)")
    if report.fallbacks:
        ctx.log(f"gguf: {len(report.fallbacks)} tensors written as another type than {gtype.name} (rows not a "
                "multiple of the block); metrics.json export.gguf fallbacks lists them")
    return result
