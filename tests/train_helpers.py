"""Training data for the adapter and training tests: the shipped Austen instructions as text records.

Tiny models and the tokenizer come from :mod:`tunekit.testing` (``build_tiny_model``, ``build_tokenizer``).
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTRUCT = REPO / "tunekit" / "data" / "austen_instruct.jsonl"


def write_text_jsonl(path: Path, n: int = 40) -> Path:
    """A JSONL of ``text`` records made from the shipped instruction data's answers."""
    lines = INSTRUCT.read_text().splitlines()[:n]
    path.write_text("".join(json.dumps({"text": json.loads(x)["output"]}) + "\n" for x in lines))
    return path
