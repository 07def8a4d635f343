"""Does the model still stop? EOS share of generations, and whether the template and special tokens survived.

The usual causes of "it never stops" after fine-tuning or export are not in the weights: a chat template
lost from the tokenizer, or EOS/pad ids in ``generation_config.json`` that no longer match the
tokenizer's, so ``generate`` waits for a token the model never emits. Those are checked statically;
the share of generations ending with EOS within the budget measures the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunekit.run.checks.generations import Generation


def eos_share(generations: Sequence[Generation]) -> float:
    return sum(g.ended_with_eos for g in generations) / len(generations) if generations else 0.0


def _ids(value: Any) -> set[int]:
    return set(value) if isinstance(value, list) else set() if value is None else {int(value)}


def template_problems(tokenizer: Any, generation_config: Any, base_tokenizer: Any | None = None) -> list[str]:
    """Static problems, each one sentence; empty when the template renders and the ids agree."""
    problems: list[str] = []
    template = getattr(tokenizer, "chat_template", None)
    if base_tokenizer is not None and getattr(base_tokenizer, "chat_template", None) and not template:
        problems.append("the base has a chat template and the output's tokenizer has none")
    if template:
        try:
            tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                          add_generation_prompt=True)
        except Exception as exc:  # a Jinja error of any kind means the template is broken
            problems.append(f"the chat template does not render: {exc}")
    eos = tokenizer.eos_token_id
    if eos is None:
        problems.append("the tokenizer has no EOS token")
    gen_eos = _ids(getattr(generation_config, "eos_token_id", None))
    if eos is not None and gen_eos and eos not in gen_eos:
        problems.append(f"generation_config eos_token_id {sorted(gen_eos)} does not include the tokenizer's "
                        f"EOS {eos}")
    gen_pad = getattr(generation_config, "pad_token_id", None)
    if gen_pad is not None and tokenizer.pad_token_id is not None and gen_pad != tokenizer.pad_token_id:
        problems.append(f"generation_config pad_token_id {gen_pad} differs from the tokenizer's "
                        f"{tokenizer.pad_token_id}")
    if base_tokenizer is not None:
        lost = set(base_tokenizer.all_special_tokens) - set(tokenizer.all_special_tokens)
        if lost:
            problems.append(f"special tokens lost: {', '.join(sorted(lost))}")
    return problems
