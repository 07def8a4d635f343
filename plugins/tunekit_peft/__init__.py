"""tunekit's PEFT adapters: lora, dora, lora-plus, lora-fa and vera (QLoRA on a k-bit base).

Registered through the ``tunekit`` entry point group like a third party's plugin. This module and
``plugin`` (the declarations) stay torch-free; ``build`` (PEFT, torch) is imported only when an adapter
is applied.
"""

from __future__ import annotations

from tunekit import Adapter, hookimpl
from tunekit_peft.plugin import ADAPTERS, AdapterParams, Dora, Lora, LoraFA, LoraPlus, PeftAdapter, Vera

__all__ = ["ADAPTERS", "AdapterParams", "Dora", "Lora", "LoraFA", "LoraPlus", "PeftAdapter", "Vera"]


@hookimpl
def tunekit_adapters() -> list[type[Adapter]]:
    return list(ADAPTERS)
