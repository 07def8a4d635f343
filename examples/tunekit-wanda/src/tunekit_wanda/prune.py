"""Wanda itself: activation norms through forward hooks, then per-row (or N:M) masks applied in place.

One calibration pass collects, for every targeted linear layer, ``||X_j||_2`` of each input feature j
over all calibration tokens (a forward pre-hook sums squares; nothing else is kept, so memory is one
vector per layer). Scores are ``|W| * ||X||`` broadcast over rows. The paper prunes layer by layer,
feeding each block the already-pruned output of the previous one; one pass over the dense model is the
cheaper variant (same norms for the first block, close for the rest) and is what this plugin does.
Zeros are written into the weights directly, so nothing is left to make permanent before saving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunekit import UsageError, calibration_windows

if TYPE_CHECKING:
    from tunekit import StageContext
    from tunekit_wanda.plugin import WandaParams


def target_linears(model: nn.Module, names: tuple[str, ...]) -> dict[str, nn.Linear]:
    """The decoder's linear layers whose last name component is one of ``names`` (never the lm_head)."""
    found = {name: module for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in names}
    if not found:
        raise UsageError(f"wanda: the model has no linear layer named {list(names)} "
                         f"(is it a Llama-style decoder? got {type(model).__name__})")
    return found


def _tokenizer(ctx: StageContext) -> Any:
    if ctx.tokenizer is not None:
        return ctx.tokenizer
    if ctx.model_path is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(ctx.model_path))
    raise UsageError("wanda needs the model's tokenizer to read calibration text (none in this run)")


@torch.no_grad()
def input_norms(model: nn.Module, layers: dict[str, nn.Linear], windows: list[list[int]]) -> dict[str, torch.Tensor]:
    """``||X_j||_2`` over every calibration token, per input feature j, for each layer."""
    sums = {name: torch.zeros(layer.in_features, dtype=torch.float64) for name, layer in layers.items()}

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[name] += (x * x).sum(dim=0).cpu()
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(name)) for name, layer in layers.items()]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for window in windows:
            model(input_ids=torch.tensor([window], device=device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: total.sqrt().float() for name, total in sums.items()}


def wanda_mask(weight: torch.Tensor, norms: torch.Tensor, sparsity: float,
               n_m: tuple[int, int] | None = None) -> torch.Tensor:
    """Boolean mask of the weights to zero: the lowest ``|W| * norm`` per output row (or per M-block)."""
    score = weight.detach().abs().float() * norms.to(weight.device).float().unsqueeze(0)
    rows, cols = score.shape
    mask = torch.zeros_like(score, dtype=torch.bool)
    if n_m is not None:
        n, m = n_m
        if cols % m:
            raise UsageError(f"wanda: pattern {n}:{m} needs input widths divisible by {m}, got {cols}")
        blocks = score.reshape(rows, cols // m, m)
        lowest = torch.topk(blocks, n, dim=-1, largest=False).indices
        return mask.reshape(rows, cols // m, m).scatter_(-1, lowest, True).reshape(rows, cols)
    k = int(cols * sparsity)
    if k:
        lowest = torch.topk(score, k, dim=1, largest=False).indices
        mask.scatter_(1, lowest, True)
    return mask


def prune_model(model: nn.Module, params: WandaParams, ctx: StageContext) -> dict[str, Any]:
    """Prune every targeted linear of ``model`` in place; return per-layer and overall sparsity."""
    layers = target_linears(model, params.target_names())
    n_m = params.n_m()
    if n_m is not None:
        for name, layer in layers.items():
            if layer.in_features % n_m[1]:
                raise UsageError(f"wanda: pattern {params.pattern} needs input widths divisible by {n_m[1]}; "
                                 f"{name} has {layer.in_features}")
    windows = calibration_windows(_tokenizer(ctx), params.calibration, ctx)
    norms = input_norms(model, layers, windows)
    sparsity = n_m[0] / n_m[1] if n_m else params.sparsity
    per_layer: dict[str, float] = {}
    zeros = total = 0
    with torch.no_grad():
        for name, layer in layers.items():
            mask = wanda_mask(layer.weight, norms[name], sparsity, n_m)
            layer.weight.masked_fill_(mask, 0.0)
            layer_zeros = int((layer.weight == 0).sum())
            per_layer[name] = round(layer_zeros / layer.weight.numel(), 4)
            zeros += layer_zeros
            total += layer.weight.numel()
    return {"pattern": params.pattern, "sparsity": round(zeros / total, 4), "pruned_layers": len(layers),
            "calibration_windows": len(windows), "calibration_tokens": sum(len(w) for w in windows),
            "per_layer": per_layer}
