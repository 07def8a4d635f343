"""Apply a RoPE extender to a loaded model: new ``rope_parameters``, rebuilt rotary embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunekit import UsageError

if TYPE_CHECKING:
    from tunekit import StageContext
    from tunekit_rope.plugin import RopeExtender


def rotary_modules(model: Any) -> list[tuple[str, Any]]:
    """``(qualified name, module)`` of every rotary embedding (one per model in transformers 5)."""
    return [(name, module) for name, module in model.named_modules()
            if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "inv_freq")]


def extend(plugin: RopeExtender, model: Any, ctx: StageContext) -> Any:
    from tunekit import ModelArch

    rotaries = rotary_modules(model)
    config = getattr(rotaries[0][1], "config", None) if rotaries else None
    rope = getattr(config, "rope_parameters", None) if config is not None else None
    kind = getattr(model.config, "model_type", type(model).__name__)
    if not rotaries or config is None or not isinstance(rope, dict):
        raise UsageError(f"context.{plugin.name}: a '{kind}' model has no rotary position embedding to extend")
    if "rope_type" not in rope and any(isinstance(v, dict) for v in rope.values()):
        raise UsageError(f"context.{plugin.name}: '{kind}' has per-layer RoPE settings, which tunekit does not extend")
    current = rope.get("rope_type", "default")
    if current not in ("default", None):
        raise UsageError(f"context.{plugin.name}: the model already uses '{current}' RoPE scaling; extend the "
                         "unscaled base model instead")
    theta = float(rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)
    original = int(config.max_position_embeddings)
    arch = ModelArch.from_hf_config(config.to_dict(), name=kind)
    factor = plugin.factor_for(arch)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    values = plugin.rope_parameters(factor, original, theta, head_dim)
    if "partial_rotary_factor" in rope:
        values["partial_rotary_factor"] = rope["partial_rotary_factor"]
    config.rope_parameters = values
    if plugin.changes_max_positions:
        config.max_position_embeddings = round(original * factor)
    window = getattr(plugin.params, "sliding_window", None)
    if window is not None:
        if not hasattr(config, "sliding_window"):
            raise UsageError(f"context.sliding_window: a '{kind}' model has no sliding-window attention")
        config.sliding_window = int(window)
        if hasattr(config, "use_sliding_window"):
            config.use_sliding_window = True
    scaling = 1.0
    for name, old in rotaries:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = type(old)(config=config).to(device=old.inv_freq.device)
        setattr(parent, attr, new)
        scaling = float(getattr(new, "attention_scaling", 1.0))
    if config is not model.config and hasattr(model.config, "max_position_embeddings"):
        model.config.max_position_embeddings = config.max_position_embeddings
    ctx.record("context", method=plugin.name, factor=round(factor, 4), original_context=original,
               max_position_embeddings=int(config.max_position_embeddings), target_context=int(original * factor),
               rope_theta=theta, attention_scaling=round(scaling, 4))
    ctx.log(f"context: {plugin.name} RoPE x{factor:g}: {original} -> {int(original * factor)} tokens")
    return model
