"""Which text a run reads for evaluation and calibration, kept apart so no score is measured on seen text.

Evaluation: ``eval.data`` > ``--data`` > the shipped Persuasion excerpt (``tunekit/data/eval_*.txt``).
Calibration and training: ``--data`` > the shipped ``calibration_*.txt`` novels (Emma, Pride and
Prejudice); Persuasion never calibrates or trains. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from tunekit.core.errors import UsageError
from tunekit.core.quantization import read_text
from tunekit.core.resources import shipped_data_dir

EVAL_FILE = "eval_austen_persuasion.txt"


def shipped_eval_path() -> Path:
    """The held-out evaluation text shipped with tunekit (first ~100 KB of Persuasion)."""
    return shipped_data_dir() / EVAL_FILE


def shipped_calibration_paths() -> list[Path]:
    """The shipped calibration/training novels (never the evaluation text)."""
    return sorted(shipped_data_dir().glob("calibration_*.txt"))


def eval_text(eval_data: str | Path | None) -> str:
    """Plain text for perplexity: the recipe's ``eval.data``, else the shipped held-out Persuasion.

    Never ``--data``: that is training or calibration input, and scoring a model on the text it was just
    tuned on (or on raw JSON lines) reports a number that says nothing about held-out quality. A user who
    wants it passes it as ``eval.data``.
    """
    chosen = Path(eval_data).expanduser() if eval_data else shipped_eval_path()
    if not chosen.exists() and len(chosen.parts) == 1 and (shipped_data_dir() / chosen).is_file():
        chosen = shipped_data_dir() / chosen  # a recipe may name shipped data by file name
    try:
        return read_text(chosen)
    except UsageError as exc:
        raise UsageError(f"evaluation text: {exc}") from None


def calibration_texts(n: int, seq_len: int, tokenizer: object, data_path: Path | None = None) -> list[list[int]]:
    """``n`` consecutive windows of ``seq_len`` token ids from ``--data`` or the shipped novels."""
    if data_path is not None:
        text = read_text(data_path)
    else:
        text = "\n\n".join(p.read_text(encoding="utf-8") for p in shipped_calibration_paths())
    ids: list[int] = tokenizer(text[: n * seq_len * 8], add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    windows = [ids[i:i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)][:n]
    if not windows:
        raise UsageError(f"calibration text has {len(ids)} tokens, fewer than seq_len {seq_len}")
    return windows
