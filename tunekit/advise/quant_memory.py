"""How a weight format stores a parameter in memory, and the one translation from a quantizer plugin to it.

``estimate --quant``, recipes and ``recommend`` all go through :func:`quant_spec_of`, so a plugin's declared
storage bits (a fake-quant RTN output stays 16-bit) count the same everywhere. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunekit.core.errors import UsageError


@dataclass(frozen=True)
class QuantSpec:
    """How a weight format stores a parameter: effective bits, and which modules stay 16-bit."""

    name: str
    bits: float
    kept_16bit: tuple[str, ...] = ("embed_tokens", "lm_head")
    trainable: bool = False  # can a LoRA train on top (QLoRA)

    @property
    def whole_file(self) -> bool:
        """GGUF bits/weight are measured over every tensor of a file, embeddings included."""
        return not self.kept_16bit


_GGUF = {  # ggml block structs; Q4_K_M is the published mixed-file average (llama.cpp quantize README)
    "Q2_K": 2.625, "Q3_K": 3.4375, "Q4_0": 4.5, "Q4_1": 5.0, "Q4_K": 4.5, "Q4_K_M": 4.894, "Q5_0": 5.5,
    "Q5_1": 6.0, "Q5_K": 5.5, "Q6_K": 6.5625, "Q8_0": 8.5, "F16": 16.0,
}
QUANTS: dict[str, QuantSpec] = {
    "fp32": QuantSpec("fp32", 32.0, ()),
    "bf16": QuantSpec("bf16", 16.0, ()),
    "fp8": QuantSpec("fp8", 8.0 + 32 / 4096),  # e4m3 weights + per-channel fp32 scale (vLLM/compressed-tensors)
    "int8": QuantSpec("int8", 8.0 + 16 / 4096, trainable=True),  # LLM.int8: int8 + fp16 row scale
    "nf4": QuantSpec("nf4", 4.127, trainable=True),  # QLoRA §3: 4 + 0.127 bits with double quantization
    "int4": QuantSpec("int4", 4.0 + 20 / 128),  # GPTQ/AWQ g128: fp16 scale + 4-bit zero per group
    "int3": QuantSpec("int3", 3.0 + 20 / 128),
    "int2": QuantSpec("int2", 2.0 + 20 / 64, trainable=True),  # 2-bit (HQQ/AQLM-style) g64, as LLaMA-Factory lists
    # BitNet b1.58: ternary {-1, 0, 1} weights, log2(3) bits (bitnet.cpp's I2_S packs 2); trained so, not rounded
    "ternary": QuantSpec("ternary", 1.58),
    **{f"gguf-{k.lower()}": QuantSpec(f"gguf-{k.lower()}", v, ()) for k, v in _GGUF.items()},
}


def quant_spec(name_or_bits: str | float | None) -> QuantSpec:
    """``nf4``, ``Q4_K_M`` / ``gguf-q4_k_m``, or a number of bits (16, 8, 4, 2)."""
    if name_or_bits is None:
        return QUANTS["bf16"]
    if isinstance(name_or_bits, (int, float)) or str(name_or_bits).replace(".", "", 1).isdigit():
        bits = float(name_or_bits)
        by_bits = {32.0: "fp32", 16.0: "bf16", 8.0: "int8", 4.0: "nf4", 3.0: "int3", 2.0: "int2", 1.58: "ternary"}
        if bits not in by_bits:
            raise UsageError(f"--bits must be one of 32, 16, 8, 4, 3, 2, 1.58 (got {name_or_bits})")
        return QUANTS[by_bits[bits]]
    key = str(name_or_bits).strip().lower()
    for candidate in (key, f"gguf-{key}"):
        if candidate in QUANTS:
            return QUANTS[candidate]
    known = ", ".join(list(QUANTS)[:8]) + ", and GGUF types " + ", ".join(_GGUF)
    raise UsageError(f"unknown quantization '{name_or_bits}' (known: {known}; or an installed quantizer)")


def memory_bits(quantizer: Any) -> float:
    """Bits a weight takes in memory: ``storage_bits_per_weight()`` when the plugin declares one (a
    fake-quant RTN output stays in the model's dtype), else ``bits_per_weight()``."""
    storage = getattr(quantizer, "storage_bits_per_weight", None)
    if callable(storage):
        try:
            return float(storage())
        except Exception:  # a plugin's optional declaration failing falls back to its bits
            pass
    return float(quantizer.bits_per_weight())


def quant_spec_of(quantizer: Any) -> QuantSpec:
    """The one translation from a quantizer plugin to its memory spec (``estimate --quant``, recipes, recommend)."""
    try:
        kept = tuple(quantizer.kept_16bit())
    except Exception:  # a plugin that cannot say keeps the usual two 16-bit
        kept = ("embed_tokens", "lm_head")
    return QuantSpec(quantizer.name, memory_bits(quantizer), kept, bool(quantizer.trainable))
