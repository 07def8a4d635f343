"""Builders for tests that need no download: a tiny Llama (or Qwen2/Mistral) from a config, its tokenizer.

One place builds them: tunekit's own tests, the contracts and third-party plugin tests all use these, so
a tiny model means the same widths everywhere. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import functools
import json
import math
import types
from pathlib import Path
from typing import Any

from tunekit.core.context import StageContext
from tunekit.core.kinds import Plugin

TINY_LLAMA: dict[str, Any] = dict(
    hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=512, max_position_embeddings=256, tie_word_embeddings=False,
    bos_token_id=0, eos_token_id=1, pad_token_id=2,
)
"""Widths are multiples of 128 so group size 128, bitsandbytes' CPU 4-bit path (multiples of 32) and
GPTQ-style kernels all accept them; untied embeddings so the ``lm_head`` is a linear of its own. Not
smaller: packed formats store a few hundred bytes of constants per tensor, which swamp the declared
bits per weight of 128-wide layers (nf4 measures 4.60 bits there instead of its 4.13)."""

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


FAMILIES = ("llama", "qwen2", "mistral")
"""Architectures ``build_tiny_model(family=...)`` builds with the same widths (all Llama-shaped decoders)."""


@functools.cache
def build_tokenizer() -> Any:
    """A 512-token byte-level BPE trained in well under a second on tunekit's shipped Austen text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunekit.core.resources import shipped_data_dir

    texts = []
    for line in (shipped_data_dir() / "austen_instruct.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            texts += [str(record.get(k, "")) for k in ("instruction", "input", "output")]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_LLAMA["vocab_size"], special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_tiny_model(seed: int = 0, *, family: str = "llama", **overrides: Any) -> Any:
    """A randomly initialised ~1.5M-parameter decoder (fp32, eval mode), built from a config.

    ``overrides`` are config fields (``hidden_size=128``, ``max_position_embeddings=64``,
    ``rope_parameters={...}``); ``family`` picks the config class among :data:`FAMILIES`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    torch.manual_seed(seed)
    config = AutoConfig.for_model(family, **{**TINY_LLAMA, **overrides})
    return AutoModelForCausalLM.from_config(config).eval()


def save_tiny_model(path: Path, seed: int = 0, *, family: str = "llama", **overrides: Any) -> Path:
    """Save a tiny model and the tiny tokenizer as a Hugging Face folder (what ``--model`` points at)."""
    build_tiny_model(seed, family=family, **overrides).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def make_context(model_path: Path | None = None, model: Any = None, **extra: Any) -> StageContext:
    """A StageContext like ``tunekit apply`` builds: empty recipe, the tiny tokenizer, the model's arch."""
    from tunekit.core.arch import ModelArch
    from tunekit.core.recipe_model import Recipe

    if "arch" in extra:
        arch = extra.pop("arch")
    elif model is not None:
        arch = ModelArch.from_hf_config(model.config.to_dict(), name="tiny")
    elif model_path is not None:
        arch = ModelArch.from_path(model_path)
    else:
        arch = None
    values: dict[str, Any] = {"recipe": Recipe.model_validate({}), "model_path": model_path, "arch": arch,
                              "tokenizer": build_tokenizer(), "log": lambda _msg: None}
    values.update(extra)
    return StageContext(**values)


def decoder_linears(model: Any) -> dict[str, Any]:
    """``name -> nn.Linear`` for the seven Llama decoder projections (what weight plugins target)."""
    from torch import nn

    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in LLAMA_LINEARS}


def saved_bits_per_weight(folder: Path, counts: dict[str, int]) -> float:
    """Bits the saved safetensors spend per weight of the given modules (every tensor under them counted)."""
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                if any(key.startswith(name + ".") for name in counts):
                    piece = handle.get_slice(key)
                    total += math.prod(piece.get_shape()) * _DTYPE_BYTES.get(piece.get_dtype(), 4)
    weights = sum(counts.values())
    if not weights:
        raise ValueError(f"{folder}: none of the modules counted")
    return 8 * total / weights


def registry_with(plugin_class: type[Plugin]) -> Any:
    """An in-process registry holding only ``plugin_class``, registered through its kind's hook."""
    from tunekit.core.hookspecs import hookimpl
    from tunekit.core.kind_specs import KIND_HOOKS
    from tunekit.core.registry import load_registry

    module = types.ModuleType(f"tunekit_contract_{plugin_class.name.replace('-', '_').replace('.', '_')}")
    hook_name = KIND_HOOKS[plugin_class.kind]

    def register() -> list[type[Plugin]]:
        return [plugin_class]

    register.__name__ = hook_name
    setattr(module, hook_name, hookimpl(register))
    return load_registry(entry_points=False, extra_modules=[module])

