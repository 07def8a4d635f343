"""Training log lines: the evaluation before training is labelled as such, not ``step 0/0``."""

from __future__ import annotations

from types import SimpleNamespace

from tunekit.run.train_progress import ProgressCallback


def test_eval_before_training_is_not_step_zero_of_zero() -> None:
    lines: list[str] = []
    callback = ProgressCallback(lines.append, quiet=True)
    state = SimpleNamespace(global_step=0, max_steps=0, num_input_tokens_seen=0)
    callback.on_log(None, state, None, logs={"eval_loss": 2.5})
    state = SimpleNamespace(global_step=6, max_steps=12, num_input_tokens_seen=0)
    callback.on_log(None, state, None, logs={"eval_loss": 2.25})
    assert lines == ["before training  eval loss 2.5000", "step 6/12  eval loss 2.2500"]
