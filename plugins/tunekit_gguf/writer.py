"""Write an in-memory Hugging Face Llama-family model as a GGUF file with the ``gguf`` package.

Follows llama.cpp's ``convert_hf_to_gguf.py`` (``TextModel.set_gguf_parameters``, ``LlamaModel``,
``Qwen2Model``): the same metadata keys, tensor names from ``gguf.TensorNameMap``, Llama's q/k row
permutation (HF's rotate-half RoPE layout to GGML's interleaved one), 1-D tensors kept F32, and a
quantized tensor whose row is not a multiple of the block width falls back to F16 as the converter does.
Importing this module imports torch and numpy; the plugin's ``__init__`` never does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from tunekit import TunekitError
from tunekit_gguf.types import gguf_type
from tunekit_gguf.vocab import add_vocab

#: HF architecture -> (GGUF architecture, whether q/k rows are permuted to GGML's RoPE layout)
ARCHS: dict[str, tuple[gguf.MODEL_ARCH, bool]] = {
    "LlamaForCausalLM": (gguf.MODEL_ARCH.LLAMA, True),
    "MistralForCausalLM": (gguf.MODEL_ARCH.LLAMA, True),
    "Qwen2ForCausalLM": (gguf.MODEL_ARCH.QWEN2, False),
}
_SKIP_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class WriteReport:
    path: Path
    arch: str
    tensor_types: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)
    """Tensor -> why it was written in another type than asked."""


def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """``LlamaModel.permute`` of convert_hf_to_gguf.py: rotate-half pairs -> interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _hf_arch(model: Any) -> str:
    config = model.config
    archs = getattr(config, "architectures", None) or []
    name = archs[0] if archs else type(model).__name__
    if name not in ARCHS:
        known = ", ".join(ARCHS)
        raise TunekitError(f"GGUF export supports {known}; this model is {name or config.model_type!r}")
    return name


def _rope(config: Any) -> dict[str, Any]:
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if "rope_theta" not in params and getattr(config, "rope_theta", None) is not None:
        params["rope_theta"] = config.rope_theta
    return params


def _llama3_rope_factors(rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """``rope_freqs`` of convert_hf_to_gguf.py's LlamaModel for rope_type llama3 (Llama 3.1+)."""
    base = float(rope.get("rope_theta", 10000.0))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _add_hparams(w: gguf.GGUFWriter, config: Any, ftype: gguf.LlamaFileType, name: str) -> dict[str, Any]:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    w.add_name(name)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    rope = _rope(config)
    w.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    rope_type = str(rope.get("rope_type", rope.get("type", "default")))
    if rope_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rope["factor"]))
        orig = rope.get("original_max_position_embeddings") or config.max_position_embeddings
        w.add_rope_scaling_orig_ctx_len(int(orig))
    elif rope_type not in {"default", "llama3"}:
        raise TunekitError(f"GGUF export: llama.cpp has no equivalent of rope_type '{rope_type}' "
                           "(supported: default, linear, yarn, llama3)")
    w.add_file_type(ftype)
    return {"head_dim": head_dim, "rope": rope, "rope_type": rope_type}


def _encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType, name: str,
            report: WriteReport) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """Encode one tensor, falling back to F16 when its rows do not fit the block (as the converter)."""
    if data.ndim <= 1 or qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.QuantError as exc:
        report.fallbacks[name] = f"{exc}; written as F16"
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def write_gguf(model: Any, tokenizer: Any, path: Path, type_name: str = "f16", *, name: str = "model") -> WriteReport:
    """Write ``model`` (a transformers causal LM, merged, not quantized) and its tokenizer to ``path``.

    ``type_name`` is one of the directly encoded types (f32, f16, bf16, q8_0, q4_0).
    """
    gtype = gguf_type(type_name)
    if not gtype.direct:
        raise TunekitError(f"{gtype.name} is a llama.cpp mixture: write f16, then tunekit_gguf.kquant.quantize")
    config = model.config
    hf_arch = _hf_arch(model)
    arch, permute_qk = ARCHS[hf_arch]
    ftype = gguf.LlamaFileType[gtype.ftype]
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0}[gtype.name]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = WriteReport(path=path, arch=gguf.MODEL_ARCH_NAMES[arch])
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    try:
        facts = _add_hparams(writer, config, ftype, name)
        if qtype not in {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}:
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_vocab(writer, tokenizer, config.vocab_size)
        for tname, data in _tensors(model, config, arch, permute_qk, facts):
            encoded, used = _encode(data, qtype, tname, report)
            writer.add_tensor(tname, encoded, raw_dtype=used)
            report.tensor_types[tname] = used.name
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return report


def _tensors(model: Any, config: Any, arch: gguf.MODEL_ARCH, permute_qk: bool,
             facts: dict[str, Any]) -> Any:
    """(GGUF name, float32 numpy array) for every tensor llama.cpp needs, in state-dict order."""
    import torch

    tmap = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if facts["rope_type"] == "llama3":
        yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", _llama3_rope_factors(
            facts["rope"], facts["head_dim"])
    with torch.no_grad():
        for hf_name, tensor in model.state_dict().items():
            if hf_name.endswith(_SKIP_SUFFIXES) or (tied and hf_name == "lm_head.weight"):
                continue
            new_name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise TunekitError(f"GGUF export: no llama.cpp name for tensor '{hf_name}' "
                                   "(merge adapters and unpack quantized layers before exporting)")
            data = tensor.detach().to(torch.float32).cpu().numpy()
            if permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = permute(data, heads, heads)
            elif permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = permute(data, heads, kv_heads)
            yield new_name, data
