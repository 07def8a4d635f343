"""What a bitsandbytes-loaded model needs before its first forward on CPU.

bitsandbytes 0.50 repacks a ``Linear4bit``'s weight into an AVX512-BF16 layout on its first no-grad
eval forward when the CPU supports it. A repacked layer gives no gradient to its input (QLoRA then
trains nothing: every ``lora_B`` stays 0), computes in bf16 instead of the compute dtype, and its
inverse on save re-quantizes the block constants, so the saved model is not the one evaluated. The
switch must therefore be off on every layer before any forward: the pipeline's load stage calls
:func:`prepare_loaded` right after ``from_pretrained``. A layer found already repacked is refused,
since undoing the repack is lossy.
"""

from __future__ import annotations

from typing import Any

from tunekit import PluginError

CPU_KERNEL = "portable"
"""The kernel path tunekit measures with (fp32 dequantize + matmul), recorded in metrics.json; a plain
``from_pretrained`` on an AVX512-BF16 CPU takes the repacked bf16 path instead (logits differ ~1e-2)."""


def cpu_repack_available() -> bool:
    """Whether bitsandbytes would repack 4-bit layers on this CPU (its AVX512-BF16 kernel)."""
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def portable_kernels(model: Any) -> int:
    """Turn bitsandbytes' CPU repack off on every 4-bit layer; returns how many layers were switched.

    Refuses a model whose layers a forward already repacked (the switch no longer helps, and the
    inverse re-quantizes the block constants).
    """
    import bitsandbytes as bnb

    from tunekit.core.quantization import portable_cpu_kernels

    repacked = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)
                and getattr(getattr(module.weight, "quant_state", None), "packing_format_for_cpu", False)]
    if repacked:
        raise PluginError(f"bitsandbytes: {len(repacked)} 4-bit layers (first {repacked[0]}) were repacked for "
                          "AVX512-BF16 by a forward that ran before the quantizer's prepare_loaded; call it "
                          "right after from_pretrained, before any evaluation")
    portable_cpu_kernels(model)
    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def prepare_loaded(model: Any) -> dict[str, Any]:
    """Switch every 4-bit layer to the portable kernel and check the model really is quantized."""
    import bitsandbytes as bnb

    four = portable_kernels(model)
    eight = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
    if not four and not eight:
        raise PluginError("bitsandbytes: the loaded model has no quantized layer; was it loaded with the "
                          "quantizer's load_kwargs (quantization_config)?")
    facts: dict[str, Any] = {"quantized_layers": four or eight, "bnb_bits": 4 if four else 8}
    if four:
        facts["cpu_kernel"] = CPU_KERNEL
        facts["cpu_repack_available"] = cpu_repack_available()
    return facts
