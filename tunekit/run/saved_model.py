"""Loading an output folder a quantizer plugin wrote in its own format (``Quantizer.load_saved``).

Most outputs load with ``from_pretrained``; a plugin whose quantized model cannot be saved that way
(dynamic int8: packed int8 modules) writes ``config.json`` plus its own weight file, and the recipe
written beside it says which plugin, with which params, re-applies the quantization on reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunekit.core.errors import UsageError

HF_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def plugin_format_quantizer(folder: Path) -> tuple[Any, Any] | None:
    """(quantizer class, its params) when ``folder`` holds no transformers weights but a recipe whose
    quantizer loads its own format; None for an ordinary folder."""
    folder = Path(folder)
    if any(p.suffix in HF_WEIGHT_SUFFIXES for p in folder.iterdir()):
        return None
    recipe_file = folder / "tunekit-recipe.yaml"
    if not recipe_file.is_file():
        return None
    data = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
    spec = data.get("quantizer") if isinstance(data, dict) else None
    if not isinstance(spec, dict) or "method" not in spec:
        return None
    from tunekit.core.kinds import Quantizer
    from tunekit.core.registry import get_registry

    cls = get_registry().get("quantizer", str(spec["method"]))
    if not issubclass(cls, Quantizer) or cls.output_formats is None:
        return None
    params = cls.Params.model_validate({k: v for k, v in spec.items() if k not in {"kind", "method"}})
    return cls, params


def load_plugin_format(folder: Path) -> Any | None:
    """The model in ``folder`` loaded by its quantizer plugin, or None when from_pretrained should load it."""
    found = plugin_format_quantizer(folder)
    if found is None:
        return None
    cls, params = found
    cls.check_requirements()
    try:
        return cls.load_saved(Path(folder), params)
    except NotImplementedError as exc:
        raise UsageError(f"{folder}: {exc}") from None
