"""Read back what a GGUF file really holds: tensor types, parameters, bits per weight. No torch.

A K-quant name is a recipe, not a type: llama.cpp mixes block types per tensor and falls back to
other types when a row is not a multiple of 256, so bits per weight are measured from the tensors.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def summarize(path: Path) -> dict[str, Any]:
    """Tensor-type histogram (by parameter count), parameters, bytes and bits per weight of a GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    params = 0
    nbytes = 0
    by_type: Counter[str] = Counter()
    types: dict[str, str] = {}
    for tensor in reader.tensors:
        n = int(tensor.n_elements)
        params += n
        nbytes += int(tensor.n_bytes)
        by_type[tensor.tensor_type.name] += n
        types[tensor.name] = tensor.tensor_type.name
    size = Path(path).stat().st_size
    return {
        "file_bytes": size,
        "params": params,
        "tensor_bytes": nbytes,
        "bpw": round(8 * nbytes / params, 4) if params else 0.0,
        "type_share": {k: round(v / params, 4) for k, v in by_type.most_common()},
        "tensor_types": types,
    }


def metadata(path: Path, *keys: str) -> dict[str, Any]:
    """String/number metadata values of a GGUF file (only the keys asked for)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key in keys:
        field = reader.get_field(key)
        if field is not None:
            out[key] = field.contents()
    return out
