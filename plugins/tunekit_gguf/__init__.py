"""tunekit's ``gguf`` exporter: GGUF files for llama.cpp, Ollama and LM Studio.

Registered through the ``tunekit`` entry point group like a third party's plugin. The declarations are
in :mod:`tunekit_gguf.plugin` (torch-free); the work is in :mod:`tunekit_gguf.export`.
"""

from __future__ import annotations

from tunekit import Exporter, hookimpl
from tunekit_gguf.plugin import GGUFExporter, GGUFParams, GGUFTypeName

__all__ = ["GGUFExporter", "GGUFParams", "GGUFTypeName"]


@hookimpl
def tunekit_exporters() -> list[type[Exporter]]:
    return [GGUFExporter]
