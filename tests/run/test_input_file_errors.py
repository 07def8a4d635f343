"""Damaged inputs and impossible outputs end ``tunekit apply`` in one ``error: ...`` line naming the file,
exit 1, raised as a typed error before any weight loads where a check can see it (issue 14 item 8)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import InputFileError, OutputLocationError
from tunekit.core.input_files import check_weight_files, safetensors_problem
from tunekit.core.quantization import read_text
from tunekit.run.output import AtomicOutput

RECIPE = "name: t\neval: {perplexity: false}\n"


@pytest.fixture(scope="module")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunekit.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "good")


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def fails_in_one_line(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def damaged_copy(good: Path, tmp_path: Path, content: bytes | None) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(good, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000] if content is None else content)
    return folder


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (None, "truncated (download it again)"),  # the first 5000 bytes of a real file
    (os.urandom(4096), "not safetensors"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\0" * 64, "the header is not JSON"),
], ids=["empty", "truncated", "random", "garbage-header"])
def test_damaged_safetensors_is_one_line_before_loading(
    good_model: Path, tmp_path: Path, recipe: Path, content: bytes | None, message: str
) -> None:
    folder = damaged_copy(good_model, tmp_path, content)
    line = fails_in_one_line(["apply", str(recipe), "--model", str(folder), "--output", str(tmp_path / "o"),
                              "--dry-run"])
    assert line.startswith(f"error: {folder / 'model.safetensors'}: ") and message in line
    assert not (tmp_path / "o").exists()


def test_intact_safetensors_pass_the_check(good_model: Path) -> None:
    assert safetensors_problem(good_model / "model.safetensors") is None
    check_weight_files(good_model)


def test_pickle_weights_torch_refuses_are_one_line(good_model: Path, tmp_path: Path, recipe: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(good_model, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    state["extra"] = {"a": Path("x")}  # any non-tensor object: torch's weights_only loader refuses it
    torch.save(state, folder / "pytorch_model.bin")
    line = fails_in_one_line(["apply", str(recipe), "--model", str(folder), "--output", str(tmp_path / "o")])
    assert line.startswith(f"error: {folder / 'pytorch_model.bin'}: torch's safe loader refuses this pickle")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("latin1.txt", "Café au lait, ma chère.\n".encode("latin-1"), "not UTF-8 text (byte 3)"),
    ("data.parquet", b"PAR1\x15\x00\x15\x1c\x00\x00binary column chunk" * 4 + b"PAR1", "binary data (NUL bytes)"),
    ("model.bin", bytes(range(256)) * 8, "binary data (NUL bytes)"),
])
def test_eval_files_that_are_not_text_are_one_line(
    good_model: Path, tmp_path: Path, recipe: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for key in ("eval.data", "eval.references"):
        line = fails_in_one_line(["apply", str(recipe), "--model", str(good_model), "--output",
                                  str(tmp_path / "o"), "--set", f"{key}={path}", "--dry-run"])
        assert line.startswith(f"error: {path}: ") and message in line


def test_reading_a_latin1_text_later_is_the_same_typed_error(tmp_path: Path) -> None:
    """Calibration and evaluation read the whole file later: a bad byte past the checked start is the same
    one-line error, not a UnicodeDecodeError."""
    path = tmp_path / "late.txt"
    path.write_bytes(b"plain ascii " * 10 + "é".encode("latin-1"))
    with pytest.raises(InputFileError, match=r"late.txt: text: not UTF-8 text \(byte 120\)"):
        read_text(path)
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Emma."}]}\n')
    assert read_text(chat) == "Who?\n\nEmma."  # chat data calibrates on its turns' text
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(InputFileError, match=r"x.jsonl:2: expected an object"):
        read_text(jsonl)


def test_output_under_a_file_is_one_line(good_model: Path, tmp_path: Path, recipe: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    for extra in (["--dry-run"], []):
        line = fails_in_one_line(["apply", str(recipe), "--model", str(good_model), "--output",
                                  str(blocker / "deeper" / "out"), *extra])
        assert line.startswith(f"error: {blocker}: is a file")
    assert blocker.read_text() == "not a folder"


def test_read_only_output_location_is_one_line(good_model: Path, tmp_path: Path, recipe: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only place: ``os.access`` says so for a read-only mount (also as root) and for permission bits."""
    place = tmp_path / "ro"
    place.mkdir()
    if os.geteuid() != 0:
        place.chmod(0o555)  # real permission bits where they bind
    else:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == place else real(p, mode, **kw))
    try:
        line = fails_in_one_line(["apply", str(recipe), "--model", str(good_model), "--output",
                                  str(place / "out"), "--dry-run"])
    finally:
        place.chmod(0o755)
    assert line.startswith(f"error: {place}: not writable")


def test_a_place_that_fails_when_the_output_is_created_is_one_line(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Passed the check, then refused by the file system (EROFS, ENOSPC, a race): the same typed error."""
    import errno

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputLocationError, match="Read-only file system"), AtomicOutput(tmp_path / "a" / "out"):
        pass
