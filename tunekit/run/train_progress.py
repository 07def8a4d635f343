"""The Trainer's companions: batch collation and a progress display with loss and tokens/s.

Imports torch and transformers at module level: only ``tunekit.run.training.train`` imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from tunekit.run import reporting
from tunekit.run.train_data import IGNORE_INDEX


def collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; padding is masked out of attention and of the loss.

    Packed rows (``position_ids`` from ``train_data.pack_examples``) get no attention mask: transformers
    then reads the position ids' restarts as sequence boundaries and keeps attention inside each example
    (it only does so with no mask and no cache, hence ``use_cache=False``). Padding continues as one more
    sequence of its own, after every real token, so causal attention never reaches it.
    """
    width = max(len(e["input_ids"]) for e in batch)

    def pad(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (width - len(values))

    out: dict[str, Any] = {
        "input_ids": torch.tensor([pad(e["input_ids"], pad_id) for e in batch]),
        "labels": torch.tensor([pad(e["labels"], IGNORE_INDEX) for e in batch]),
    }
    if all("position_ids" in e for e in batch):
        out["position_ids"] = torch.tensor(
            [e["position_ids"] + list(range(width - len(e["position_ids"]))) for e in batch])
        out["use_cache"] = False
    else:
        out["attention_mask"] = torch.tensor([pad([1] * len(e["input_ids"]), 0) for e in batch])
    return out


class ProgressCallback(TrainerCallback):
    """A tqdm bar whose postfix shows loss and tokens/s, plus about ten log lines per run (and every eval)."""

    def __init__(self, log: Callable[[str], None], quiet: bool = False) -> None:
        self.log = log
        self.quiet = quiet
        self.bar: Any = None
        self.started = 0.0
        self.tokens_at_start = 0
        self.every = 1
        self.last_line = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = self.last_line = time.perf_counter()
        self.tokens_at_start = state.num_input_tokens_seen
        self.every = max(1, state.max_steps // 10)
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step", leave=False,
                        disable=True if self.quiet else None)

    def tokens_per_second(self, state: Any) -> float:
        elapsed = time.perf_counter() - self.started
        return (state.num_input_tokens_seen - self.tokens_at_start) / elapsed if elapsed > 0 else 0.0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        speed = self.tokens_per_second(state)
        if "loss" in logs:
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", tok_s=f"{speed:.0f}")
            # no bar (a log, not a terminal): also a line whenever LINE_EVERY_S passed without one, so slow steps show
            silent = self.bar is None or self.bar.disable
            late = silent and time.perf_counter() - self.last_line >= reporting.LINE_EVERY_S
            if state.global_step % self.every == 0 or state.global_step == state.max_steps or late:
                self.last_line = time.perf_counter()
                self.log(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                         f"lr {logs.get('learning_rate', 0):.2e}  {speed:.0f} tok/s")
        if "eval_loss" in logs:
            # the evaluation before training runs before the Trainer knows its steps: no "step 0/0"
            where = f"step {state.global_step}/{state.max_steps}" if state.max_steps else "before training"
            self.log(f"{where}  eval loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
