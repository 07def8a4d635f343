"""Layer offload (``model.offload``): place a model that does not fit the GPU over GPU, CPU RAM and disk.

This is accelerate's big-model inference as transformers exposes it: ``device_map="auto"`` with a
``max_memory`` per device and an ``offload_folder``; layers that fit nowhere else are read from disk at
each forward (slow, but the model runs). ``auto`` sizes the GPU share from the estimator: the VRAM less
the margin and what inference needs besides the weights (activations, KV cache, CUDA context), so the
layers that stay on the GPU leave room for the run. Torch-free at import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError
from tunekit.core.recipe_model import OffloadSection

MARGIN = 0.1
"""Fraction of the VRAM and of the RAM kept free, as recommend's default --margin."""


def auto_section(model_path: Path, *, vram_gb: float, ram_gb: float, seq_len: int = 4096) -> OffloadSection:
    """``offload: auto``: the GPU share the estimate leaves for weights, 80% of RAM, disk for the rest."""
    from tunekit.advise import estimate as est
    from tunekit.core.arch import ModelArch

    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        raise UsageError(f"model.offload: auto needs the model's config.json ({config_file} not found)")
    arch = ModelArch.from_hf_config(json.loads(config_file.read_text(encoding="utf-8")), name=Path(model_path).name)
    result = est.estimate(arch, est.Setup(method="infer", seq_len=min(seq_len, arch.max_context)))
    others = sum(v for k, v in result.breakdown.items() if k != "weights") / est.GB
    gpu = vram_gb * (1 - MARGIN) - others
    return OffloadSection(gpu_gb=round(gpu, 2) if vram_gb and gpu > 0 else None,
                          cpu_gb=round(ram_gb * (1 - 2 * MARGIN), 2) if ram_gb else None, disk=None)


def load_kwargs(offload: OffloadSection | str, *, model_path: Path, scratch: Path,
                gpus: int, vram_gb: float = 0.0, ram_gb: float = 0.0) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for the offload section (``gpus`` CUDA devices present)."""
    spec = auto_section(model_path, vram_gb=vram_gb, ram_gb=ram_gb) if offload == "auto" else offload
    if not isinstance(spec, OffloadSection):
        raise UsageError(f"model.offload: expected a mapping or 'auto', got {offload!r}")
    max_memory: dict[int | str, int] = {}
    if spec.gpu_gb and gpus:
        max_memory.update({i: int(spec.gpu_gb * 1e9) for i in range(gpus)})
    elif gpus:
        max_memory.update(dict.fromkeys(range(gpus), 0))  # no gpu_gb: the weights stay off the GPU
    if spec.cpu_gb:
        max_memory["cpu"] = int(spec.cpu_gb * 1e9)
    elif ram_gb:
        max_memory["cpu"] = int(ram_gb * (1 - 2 * MARGIN) * 1e9)
    disk = Path(spec.disk).expanduser() if spec.disk else Path(scratch) / "offload"
    disk.mkdir(parents=True, exist_ok=True)
    return {"device_map": "auto", "max_memory": max_memory, "offload_folder": str(disk)}


def placement(model: Any) -> dict[str, int]:
    """How many top-level modules accelerate put on each device (``hf_device_map``), for the run's record."""
    counts: dict[str, int] = {}
    for device in (getattr(model, "hf_device_map", None) or {}).values():
        counts[str(device)] = counts.get(str(device), 0) + 1
    return counts


def machine_memory() -> dict[str, Any]:
    """``gpus``, ``vram_gb`` (per GPU) and ``ram_gb`` of this machine, for :func:`load_kwargs`."""
    import torch

    from tunekit.advise.hardware import system_ram_gb

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    vram = torch.cuda.get_device_properties(0).total_memory / 1e9 if gpus else 0.0
    return {"gpus": gpus, "vram_gb": vram, "ram_gb": system_ram_gb()}


def recipe_load_kwargs(offload: OffloadSection | str | None, model_path: Path, scratch: Path) -> dict[str, Any]:
    """The offload kwargs for a recipe's ``model.offload`` on this machine ({} when it has none)."""
    if offload is None:
        return {}
    return load_kwargs(offload, model_path=model_path, scratch=scratch, **machine_memory())
