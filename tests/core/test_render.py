"""Plain-text output for the commands that must start fast: tables and prose fit the width, words whole."""

from __future__ import annotations

from tunekit.core.render import text_table, wrap


def test_text_table_wraps_only_the_last_column_at_word_boundaries() -> None:
    rows = [["1", "deepseek-r1-distill-qwen-14b", "qlora-nf4-4.13bit", "4.1-bit, seq 1024, no memory margin, "
             "GPU/RAM split"], ["2", "phi-4", "gguf-q4_k_m", "nothing"]]
    text = text_table(["#", "model", "recipe", "traded"], rows, width=60)
    lines = text.splitlines()
    assert all(len(line) <= 60 for line in lines)
    assert lines[0].split() == ["#", "model", "recipe", "traded"] and set(lines[1]) == {"-"}
    assert "deepseek-r1-distill-qwen-14b" in lines[2] and "qlora-nf4-4.13bit" in lines[2]
    column = lines[0].index("traded")
    continued = [line for line in lines[3:] if line[:column].strip() == ""]
    assert continued and all(line[column:].split() for line in continued)  # wrapped under its column
    words = " ".join(line[column:] for line in lines[2:]).split()
    assert "GPU/RAM" in words and "margin," in words


def test_a_word_longer_than_the_width_is_kept_whole() -> None:
    text = text_table(["name", "why"], [["x", "a" * 50]], width=20)
    assert "a" * 50 in text
    assert wrap("see https://example.org/a/very/long/path/that/does/not/fit", 20).splitlines()[1].startswith(
        "https://example.org/a/very/long")
