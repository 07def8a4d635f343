"""Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention"): can the model recall a number hidden
at some depth of a long, boring text? The standard quick test of a RoPE context extension.

Filler sentences repeat; the key sentence goes at ``depth`` (0 = start, 1 = end) of a prompt of about
``length`` tokens; the model is asked for the key and answers greedily. A model that lost the start of
long inputs fails at small depths first. Deterministic: keys come from a seeded generator.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "What is the pass key? The pass key is"


def key_sentence(key: int) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key. "


def build_prompt(tokenizer: Any, length: int, depth: float, key: int) -> list[int]:
    """Token ids of a prompt of about ``length`` tokens with the key at ``depth`` of the filler."""
    filler_ids = tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    fixed = tokenizer(key_sentence(key) + QUESTION, add_special_tokens=False)["input_ids"]
    repeats = max(1, (length - len(fixed)) // max(1, len(filler_ids)))
    before = round(repeats * depth)
    text = FILLER * before + key_sentence(key) + FILLER * (repeats - before) + QUESTION
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos, *ids] if bos is not None and getattr(tokenizer, "add_bos_token", False) else ids


def recalled(answer: str, key: int) -> bool:
    """The first number in the answer is the key."""
    found = re.search(r"\d+", answer)
    return found is not None and int(found.group()) == key


@dataclass
class PasskeyResult:
    accuracy: float
    by_length: dict[int, float] = field(default_factory=dict)
    trials: int = 0


def passkey(model: Any, tokenizer: Any, lengths: list[int], depths: tuple[float, ...] = (0.1, 0.5, 0.9),
            *, seed: int = 0) -> PasskeyResult:
    """Accuracy over every (length, depth), and per length."""
    import torch

    rng = random.Random(seed)
    device = next(model.parameters()).device
    by_length: dict[int, float] = {}
    hits = 0
    for length in lengths:
        found = 0
        for depth in depths:
            key = rng.randint(10_000, 99_999)
            ids = torch.tensor([build_prompt(tokenizer, length, depth, key)], device=device)
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            found += recalled(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True), key)
        by_length[length] = found / len(depths)
        hits += found
    trials = len(lengths) * len(depths)
    return PasskeyResult(accuracy=hits / trials if trials else 0.0, by_length=by_length, trials=trials)


def default_lengths(native: int, target: int) -> list[int]:
    """Native/2, native, then doubling up to the target (at most four lengths)."""
    lengths = [max(64, native // 2), native]
    while lengths[-1] < target:
        lengths.append(min(target, lengths[-1] * 2))
    return lengths[-4:] if len(lengths) > 4 else lengths
