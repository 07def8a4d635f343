"""K-quants (and Q4_0, IQ4_XS) through llama.cpp's own quantizer, ``llama_model_quantize``.

llama.cpp decides the per-tensor mixture of a K-quant "file type" (which tensors get Q6_K, which
fall back to Q5_0/IQ4_NL when a row is not a multiple of 256); tunekit never re-implements that.
The input is an F16 GGUF written by :mod:`tunekit_gguf.writer`. An importance matrix is not offered:
llama-cpp-python exposes no way to compute one, and the C API takes it as a C++ map pointer.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunekit import MissingDependencyError, TunekitError
from tunekit_gguf.types import gguf_type


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def quantize(src: Path, dst: Path, type_name: str, *, threads: int | None = None) -> Path:
    """Quantize the F16/F32 GGUF ``src`` into ``dst`` as llama-quantize would (same ftype, same rules)."""
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
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not Path(dst).is_file():
        raise TunekitError(f"llama_model_quantize({gtype.name}) failed with code {rc} on {src}")
    return Path(dst)
