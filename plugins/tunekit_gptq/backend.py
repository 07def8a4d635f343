"""GPTQModel calls behind the ``gptq`` and ``awq`` plugins (imports torch and gptqmodel).

GPTQModel quantizes a model it loads itself, from a folder, and its in-memory model after
``quantize()`` is not usable for a forward pass (layers are offloaded and packed), so the flow is:
save the incoming model -> quantize -> GPTQModel ``save`` -> reload through transformers, which is
also exactly what a user of the output does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.errors import MissingDependencyError, UsageError
from tunekit.quantization import calibration_windows, check_model_group_size

if TYPE_CHECKING:
    from tunekit.context import StageContext
    from tunekit_gptq.plugin import _GPTQModelQuantizer


def configure_environment() -> None:
    """GPTQModel spawns one CPU worker per core unless told; on a shared machine use what torch uses."""
    import torch

    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, torch.get_num_threads())))


def check_kernel(kernel: str, device: str, method: str) -> None:
    from tunekit_gptq.plugin import CUDA_KERNELS

    if kernel in CUDA_KERNELS and not device.startswith("cuda"):
        raise MissingDependencyError(
            f"{method}: kernel '{kernel}' needs an NVIDIA GPU (CUDA) and this run is on '{device}'; "
            "use kernel: auto (GPTQModel's torch kernels run on CPU)")


def resolve_backend(kernel: str, method: str, device: str) -> Any:
    from gptqmodel import BACKEND

    if kernel == "auto":
        if method == "awq" and not device.startswith("cuda"):
            return BACKEND.AWQ_TORCH  # AWQ's default GEMM kernel is CUDA-only
        return BACKEND.AUTO
    if kernel == "torch":
        return BACKEND.AWQ_TORCH if method == "awq" else BACKEND.GPTQ_TORCH
    return BACKEND(kernel)


def resolve_dtype(name: str, device: str, method: str = "gptq") -> Any:
    """The dtype GPTQModel loads the model in. GPTQModel's ``auto`` is bfloat16 on every CPU; on this
    project's AVX2 CI machine a bf16 (or fp16) matmul measured 30-50x slower than fp32, which made GPTQ
    on SmolLM2-135M take 17 minutes. GPTQ therefore runs in float32 on CPU (fast everywhere, more exact);
    AWQ cannot: GPTQModel's AWQ torch kernel packs only fp16/bf16 weights."""
    import torch

    if name == "auto":
        return torch.float32 if method == "gptq" and not device.startswith("cuda") else "auto"
    return getattr(torch, name)


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU features that make 16-bit matmuls fast (Linux; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def tokenizer_for(ctx: StageContext) -> Any:
    if ctx.tokenizer is not None:
        return ctx.tokenizer
    if ctx.model_path is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(ctx.model_path))
    raise UsageError("gptq/awq need the model's tokenizer to read calibration text (none in this run)")


def build_quantize_config(plugin: _GPTQModelQuantizer, device: str) -> Any:
    from gptqmodel import QuantizeConfig

    config = plugin.quantize_config()
    config["lm_head"] = "lm_head" not in plugin.params.keep_16bit
    return QuantizeConfig(**config)


def run_gptqmodel(source: Path, out: Path, qconfig: Any, calibration: list[dict[str, list[int]]], *,
                  backend: Any, device: str, dtype: Any = "auto") -> None:
    """The GPTQModel calls themselves (also what the benchmark times when it calls GPTQModel directly)."""
    from gptqmodel import GPTQModel

    qmodel = GPTQModel.load(str(source), qconfig, device="cpu" if device == "cpu" else None, dtype=dtype)
    qmodel.quantize(calibration, batch_size=1, backend=backend)
    qmodel.save(str(out))


def quantize_through_gptqmodel(model: Any, ctx: StageContext, plugin: _GPTQModelQuantizer) -> tuple[Any, Path, dict]:
    """Quantize ``model`` with ``plugin``'s settings; returns (reloaded model, GPTQModel folder, stats).

    The folder lives until ``plugin`` is garbage-collected (or the process exits): ``save`` copies from it.
    """
    params, method = plugin.params, plugin.method
    device = ctx.device or "cpu"
    check_kernel(params.kernel, device, method)
    check_model_group_size(model, params.group_size, params.keep_16bit, method)
    configure_environment()
    if method == "awq" and not device.startswith("cuda") and not cpu_has_fast_bf16():
        ctx.log("awq: this CPU lacks AVX512-BF16/AMX and AWQ packs in 16-bit: expect minutes per layer of a "
                "real model (a GPU, or gptq, which runs in float32 here, is much faster)")
    tokenizer = tokenizer_for(ctx)
    windows = calibration_windows(tokenizer, params.calibration, ctx)
    calibration = [{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows]

    work = Path(tempfile.mkdtemp(prefix=f"tunekit-{method}-"))
    source, out = work / "source", work / "quantized"
    try:
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
        start = time.perf_counter()
        run_gptqmodel(source, out, build_quantize_config(plugin, device), calibration,
                      backend=resolve_backend(params.kernel, method, device), device=device,
                      dtype=resolve_dtype(params.dtype, device, method))
        seconds = time.perf_counter() - start
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(source, ignore_errors=True)
    weakref.finalize(plugin, shutil.rmtree, work, ignore_errors=True)

    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(out), device_map=device)
    stats = {"bits": params.bits, "group_size": params.group_size, "calibration_windows": len(windows),
             "calibration_tokens": sum(len(w) for w in windows), "quantize_seconds": round(seconds, 2),
             "backend": "gptqmodel"}
    return reloaded, out, stats


def copy_quantized(folder: Path, out_dir: Path) -> None:
    """Copy GPTQModel's output files into ``out_dir`` (created if missing); drops its CSV log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.is_file() and item.suffix != ".csv":
            shutil.copy2(item, out_dir / item.name)
