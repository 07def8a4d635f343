"""The generations the repetition and EOS checks share: N greedy and N sampled, per model, same prompts.

Prompts are rendered with the tokenizer's chat template when it has one (what a user of an instruct
model sends), else used as plain text. Sampled generations use the *tuned* output's generation config
(its sampler) for both models, seeded the same, so a base/tuned difference comes from the weights;
greedy ones switch sampling off. ``max_new_tokens`` caps both (long budgets are slow on a CPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError
from tunekit.core.resources import shipped_data_dir

INSTRUCT_FILE = "austen_instruct.jsonl"


@dataclass(frozen=True)
class Generation:
    prompt: str
    text: str
    tokens: list[int]  # new tokens, EOS excluded
    ended_with_eos: bool
    sampled: bool


def read_prompts(path: Path | None = None, limit: int = 4) -> list[str]:
    """Prompts from JSONL (``prompt`` or ``instruction`` + ``input``) or plain text (one a line)."""
    path = path or shipped_data_dir() / INSTRUCT_FILE
    if not path.is_file():
        raise UsageError(f"--prompts: {path} not found")
    prompts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            record = json.loads(line)
            prompt = record.get("prompt") or "\n\n".join(
                str(record[k]) for k in ("instruction", "input") if record.get(k))
            prompts.append(str(prompt))
        else:
            prompts.append(line.strip())
        if len(prompts) >= limit:
            break
    if not prompts:
        raise UsageError(f"--prompts: {path} has no prompts")
    return prompts


def _encode(tokenizer: Any, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids padded on the left (so every row's last token is its own) and the attention mask."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + r for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return ids, mask


def cut_at_eos(ids: list[int], stops: set[int]) -> tuple[list[int], bool]:
    """The new tokens before the first stop token, and whether there was one (rows that stop early in a
    batch are filled with pad ids after their EOS; those are not generated text)."""
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i], True
    return ids, False


def eos_ids(tokenizer: Any, generation_config: Any) -> set[int]:
    ids = getattr(generation_config, "eos_token_id", None)
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(int(tokenizer.eos_token_id))
    return found


def generate_all(model: Any, tokenizer: Any, prompts: list[str], generation_config: Any, *, sampled: bool,
                 max_new_tokens: int, seed: int = 0, batch_size: int = 8) -> list[Generation]:
    """One generation per prompt, greedy or with ``generation_config``'s sampling, ``batch_size`` prompts
    per ``generate`` call (left-padded, masked: greedy results equal one-at-a-time ones, several times
    faster on a CPU, where one prompt leaves most of each matmul idle)."""
    import copy

    import torch

    config = copy.deepcopy(generation_config)
    config.max_new_tokens = max_new_tokens
    config.do_sample = bool(sampled and getattr(config, "do_sample", False))
    if not config.do_sample:
        for key in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
            setattr(config, key, None)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = eos_ids(tokenizer, config)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    out: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        ids, mask = left_padded([_encode(tokenizer, p) for p in batch], int(config.pad_token_id))
        input_ids = torch.tensor(ids, device=device)
        with torch.no_grad():
            generated = model.generate(input_ids=input_ids, attention_mask=torch.tensor(mask, device=device),
                                       generation_config=config)[:, input_ids.shape[1]:].tolist()
        for prompt, row in zip(batch, generated, strict=True):
            new, ended = cut_at_eos(row, stops)
            out.append(Generation(prompt=prompt, text=tokenizer.decode(new, skip_special_tokens=True), tokens=new,
                                  ended_with_eos=ended, sampled=sampled))
    return out
