"""Cheap checks of the files a run reads, before any weight loads (``--dry-run`` runs them too). Torch-free.

A truncated download, an empty file, a parquet file named as text or a Latin-1 text otherwise fail
minutes later inside safetensors or a UTF-8 decode as a traceback. Here each is one
:class:`~tunekit.core.errors.InputFileError` naming the file: a safetensors header is read and its
byte ranges checked against the file size (what ``safe_open`` checks, without reading tensors), and
the start of a text file is checked for NUL bytes and for UTF-8.
"""

from __future__ import annotations

import codecs
import json
import struct
from pathlib import Path

from tunekit.core.errors import InputFileError

TEXT_PROBE_BYTES = 1 << 20
"""How much of a text file the pre-load check reads; the full read later reports the rest the same way."""
_MAX_HEADER = 100_000_000
"""safetensors' own limit on the JSON header, so a random first 8 bytes cannot ask for gigabytes."""


def text_problem(data: bytes, *, final: bool) -> str | None:
    """Why ``data`` is not UTF-8 text, or None. ``final=False`` for a prefix (a cut character is fine)."""
    if b"\0" in data:
        return "binary data (NUL bytes), not text: parquet or arrow files must be exported to .txt or .jsonl"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start}); re-save it as UTF-8"
    return None


def check_text_file(path: Path, what: str) -> None:
    """``path`` (a file, or a folder's ``.txt`` files) starts as UTF-8 text; else an InputFileError."""
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    for file in files:
        try:
            with file.open("rb") as handle:
                head = handle.read(TEXT_PROBE_BYTES)
                complete = not handle.read(1)
        except OSError as exc:
            raise InputFileError(f"{file}: cannot read the {what}: {exc.strerror or exc}") from None
        problem = text_problem(head, final=complete)
        if problem:
            raise InputFileError(f"{file}: {what}: {problem}")


def read_utf8(path: Path, what: str) -> str:
    """The whole text of ``path``, or an InputFileError naming it (binary, not UTF-8, unreadable)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    problem = text_problem(data, final=True)
    if problem:
        raise InputFileError(f"{path}: {what}: {problem}")
    return data.decode("utf-8")


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file, or None."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (an interrupted download or copy?)"
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{size} bytes: too short for a safetensors header"
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER or 8 + length > size:
            return f"header claims {length:,} bytes but the file has {size:,}: truncated or not safetensors"
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "the header is not JSON: not a safetensors file"
    if not isinstance(header, dict):
        return "the header is not a JSON object: not a safetensors file"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"
            and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2 and isinstance(entry["data_offsets"][1], int)]
    data_bytes = size - 8 - length
    if len(ends) != len([k for k in header if k != "__metadata__"]):
        return "a tensor entry has no valid data_offsets: not a safetensors file"
    if max(ends, default=0) != data_bytes:
        return (f"tensors need {max(ends, default=0):,} bytes of data, the file holds {data_bytes:,}: "
                "truncated (download it again)")
    return None


def check_weight_files(folder: Path) -> None:
    """Every ``*.safetensors`` in a model folder is complete; else an InputFileError naming the file."""
    for file in sorted(folder.glob("*.safetensors")):
        try:
            problem = safetensors_problem(file)
        except OSError as exc:
            problem = f"cannot read: {exc.strerror or exc}"
        if problem:
            raise InputFileError(f"{file}: {problem}")
