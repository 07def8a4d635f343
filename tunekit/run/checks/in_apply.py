"""The cheap checks ``tunekit apply`` runs by default (``eval.check: true``) into metrics.json and the card.

Cheap means no generation: KL divergence and top-1 agreement on two held-out windows, against logits
of the model as loaded (captured right after the load stage, before any other stage changes it), and
the static EOS/template checks on the final tokenizer and generation config. An on-load quantizer
(bnb NF4/int8) has already run at load time, so its own effect is not in that KL; ``tunekit check
OUTPUT --base BASE`` measures it, and also runs the generation and passkey checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunekit.run.checks import eos, kl, verdicts

if TYPE_CHECKING:
    from tunekit.core.context import StageContext

WINDOWS = 2


def capture_reference(model: Any, ctx: StageContext) -> None:
    """Keep the loaded model's logits on the held-out windows for the KL at the end."""
    from tunekit.core.texts import eval_text

    ev = ctx.recipe.eval
    text = eval_text(ev.data)
    ids: list[int] = ctx.tokenizer(text[: WINDOWS * ev.seq_len * 8], add_special_tokens=False)["input_ids"]
    windows = kl.windows_of(ids, ev.seq_len, WINDOWS)
    ctx.run.check_reference = (windows, [kl.logits_of(model, w) for w in windows])


def stage_check(plugin: Any, model: Any, ctx: StageContext) -> Any:
    """Record ``metrics["check"]``: ``kl_divergence`` and ``eos``, each with its verdict."""
    reference, ctx.run.check_reference = ctx.run.check_reference, None
    recipe = ctx.recipe
    results: dict[str, Any] = {}
    if reference is not None:
        windows, logits = reference
        d = kl.divergence_from(logits, model, windows)
        result = {"kl_divergence": round(d.kl_divergence, 6), "top1_agreement": round(d.top1_agreement, 4),
                  "perplexity": {"base": round(d.perplexity_base, 4), "tuned": round(d.perplexity_tuned, 4)},
                  "tokens": d.tokens}
        results["kl_divergence"] = verdicts.kl_verdict(result, trained=recipe.train is not None,
                                                       quantized=recipe.quantizer is not None)
    problems = eos.template_problems(ctx.tokenizer, getattr(model, "generation_config", None))
    results["eos"] = verdicts.with_advice({"template_ok": not problems, "problems": problems},
                                          "fail" if problems else "ok", problems or ["template and EOS/pad ids agree"],
                                          verdicts.SYMPTOMS["eos"])
    ctx.record("check", **results)
    for name, result in results.items():
        ctx.log(f"check {name}: {result['verdict']} ({'; '.join(result['why'])})")
    return model
