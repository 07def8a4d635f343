"""``tunekit estimate``: peak GPU memory of a recipe or a method, broken down, with inverse questions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from tunekit.cli.commands import bounds
from tunekit.core.errors import UsageError
from tunekit.core.sharding import STRATEGIES

METHODS = ("full", "lora", "qlora", "infer")


@click.command("estimate")
@click.argument("recipe", required=False)
@click.option("--model", "model_name", help="Catalog id or alias, HF id, local folder or config.json.")
@click.option("--params", help="Generic dense model of this size, e.g. 7B.")
@click.option("--method", type=click.Choice(METHODS), help="full | lora | qlora | infer (default: lora).")
@click.option("--bits", type=bounds.BITS, help="Weight bits: 16, 8, 4, 3, 2 (qlora default 4).")
@click.option("--quant", help="Weight format: nf4, int8, int4, fp8, a GGUF type (Q4_K_M...) or an installed quantizer.")
@click.option("--adapter", "adapter_name", help="Adapter plugin (lora, dora, vera...) whose trainable params to count.")
@click.option("--rank", "-r", "rank", type=bounds.RANK, help="Adapter rank, when the adapter plugin has an r param.")
@click.option("--seq-len", type=bounds.TOKENS, help="Tokens per sequence (default 2048 training, 4096 inference).")
@click.option("--batch", type=bounds.BATCH, help="Micro-batch (training) or concurrent sequences (inference).")
@click.option("--grad-ckpt/--no-grad-ckpt", default=None, help="Gradient checkpointing (default on).")
@click.option("--optimizer", type=click.Choice(["adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "sgd"]),
              help="paged-* keep AdamW state in memory the driver pages to the CPU (bitsandbytes).")
@click.option("--chunked-loss", is_flag=True, default=None,
              help="Chunked/fused cross-entropy (Liger, torchtune, Unsloth): no full fp32 logits.")
@click.option("--activation-offload", is_flag=True, default=None,
              help="Keep checkpointed activations in CPU RAM (Unsloth's offloaded gradient checkpointing).")
@click.option("--engine", type=click.Choice(["hf", "vllm", "llama.cpp"]),
              help="Inference engine: hf prefills the whole prompt; vllm/llama.cpp in chunks (default vllm).")
@click.option("--new-tokens", type=int, help="Inference: tokens generated after the prompt (KV cache holds both).")
@click.option("--attention", type=click.Choice(["sdpa", "eager"]), help="SDPA/flash (default) or eager.")
@click.option("--kv-bits", type=bounds.BITS, help="KV cache bits: 16, 8 (q8_0/fp8), 4.")
@click.option("--gpus", type=bounds.GPUS, help="GPUs to shard over.")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="Sharding.")
@click.option("--vram", type=bounds.GB,
              help="Budget per GPU in GB = 1e9 bytes (a \"24 GB\" card has 24 GiB = 25.77 GB), "
                   "for --max-seq-len/--max-batch/--smallest-quant.")
@click.option("--max-seq-len", "ask_seq", is_flag=True, help="Print the longest --seq-len that fits --vram.")
@click.option("--max-batch", "ask_batch", is_flag=True, help="Print the largest --batch that fits --vram.")
@click.option("--smallest-quant", "ask_quant", is_flag=True, help="Print the least quantization that fits --vram.")
@click.option("--list-models", is_flag=True, help="List the model catalog and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (GB = 1e9 bytes).")
def command(recipe: str | None, model_name: str | None, params: str | None, method: str | None, bits: float | None,
            quant: str | None, adapter_name: str | None, rank: int | None, seq_len: int | None, batch: int | None,
            grad_ckpt: bool | None, optimizer: str | None, chunked_loss: bool | None,
            activation_offload: bool | None, engine: str | None, new_tokens: int | None,
            attention: str | None, kv_bits: float | None, gpus: int | None, strategy: str | None,
            vram: float | None, ask_seq: bool, ask_batch: bool, ask_quant: bool, list_models: bool,
            as_json: bool) -> None:
    """Estimate peak GPU memory per GPU (weights, gradients, optimizer, activations, KV cache, CUDA context)."""
    from tunekit.advise import estimate as est
    from tunekit.advise import limits
    from tunekit.core.model_facts import load_catalog, resolve_model
    from tunekit.core.registry import get_registry

    registry = get_registry()
    if list_models:
        for arch in load_catalog(registry).models.values():
            click.echo(f"{arch.name:<32} {arch.param_count() / 1e9:8.2f}B  ctx {arch.max_context:>7}  "
                       f"{arch.aliases[0] if arch.aliases else ''}")
        return
    changes: dict[str, Any] = {"seq_len": seq_len, "batch": batch, "grad_ckpt": grad_ckpt, "optimizer": optimizer,
                               "attention": attention, "kv_bits": kv_bits, "gpus": gpus, "strategy": strategy,
                               "chunked_loss": chunked_loss, "activation_offload": activation_offload,
                               "engine": engine, "new_tokens": new_tokens}
    if recipe:
        from tunekit.core.recipe import load_recipe

        resolved = load_recipe(recipe, registry=registry)
        model = resolved.recipe.model
        arch = resolve_model(model_name or model.id or model.path, params=params, registry=registry)
        setup = est.setup_from_recipe(resolved, arch, **changes)
    else:
        arch = resolve_model(model_name, params=params, registry=registry)
        chosen = method or "lora"
        spec = _quant(quant if quant else bits if bits is not None else (4 if chosen == "qlora" else None), registry)
        defaults = {"seq_len": 4096 if chosen == "infer" else 2048}
        trainable = _trainable(adapter_name, rank, arch, registry) if chosen in ("lora", "qlora") else None
        setup = est.Setup(method=chosen, quant=spec, trainable_params=trainable)
        setup = replace(setup, **{**defaults, **{k: v for k, v in changes.items() if v is not None}})
    notes = list(getattr(arch, "guessed", ()))
    if setup.method != "infer" and setup.gpus > 1 and strategy is None and setup.strategy == "none":
        # several GPUs for training and no strategy: shard rather than silently replicate the model
        setup = replace(setup, strategy="fsdp")
        notes.append(f"--gpus {setup.gpus} without --strategy: assumed FSDP full_shard (--strategy ddp replicates)")
    result = est.estimate(arch, setup)
    data = result.to_dict()
    notes += [w for w in result.warnings if w not in notes]
    if notes:
        data["warnings"] = notes
        if not as_json:
            for note in notes:
                click.echo(f"warning: {note}", err=True)
    if ask_seq or ask_batch or ask_quant:
        if vram is None:
            raise UsageError("--max-seq-len, --max-batch and --smallest-quant need --vram GB (per GPU)")
        if ask_seq:
            data["max_seq_len"] = limits.max_seq_len(arch, setup, vram)
        if ask_batch:
            data["max_batch"] = limits.max_batch(arch, setup, vram)
        if ask_quant:
            found = limits.smallest_quant_that_fits(arch, setup, vram)
            data["smallest_quant"] = found.name if found else None
    if as_json:
        from tunekit.core.render import echo_json

        echo_json(data)
        return
    _print(data)


def _trainable(adapter: str | None, rank: int | None, arch: Any, registry: Any) -> int | None:
    """Trainable parameters an installed adapter plugin declares for ``arch`` (None: LoRA r16 all-linear)."""
    from tunekit.advise import estimate as est

    if adapter is None:
        return est.default_lora_params(arch, r=rank) if rank else None
    cls = registry.get("adapter", adapter)
    params = {"r": rank} if rank and "r" in cls.Params.model_fields else {}
    try:
        return int(cls(cls.Params.model_validate(params)).trainable_params(arch))
    except Exception as exc:  # a plugin's declaration failing is the user's to know, not a crash
        raise UsageError(f"adapter '{adapter}' cannot declare its trainable parameters: {exc}") from exc


def _quant(value: str | float | None, registry: Any) -> Any:
    """An installed quantizer plugin's declaration (what ``recommend`` uses too), else a known format or bits."""
    from tunekit.advise import estimate as est

    if isinstance(value, str) and value in registry.of("quantizer"):
        return est.quant_spec_of(registry.of("quantizer")[value]())
    return est.quant_spec(value)


def _print(data: dict[str, Any]) -> None:
    a = data["assumptions"]
    click.echo(f"{a['model']} ({a['params_b']}B), {a['method']}, weights {a['weights']} "
               f"({a['bits_per_weight']} bits), seq {a['seq_len']} x batch {a['batch']}, {a['gpus']} GPU(s) "
               f"{a['strategy']}")
    for key, value in data["breakdown"].items():
        click.echo(f"  {key:<12} {value:8.2f} GB")
    click.echo(f"  {'total':<12} {data['total_gb']:8.2f} GB per GPU  (band {data['low_gb']:.2f} - "
               f"{data['high_gb']:.2f}; GB = 1e9 bytes)")
    click.echo(f"  {'tensors':<12} {data['tensors_gb']:8.2f} GB (what torch.cuda.max_memory_allocated reports); "
               f"plan for {data['fits_gb']:.2f} GB (upper band)")
    for key in ("max_seq_len", "max_batch", "smallest_quant"):
        if key in data:
            click.echo(f"{key.replace('_', ' ')}: {data[key]}")
