"""Round-to-nearest in torch: the same min/max quantizer GPTQ uses, without its error feedback.

Symmetric mode follows GPTQ's quantizer (scale = 2·max|w| / (2^b - 1), zero at the midpoint), so the
RTN-vs-GPTQ comparison changes only the rounding algorithm, not the grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from tunekit.core.quantization import check_model_group_size, quantizable_linears

if TYPE_CHECKING:
    from tunekit_rtn.plugin import RTNParams


def fake_quantize(weight: torch.Tensor, bits: int, sym: bool) -> torch.Tensor:
    """Quantize-dequantize each row of ``weight`` (rows are the groups) on a ``bits``-bit grid."""
    w = weight.float()
    maxq = 2**bits - 1
    wmin = w.amin(dim=1, keepdim=True).clamp(max=0)
    wmax = w.amax(dim=1, keepdim=True).clamp(min=0)
    if sym:
        wmax = torch.maximum(wmin.abs(), wmax)
        wmin = -wmax
    scale = (wmax - wmin) / maxq
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-wmin / scale)
    q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return (scale * (q - zero)).to(weight.dtype)


def quantize_weight(weight: torch.Tensor, params: RTNParams) -> torch.Tensor:
    """Fake-quantize one ``[out, in]`` weight at the requested granularity."""
    out_features, in_features = weight.shape
    if params.granularity == "tensor":
        return fake_quantize(weight.reshape(1, -1), params.bits, params.sym).reshape(out_features, in_features)
    if params.granularity == "channel":
        return fake_quantize(weight, params.bits, params.sym)
    g = params.group_size
    grouped = weight.reshape(out_features * (in_features // g), g)
    return fake_quantize(grouped, params.bits, params.sym).reshape(out_features, in_features)


@torch.no_grad()
def quantize_model(model: Any, params: RTNParams) -> dict[str, Any]:
    """Fake-quantize every linear layer not kept in 16-bit, in place; returns numbers for the report."""
    if params.granularity == "group":
        check_model_group_size(model, params.group_size, params.keep_16bit, "rtn")
    linears = quantizable_linears(model, params.keep_16bit)
    if not linears:
        from tunekit import UsageError

        raise UsageError("rtn: no linear layer left to quantize (keep_16bit matches all of them)")
    weights = 0
    for module in linears.values():
        module.weight.copy_(quantize_weight(module.weight.data, params))
        weights += module.weight.numel()
    return {"quantized_layers": len(linears), "quantized_weights": weights, "bits": params.bits,
            "granularity": params.granularity, "group_size": params.group_size, "sym": params.sym}
