"""Values that make no sense are usage errors (exit 2, one line), never a confident wrong answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import UsageError
from tunekit.run.train_data import read_records


def _usage_error(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


@pytest.mark.parametrize("flags", [
    ["--vram", "1e9"], ["--vram", "inf"], ["--vram", "nan"], ["--vram", "1e-300"], ["--vram", "-1"],
    ["--ram", "-5"], ["--seq-len", "0"], ["--batch", "0"], ["--top", "-1"], ["--top", "0"],
    ["--margin", "2"], ["--margin", "nan"], ["--margin", "-1"], ["--gpus", "0"], ["--context", "0"],
])
def test_recommend_refuses_nonsense_numbers(flags: list[str]) -> None:
    output = _usage_error(["recommend", "--params", "7B", *flags])
    assert f"Invalid value for '{flags[0]}'" in output


@pytest.mark.parametrize("flags", [
    ["--rank", "-16"], ["--rank", "0"], ["--kv-bits", "nan"], ["--kv-bits", "-8"], ["--kv-bits", "0"],
    ["--vram", "-1", "--max-seq-len"], ["--bits", "inf"], ["--seq-len", "-5"], ["--batch", "0"],
])
def test_estimate_refuses_nonsense_numbers(flags: list[str]) -> None:
    output = _usage_error(["estimate", "--params", "7B", *flags])
    assert "Invalid value for" in output and flags[0] in output


def test_sensible_numbers_still_work() -> None:
    result = CliRunner().invoke(cli, ["estimate", "--params", "7B", "--rank", "8", "--kv-bits", "8",
                                      "--vram", "24", "--max-seq-len", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["max_seq_len"] > 0
    result = CliRunner().invoke(cli, ["recommend", "--params", "1B", "--vram", "24", "--ram", "64", "--top", "1",
                                      "--margin", "0", "--json"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("line", "message"), [
    ('{"text": null}', "'text' must be a string, got null"),
    ('{"text": 5}', "'text' must be a string, got int"),
    ('{"instruction": "say hi"}', "needs an 'output'"),
    ('{"instruction": "say hi", "output": null}', "'output' must be a string, got null"),
    ('{"instruction": ["a"], "output": "b"}', "'instruction' must be a string, got list"),
    ('{"instruction": "a", "output": "b", "input": 3}', "'input' must be a string or null"),
    ('[1, 2]', "expected an object"),
    ("[" * 100_000, "not a JSON line"),
])
def test_bad_training_records_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(UsageError, match=message) as caught:
        read_records(path)
    assert str(caught.value).startswith(f"{path}:2: ")


def test_good_records_pass_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": None, "output": "d"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert read_records(path) == rows


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".parquet"])
def test_binary_data_is_one_error_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(b"PAR1\x15\x04\x15\xff\xfe\x80binary")
    with pytest.raises(UsageError, match="not UTF-8 text") as caught:
        read_records(path)
    assert str(caught.value).startswith(str(path))


@pytest.mark.parametrize(("formats", "message"), [
    ("[nope]", "output.formats[0]: unknown export format 'nope'"),
    ("[{gguf: {type: zz}}]", "output.formats[0]: gguf: type:"),
    ("['hf:x']", "output.formats[0]: unknown export format 'hf'"),
    ("[" + ", ".join(["gguf"] * 17) + "]", "output.formats: List should have at most 16 items"),
])
def test_validate_checks_output_formats_like_apply(tmp_path: Path, formats: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nmodel: {{id: m}}\noutput: {{formats: {formats}}}\n")
    output = _usage_error(["validate", str(path)])
    assert f"error: {path}: {message}" in output
