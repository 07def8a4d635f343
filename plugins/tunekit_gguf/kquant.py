"""K-quants (and Q4_0, IQ4_XS) through llama.cpp's own quantizer, ``llama_model_quantize``.

llama.cpp decides the per-tensor mixture of a K-quant "file type" (which tensors get Q6_K, which
fall back to Q5_0/IQ4_NL when a row is not a multiple of 256); tunekit never re-implements that.
The input is an F16 GGUF written by :mod:`tunekit_gguf.writer`. An importance matrix is not offered:
llama-cpp-python exposes no way to compute one, and the C API takes it as a C++ map pointer.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit import MissingDependencyError, TunekitError
from tunekit_gguf.types import gguf_type


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


#: llama.cpp's line for a tensor whose rows do not fit the K-quant block (llama-quant.cpp).
_FALLBACK = re.compile(r"warning: (\S+)\s+- ncols\s+(\d+) not divisible by (\d+) \(required for type\s+(\w+)\)"
                       r" -> falling back to\s+(\w+)")


@dataclass
class KQuantReport:
    """What llama.cpp's quantizer did: the file, the tensors it gave another type, and its log."""

    path: Path
    fallbacks: dict[str, str] = field(default_factory=dict)
    log: str = ""


def parse_fallbacks(log: str) -> dict[str, str]:
    """``{tensor: "q4_K -> q5_0 (128 columns, not a multiple of 256)"}`` from llama.cpp's quantize log."""
    return {m[1]: f"{m[4]} -> {m[5]} ({m[2]} columns, not a multiple of {m[3]})" for m in _FALLBACK.finditer(log)}


@contextmanager
def _llama_log(llama_cpp: Any) -> Iterator[list[str]]:
    """Collect llama.cpp's log instead of letting it print to stderr, then restore llama-cpp-python's own."""
    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def collect(level: int, text: bytes, user_data: Any) -> None:
        lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        from llama_cpp import _logger

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def quantize(src: Path, dst: Path, type_name: str, *, threads: int | None = None) -> KQuantReport:
    """Quantize the F16/F32 GGUF ``src`` into ``dst`` as llama-quantize would (same ftype, same rules).

    llama.cpp's log goes to the ``llama-cpp-python`` logger (a run keeps it in its log file), and the
    tensors it quantized to another type than the file type's are returned for metrics.json.
    """
    gtype = gguf_type(type_name)
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            f"GGUF type {gtype.name} is encoded by llama.cpp's quantizer: pip install 'tunekit[gguf]' "
            f"(llama-cpp-python; {exc})") from None
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{gtype.ftype}", None)
    if ftype is None:
        raise TunekitError(f"this llama-cpp-python has no LLAMA_FTYPE_{gtype.ftype}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or min(4, os.cpu_count() or 1)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with _llama_log(llama_cpp) as lines:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    log = "".join(lines)
    logging.getLogger("llama-cpp-python").info("llama_model_quantize(%s):\n%s", gtype.name, log)
    if rc != 0 or not Path(dst).is_file():
        tail = log.strip().splitlines()[-1:] or ["no log"]
        raise TunekitError(f"llama_model_quantize({gtype.name}) failed with code {rc} on {src}: {tail[0]}")
    return KQuantReport(Path(dst), parse_fallbacks(log), log)
