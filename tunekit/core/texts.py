"""Reading the text a run evaluates and calibrates on, kept apart so no score is measured on seen text.

Evaluation: ``eval.data`` > the shipped Persuasion excerpt (``tunekit/data/eval_*.txt``); never ``--data``.
Calibration: the quantizer's ``calibration.file`` > ``--data`` > the first shipped ``calibration_*.txt``
novel (Emma); Persuasion never calibrates or trains. Torch-free: the tokenizer is passed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import InputFileError, UsageError
from tunekit.core.input_files import read_utf8
from tunekit.core.resources import shipped_data_dir

if TYPE_CHECKING:
    from tunekit.core.context import StageContext
    from tunekit.core.quantization import CalibrationParams

EVAL_FILE = "eval_austen_persuasion.txt"


def shipped_eval_path() -> Path:
    """The held-out evaluation text shipped with tunekit (first ~100 KB of Persuasion)."""
    return shipped_data_dir() / EVAL_FILE


def shipped_calibration_paths() -> list[Path]:
    """The shipped calibration/training novels (never the evaluation text)."""
    return sorted(shipped_data_dir().glob("calibration_*.txt"))


def read_text(path: Path) -> str:
    """Plain text from a .txt file, a folder of .txt files, or a JSONL of text, instruction or chat records.

    Binary or non-UTF-8 content is an ``InputFileError`` naming the file (exit 1), not a decode traceback.
    """
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise UsageError(f"{path}: no .txt files in the folder")
        return "\n\n".join(read_utf8(f, "text") for f in files)
    if not path.is_file():
        raise UsageError(f"{path}: text file not found")
    if path.suffix in {".jsonl", ".json"}:
        parts: list[str] = []
        for number, line in enumerate(read_utf8(path, "JSONL").splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    raise InputFileError(f"{path}:{number}: not a JSON line") from None
                if not isinstance(record, dict):
                    raise InputFileError(f"{path}:{number}: expected an object with 'text'")
                parts.extend(str(record[k]) for k in ("text", "instruction", "input", "output") if record.get(k))
                turns = record.get("messages") or record.get("conversations") or []  # chat data: every turn's text
                parts.extend(str(t.get("content") or t.get("value")) for t in turns
                             if isinstance(t, dict) and (t.get("content") or t.get("value")))
        return "\n\n".join(parts)
    return read_utf8(path, "text")


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


def calibration_path(params: CalibrationParams, ctx: StageContext | None) -> Path:
    """Where calibration reads from: the plugin's ``calibration.file``, the run's ``--data``, else Emma."""
    if params.file:
        return Path(params.file).expanduser()
    if ctx is not None and ctx.data_path is not None:
        return Path(ctx.data_path)
    return shipped_calibration_paths()[0]


def calibration_windows(tokenizer: Any, params: CalibrationParams, ctx: StageContext | None = None) -> list[list[int]]:
    """``n_samples`` consecutive windows of ``seq_len`` token ids (fewer if the text is short)."""
    path = calibration_path(params, ctx)
    try:
        text = read_text(path)
    except UsageError as exc:
        raise UsageError(f"calibration text: {exc}") from None
    # Tokenize only as much text as the windows need (about 6 characters a token, with margin).
    budget = params.n_samples * params.seq_len * 8
    ids: list[int] = tokenizer(text[:budget], add_special_tokens=False)["input_ids"]
    step = params.seq_len
    windows = [ids[i:i + step] for i in range(0, len(ids) - step + 1, step)][: params.n_samples]
    if not windows:
        raise UsageError(f"{path}: calibration text has {len(ids)} tokens, fewer than seq_len {step}")
    return windows
