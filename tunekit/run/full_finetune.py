"""Full fine-tuning: which of the model's own weights train when a recipe has ``train`` and no adapter.

Every weight trains by default (what LLaMA-Factory, axolotl and torchtune call full fine-tuning);
``train.trainable`` narrows it to the parameters whose names match a regular expression, the usual
partial schemes: the last N decoder layers (``layers\\.(22|23)\\.``), the norms (``norm``), the head.
Freezing is ``requires_grad = False``, so the Trainer builds its optimizer over the selected weights
only and the frozen ones keep no gradients or optimizer state (the memory the estimator does not count).
"""

from __future__ import annotations

import re
from typing import Any

from tunekit.core.errors import UsageError


def select_trainable(model: Any, patterns: list[str] | None) -> tuple[int, int]:
    """Set ``requires_grad`` on every parameter (all, or those matching ``patterns``); (trained, total).

    Raises when no parameter matches: a typo in a pattern would otherwise train nothing and report a
    loss curve that never moves.
    """
    compiled = [re.compile(p) for p in patterns or []]
    trained = total = 0
    for name, param in model.named_parameters():
        chosen = not compiled or any(c.search(name) for c in compiled)
        if chosen and not param.is_floating_point():
            raise UsageError(f"full fine-tuning cannot train {name} ({param.dtype}): load the model in a float dtype")
        param.requires_grad_(chosen)
        total += param.numel()
        trained += param.numel() if chosen else 0
    if trained == 0:
        sample = ", ".join(name for name, _ in list(model.named_parameters())[:3])
        raise UsageError(f"train.trainable {patterns} matches no parameter of the model (names look like: {sample})")
    return trained, total
