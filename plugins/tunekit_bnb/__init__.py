"""tunekit's bitsandbytes quantizers: ``nf4``, ``fp4`` (4-bit, QLoRA's base) and ``int8`` (LLM.int8()).

Quantize-on-load: the plugin returns a ``BitsAndBytesConfig`` for ``from_pretrained`` and, once the
model is loaded, ``apply`` fixes up the loaded layers (see ``tunekit_bnb.fixups``). This module is
torch-free; bitsandbytes and transformers are imported only inside methods.
"""

from __future__ import annotations

from tunekit import Quantizer, hookimpl
from tunekit_bnb.plugin import FP4Quantizer, Int8Quantizer, NF4Quantizer

__all__ = ["FP4Quantizer", "Int8Quantizer", "NF4Quantizer"]


@hookimpl
def tunekit_quantizers() -> list[type[Quantizer]]:
    return [NF4Quantizer, FP4Quantizer, Int8Quantizer]
