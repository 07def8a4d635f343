"""Dynamic int8 quantization in torch: quantize, save the int8 state dict, rebuild and reload it.

The state dict of a dynamically quantized model holds packed int8 weights that only the quantized
modules accept, so reloading means: build the architecture from ``config.json``, quantize the same
layers the same way (which replaces them with empty int8 modules), then load the saved tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunekit.core.errors import UsageError
from tunekit.core.quantization import quantizable_linears

if TYPE_CHECKING:
    from tunekit_dynamic.plugin import DynamicInt8Params

STATE_FILE = "dynamic-int8.pt"


def _quantize_in_place(model: Any, names: list[str], params: DynamicInt8Params) -> None:
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if params.granularity == "channel" else default_dynamic_qconfig
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it is deprecated on every call; the plugin docs say so once.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        quantize_dynamic(model, dict.fromkeys(names, qconfig), dtype=torch.qint8, inplace=True)


@torch.no_grad()
def quantize_model(model: Any, params: DynamicInt8Params, *, log: Callable[[str], None] | None = None
                   ) -> dict[str, Any]:
    """Replace every linear layer not kept in float with a dynamic int8 one, in place."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise UsageError(f"dynamic-int8: its int8 kernels run on the CPU only; the model is on {device} "
                         "(load it without device_map, or use nf4/int8 from bnb on a GPU)")
    if model.dtype != torch.float32:
        # The dynamic int8 matmul takes fp32 activations; a bf16/fp16 model would fail at the first call.
        if log is not None:
            log(f"dynamic-int8: converting the {str(model.dtype).replace('torch.', '')} model to float32 "
                "(the int8 kernels take fp32 activations)")
        model.float()
    linears = quantizable_linears(model, params.keep_16bit)
    if not linears:
        raise UsageError("dynamic-int8: no linear layer left to quantize (keep_16bit matches all of them)")
    weights = sum(int(m.weight.numel()) for m in linears.values())
    _quantize_in_place(model, list(linears), params)
    return {"quantized_layers": len(linears), "quantized_weights": weights, "bits": 8,
            "granularity": params.granularity, "engine": torch.backends.quantized.engine}


def save_quantized(model: Any, out_dir: Path) -> None:
    """``config.json`` and the int8 state dict; the pipeline adds the tokenizer and the recipe."""
    out_dir = Path(out_dir)
    model.config.save_pretrained(out_dir)
    torch.save(model.state_dict(), out_dir / STATE_FILE)


def load_saved(folder: Path, params: DynamicInt8Params) -> Any:
    """The quantized model written by :func:`save_quantized`, rebuilt from ``config.json``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise UsageError(f"{folder}: no {STATE_FILE} (not a dynamic-int8 output)")
    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    _quantize_in_place(model, list(quantizable_linears(model, params.keep_16bit)), params)
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model
