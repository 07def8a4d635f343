"""What a bitsandbytes-loaded model needs before it is evaluated and saved on CPU.

bitsandbytes 0.50 repacks a ``Linear4bit``'s weight into an AVX512-BF16 layout on its first eval
forward when the CPU supports it; a later ``save_pretrained`` then writes the repacked bytes under
the original quant state and the reloaded model is garbage. Turning the flag off on every layer
keeps the stored layout the portable one (the repack is only a speed-up).
"""

from __future__ import annotations

from typing import Any

from tunekit import PluginError


def prepare_loaded(model: Any) -> dict[str, Any]:
    """Disable the CPU repack on every 4-bit layer and check the model really is quantized."""
    import bitsandbytes as bnb

    four = eight = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            four += 1
        elif isinstance(module, bnb.nn.Linear8bitLt):
            eight += 1
    if not four and not eight:
        raise PluginError("bitsandbytes: the loaded model has no quantized layer; was it loaded with the "
                          "quantizer's load_kwargs (quantization_config)?")
    return {"quantized_layers": four or eight, "bnb_bits": 4 if four else 8}
