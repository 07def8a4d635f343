"""tunekit's PEFT adapters: lora, dora, lora-plus, lora-fa and vera (QLoRA on a k-bit base).

Registered through the ``tunekit`` entry point group like a third party's plugin. This module and
``adapters`` stay torch-free; ``build`` (PEFT, torch) is imported only when an adapter is applied.
"""

from __future__ import annotations

from tunekit import Adapter, hookimpl
from tunekit_peft.adapters import ADAPTERS


@hookimpl
def tunekit_adapters() -> list[type[Adapter]]:
    return list(ADAPTERS)
