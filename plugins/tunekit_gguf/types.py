"""The GGUF file types tunekit writes, what each costs in bits, and who encodes it. Torch-free.

The ``direct`` types are encoded by the ``gguf`` package itself (the same reference code
``convert_hf_to_gguf.py`` uses). K-quants and i-quants are mixtures that llama.cpp decides per tensor
(``llama-quant.cpp``: Q4_K_M keeps half of ``attn_v``/``ffn_down`` at Q6_K, for example), so they go
through llama.cpp's own ``llama_model_quantize`` from an F16 file: never a home-made encoder.
Nominal bits per weight are those of the main block type (ggml block structs, docs/reference.md);
a real file's figure is measured from its tensors (:func:`tunekit_gguf.inspect.summarize`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GGUFType:
    name: str
    ftype: str
    """``LLAMA_FTYPE_*`` / ``gguf.LlamaFileType`` member name (without the ``LLAMA_FTYPE_`` prefix)."""
    bpw: float
    """Nominal bits per weight of the main block type."""
    direct: bool
    """Encoded by the ``gguf`` package (True) or by llama.cpp's quantizer (False)."""
    block: int
    """Block width the row length must be a multiple of (1 for float types)."""


_TYPES = (
    GGUFType("f32", "ALL_F32", 32.0, True, 1),
    GGUFType("f16", "MOSTLY_F16", 16.0, True, 1),
    GGUFType("bf16", "MOSTLY_BF16", 16.0, True, 1),
    GGUFType("q8_0", "MOSTLY_Q8_0", 8.5, True, 32),
    GGUFType("q4_0", "MOSTLY_Q4_0", 4.5, True, 32),
    GGUFType("q6_k", "MOSTLY_Q6_K", 6.5625, False, 256),
    GGUFType("q5_k_m", "MOSTLY_Q5_K_M", 5.5, False, 256),
    GGUFType("q5_k_s", "MOSTLY_Q5_K_S", 5.5, False, 256),
    GGUFType("q4_k_m", "MOSTLY_Q4_K_M", 4.5, False, 256),
    GGUFType("q4_k_s", "MOSTLY_Q4_K_S", 4.5, False, 256),
    GGUFType("iq4_xs", "MOSTLY_IQ4_XS", 4.25, False, 256),
    GGUFType("q3_k_l", "MOSTLY_Q3_K_L", 3.4375, False, 256),
    GGUFType("q3_k_m", "MOSTLY_Q3_K_M", 3.4375, False, 256),
    GGUFType("q3_k_s", "MOSTLY_Q3_K_S", 3.4375, False, 256),
    GGUFType("q2_k", "MOSTLY_Q2_K", 2.625, False, 256),
)
GGUF_TYPES: dict[str, GGUFType] = {t.name: t for t in _TYPES}
TYPE_NAMES = tuple(GGUF_TYPES)
FLOAT_TYPES = frozenset({"f32", "f16", "bf16"})
LLAMACPP_PREFERRED = frozenset({"q4_0"})
"""Direct types that still go through llama.cpp when it is installed: llama-quantize's Q4_0 keeps
``output.weight`` at Q6_K, so its file (and perplexity) is the one llama.cpp users compare against."""


def gguf_type(name: str) -> GGUFType:
    """Look a type up by any spelling (``Q4_K_M``, ``q4_k_m``, ``q4-k-m``)."""
    key = name.strip().lower().replace("-", "_")
    if key not in GGUF_TYPES:
        raise ValueError(f"unknown GGUF type '{name}' (known: {', '.join(TYPE_NAMES)})")
    return GGUF_TYPES[key]
