"""GPTQModel calls behind the ``gptq`` and ``awq`` plugins (imports torch and gptqmodel).

GPTQModel quantizes a model it loads itself, from a folder, and its in-memory model after
``quantize()`` is not usable for a forward pass (layers are offloaded and packed), so the flow is:
save the incoming model -> quantize -> GPTQModel ``save`` -> reload through transformers, which is
also exactly what a user of the output does.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit import MissingDependencyError, PluginError, UsageError, calibration_windows
from tunekit.core.quantization import check_model_group_size

if TYPE_CHECKING:
    from tunekit import StageContext
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


def resolve_dtype(name: str, device: str, method: str = "gptq", model_dtype: Any = None) -> Any:
    """The dtype GPTQModel loads the model in. GPTQModel's ``auto`` is bfloat16 on every CPU, even for a
    float32 model; on this project's AVX2 CI machine a bf16 or fp16 matmul measured 30-50x slower than
    fp32, and GPTQ of SmolLM2-135M took 17 minutes instead of 5. So on CPU, GPTQ keeps the dtype of the
    model it is given (what the recipe's ``model.dtype`` loaded: float32 is fast on every CPU, and a bf16
    model is not silently upcast, which would double the size of its unquantized embeddings). AWQ cannot
    follow: GPTQModel's AWQ torch kernel packs only fp16/bf16 weights. On CUDA, GPTQModel decides."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if method == "gptq" and not device.startswith("cuda"):
        return model_dtype if model_dtype is not None else torch.float32
    return "auto"


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

        return AutoTokenizer.from_pretrained(str(ctx.model_path),
                                             trust_remote_code=ctx.recipe.model.trust_remote_code)
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


def run_in_child(spec: dict[str, Any], work: Path) -> float:
    """Run GPTQModel in ``python -m tunekit_gptq.worker`` (see its docstring for why); its output streams
    through to our stderr. Returns the seconds GPTQModel took; raises PluginError when the child fails."""
    spec_path, result = work / "spec.json", work / "result.json"
    spec_path.write_text(json.dumps({**spec, "result": str(result)}), encoding="utf-8")
    tail: collections.deque[str] = collections.deque(maxlen=30)
    proc = subprocess.Popen([sys.executable, "-m", "tunekit_gptq.worker", str(spec_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            sys.stderr.write(line)
        code = proc.wait()
    except BaseException:  # Ctrl-C reaches the child too; never leave it running
        proc.kill()
        proc.wait()
        raise
    if code != 0 or not result.is_file():
        cause = next((x for x in reversed(tail) if x.strip() and not x.startswith(" ")), "no output")
        raise PluginError(f"{spec['method']}: GPTQModel stopped with exit code {code}: {cause}")
    return float(json.loads(result.read_text(encoding="utf-8"))["seconds"])


def quantize_through_gptqmodel(model: Any, ctx: StageContext, plugin: _GPTQModelQuantizer) -> tuple[Any, Path, dict]:
    """Quantize ``model`` with ``plugin``'s settings; returns (reloaded model, GPTQModel folder, stats).

    The folder lives until ``plugin`` is garbage-collected (or the process exits): ``save`` copies from it.
    """
    import torch

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
        dtype = resolve_dtype(params.dtype, device, method, getattr(model, "dtype", None))
        seconds = run_in_child({
            "method": method, "params": params.model_dump(mode="json"), "device": device,
            "dtype": "auto" if dtype == "auto" else str(dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "source": str(source), "out": str(out), "calibration": calibration,
        }, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(source, ignore_errors=True)
    weakref.finalize(plugin, shutil.rmtree, work, ignore_errors=True)

    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(out), device_map=device, trust_remote_code=False)
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
