"""What the quantizer plugin tests share beyond :mod:`tunekit.testing`'s builders: logits, counts, configs.

Tiny models, the tokenizer, contexts and the saved-bits accounting come from ``tunekit.testing``
(``build_tiny_model``: widths that are multiples of 128, so group size 128, bitsandbytes' CPU 4-bit path
and GPTQModel's CPU kernels all accept them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tunekit.testing import build_tokenizer, decoder_linears

REPO = Path(__file__).resolve().parents[2]
PERSUASION = REPO / "tunekit" / "data" / "eval_austen_persuasion.txt"  # the shipped held-out text


def sample_ids(n: int = 48) -> torch.Tensor:
    text = "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition"
    ids = build_tokenizer()(text * 3)["input_ids"][:n]
    return torch.tensor([ids])


@torch.no_grad()
def logits(model: Any, ids: torch.Tensor | None = None) -> torch.Tensor:
    return model(ids if ids is not None else sample_ids()).logits.float()


def linear_weight_counts(model: Any) -> dict[str, int]:
    """Weights per decoder linear (what every plugin quantizes by default), for ``saved_bits_per_weight``."""
    return {name: int(m.in_features) * int(m.out_features) for name, m in decoder_linears(model).items()}


def quantization_config(folder: Path) -> dict[str, Any] | None:
    return json.loads((folder / "config.json").read_text()).get("quantization_config")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
