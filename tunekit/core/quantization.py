"""Shared pieces of the quantizer plugins: calibration params, kept-16-bit matching, group checks.

Torch-free at import: the declarations (bits per weight, which modules stay 16-bit) are read by the
estimator and the recommender without loading a model; the helpers that walk a model import torch
lazily. A third-party quantizer may reuse these as well as the built-ins (rtn, bnb, gptq) do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunekit.core.errors import UsageError
from tunekit.core.kinds import PluginParams

if TYPE_CHECKING:
    from tunekit.core.texts import calibration_windows as calibration_windows
    from tunekit.core.texts import read_text as read_text


def __getattr__(name: str) -> Any:
    """``calibration_windows`` and ``read_text`` (reading text is ``core.texts``' job; plugins imported them from
    here) resolve on first use: the quantizers import this module to declare their params, and ``tunekit
    recommend`` loads every quantizer without reading a line of text."""
    if name in {"calibration_windows", "read_text"}:
        from tunekit.core import texts

        return getattr(texts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_KEEP_16BIT = ("lm_head",)
"""Linear modules never quantized by default. Embeddings are not linear layers, so every backend
already leaves them in 16-bit; the lm_head is the one linear that costs the most quality when rounded."""


class CalibrationParams(PluginParams):
    """Where the calibration text for GPTQ/AWQ comes from, and how much of it to use."""

    file: str | None = Field(None, description="A .txt file, a folder of .txt files or a JSONL with 'text' "
                                              "(default: the run's --data, else the shipped text)")
    n_samples: int = Field(64, ge=1, le=4096, description="Number of calibration windows")
    seq_len: int = Field(512, ge=16, le=32768, description="Tokens per calibration window")


def keep_patterns_field(default: tuple[str, ...] = DEFAULT_KEEP_16BIT) -> Any:
    """The ``keep_16bit`` field every quantizer shares (names or dotted paths of linear modules)."""
    return Field(default, description="Linear modules left in 16-bit: a module name ('lm_head', 'down_proj') "
                                      "or a dotted path prefix ('model.layers.0')")


def is_kept(module_name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether ``module_name`` matches a keep pattern on whole dotted components."""
    padded = f".{module_name}."
    return any(f".{p.strip('.')}." in padded or module_name.startswith(p.rstrip(".") + ".") for p in patterns)


def validate_group_size(value: int) -> int:
    if value == 0 or value < -1:
        raise ValueError("must be -1 (one group per output channel) or a positive group width")
    return value


def group_overhead_bits(bits: int, group_size: int, *, scale_bits: int = 16, zero: bool = True) -> float:
    """Bits per weight spent on one scale (and one packed zero) per group (docs/reference.md: ~16/g + 4/g).

    ``group_size == -1`` means one group per output row: the overhead depends on the layer's input
    width and is below 0.05 bit for widths >= 576, so it is declared as 0.
    """
    if group_size <= 0:
        return 0.0
    return (scale_bits + (bits if zero else 0)) / group_size


# -- model walks (lazy torch) --------------------------------------------------------------


CPU_REPACK_SWITCH = "support_avx512bf16_for_cpu"
"""bitsandbytes' per-layer switch for its AVX512-BF16 CPU repack (see tunekit_bnb.fixups for why it is off)."""


def portable_cpu_kernels(model: Any) -> int:
    """Turn bitsandbytes' AVX512-BF16 CPU repack off on every layer that has it; returns how many.

    Why: tunekit evaluates quantize-on-load models with the repack off (it breaks QLoRA's gradients), so
    every tunekit loader of a saved 4-bit output (bench, generate) does the same and measures what the
    run measured, whatever the CPU. A plain ``from_pretrained`` elsewhere may take the bf16 path.
    """
    switched = 0
    for module in model.modules():
        if hasattr(module, CPU_REPACK_SWITCH):
            setattr(module, CPU_REPACK_SWITCH, False)
            switched += 1
    return switched


def quantizable_linears(model: Any, keep: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``name -> nn.Linear`` for every linear layer that will be quantized (kept ones excluded)."""
    from torch import nn

    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not is_kept(name, keep)}


def check_group_size(widths: dict[str, int], group_size: int, method: str) -> None:
    """Refuse a group size that does not divide every quantized layer's input width.

    SmolLM2-135M has hidden size 576: g128 leaves a partial group in q/k/v/gate/up, which GPTQ
    kernels reject and RTN would silently treat differently, so the error names a size that works.
    """
    if group_size <= 0 or not widths:
        return
    bad = {name: w for name, w in widths.items() if w % group_size}
    if not bad:
        return
    from math import gcd

    common = 0
    for w in widths.values():
        common = gcd(common, w)
    fits = [g for g in (256, 128, 64, 32, 16) if common % g == 0]
    example = next(iter(bad.items()))
    hint = f"group sizes that divide every width: {fits}" if fits else "use group_size: -1 (per channel)"
    raise UsageError(
        f"{method}: group_size {group_size} does not divide the input width of {len(bad)} quantized layer(s) "
        f"(e.g. {example[0]}: {example[1]}); {hint}"
    )


def check_model_group_size(model: Any, group_size: int, keep: tuple[str, ...] | list[str], method: str) -> None:
    check_group_size({n: m.in_features for n, m in quantizable_linears(model, keep).items()}, group_size, method)
