"""GGUF export: the writer round-trips through transformers' gguf loader, K-quants go through
llama.cpp (when llama-cpp-python is installed), widths that do not fit a block fall back per tensor,
and the Ollama Modelfile carries the sampler and the chat template."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import tunekit_gguf
from tunekit_gguf.modelfile import modelfile_text, parse_modelfile
from tunekit_gguf.types import GGUF_TYPES, gguf_type

from tunekit.core.errors import RecipeError
from tunekit.core.formats import parse_format, resolve_exporters
from tunekit.core.registry import load_registry

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(
    not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed (pip install 'tunekit[gguf]'): K-quants and "
    "the llama.cpp client cannot run")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# -- registration and recipe formats ---------------------------------------------------------------


def test_tunekit_exporters_hook_registers_gguf() -> None:
    registry = load_registry(entry_points=False, extra_modules=[tunekit_gguf])
    assert registry.get("exporter", "gguf") is tunekit_gguf.GGUFExporter
    assert not registry.failures


def test_output_formats_name_exporters() -> None:
    registry = load_registry(entry_points=False, extra_modules=[tunekit_gguf])
    assert parse_format("gguf:Q4_K_M") == ("gguf", "Q4_K_M")
    assert parse_format({"gguf": {"type": "q8_0"}}) == ("gguf", {"type": "q8_0"})
    exporters = resolve_exporters(["hf", "gguf:Q5_K_M", {"gguf": "q8_0"}, {"gguf": {"type": "f16"}}], registry)
    assert [e.params.type for e in exporters] == ["q5_k_m", "q8_0", "f16"]  # type: ignore[attr-defined]
    with pytest.raises(RecipeError, match=r"output.formats\[0\].*q9_x"):
        resolve_exporters(["gguf:q9_x"], registry)
    with pytest.raises(RecipeError, match="unknown export format 'onnx'"):
        resolve_exporters(["onnx"], registry)


def test_type_table_matches_params() -> None:
    field = tunekit_gguf.GGUFParams.model_fields["type"]
    assert set(field.annotation.__args__) == set(GGUF_TYPES)  # type: ignore[union-attr]
    assert gguf_type("Q4-K-M").ftype == "MOSTLY_Q4_K_M"
    import gguf

    for t in GGUF_TYPES.values():  # every ftype exists in gguf's own enum
        assert gguf.LlamaFileType[t.ftype].name == t.ftype


# -- Modelfile -------------------------------------------------------------------------------------


def test_modelfile_carries_sampler_context_and_template() -> None:
    generation = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                  "repetition_penalty": 1.1}
    text = modelfile_text("m-Q4_K_M.gguf", generation, 4096, CHATML)
    parsed = parse_modelfile(text)
    assert parsed["from"] == "./m-Q4_K_M.gguf"
    assert parsed["parameters"] == {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                                    "repeat_penalty": 1.1, "num_ctx": 4096}
    assert parsed["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert "{{ .Content }}<|im_end|>" in parsed["template"] and "range .Messages" in parsed["template"]


def test_modelfile_greedy_and_unknown_template() -> None:
    parsed = parse_modelfile(modelfile_text("m.gguf", {"do_sample": False}, 2048, "{{ bos_token }}{{ x }}"))
    assert parsed["parameters"] == {"temperature": 0.0, "num_ctx": 2048}
    assert "template" not in parsed  # Ollama then reads tokenizer.chat_template from the GGUF


# -- the writer on tiny models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small byte-level BPE tokenizer trained here (GPT-2 style, like SmolLM2/Qwen2/Llama 3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = Path("/work/shared/data/corpus/austen_emma.txt")
    lines = corpus.read_text(encoding="utf-8")[:200_000].splitlines() if corpus.is_file() else [
        "It is a truth universally acknowledged, that a single man in possession of a good fortune."] * 50
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def tiny_model(kind: str, hidden: int = 128, intermediate: int = 256, vocab: int = 1024) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                  num_attention_heads=4 if hidden % 4 == 0 and hidden // 4 % 2 == 0 else 2,
                  num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=512,
                  bos_token_id=1, eos_token_id=2, tie_word_embeddings=kind == "qwen2")
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    with torch.no_grad():  # random init has tiny weights; make q/k matter so a wrong permutation shows
        for name, p in model.named_parameters():
            if "proj" in name and p.dim() == 2:
                p.mul_(3.0)
    return model.eval()


def _logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def _reload(path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_f16_round_trip_gives_the_same_logits(kind: str, tokenizer: Any, tmp_path: Path) -> None:
    from tunekit_gguf.writer import write_gguf

    model = tiny_model(kind)
    path = tmp_path / "m-F16.gguf"
    report = write_gguf(model, tokenizer, path, "f16")
    assert report.arch == kind and not report.fallbacks
    ids = tokenizer("Emma Woodhouse, handsome, clever, and rich")["input_ids"]
    ref, got = _logits(model, ids), _logits(_reload(path), ids)
    assert (got - ref).abs().max() < 2e-2 * ref.abs().max()
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_q8_0_round_trip_is_close_and_metadata_complete(tokenizer: Any, tmp_path: Path) -> None:
    from tunekit_gguf.inspect import metadata, summarize
    from tunekit_gguf.writer import write_gguf

    model = tiny_model("llama")
    path = tmp_path / "m-Q8_0.gguf"
    write_gguf(model, tokenizer, path, "q8_0")
    facts = summarize(path)
    assert facts["type_share"]["Q8_0"] > 0.99 and 8.4 < facts["bpw"] < 8.6
    meta = metadata(path, "tokenizer.ggml.model", "tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                    "llama.rope.dimension_count")
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.chat_template"] == CHATML
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert meta["llama.rope.dimension_count"] == 32
    ids = tokenizer("Emma Woodhouse, handsome, clever, and rich")["input_ids"]
    ref, got = _logits(model, ids), _logits(_reload(path), ids)
    rel = float((got - ref).norm() / ref.norm())
    assert 0 < rel < 0.05


def test_rows_not_a_multiple_of_the_block_fall_back_to_f16(tokenizer: Any, tmp_path: Path) -> None:
    from tunekit_gguf.inspect import summarize
    from tunekit_gguf.writer import write_gguf

    model = tiny_model("llama", hidden=72, intermediate=160)  # 72 % 32 != 0: rows reading hidden cannot Q8_0
    report = write_gguf(model, tokenizer, tmp_path / "odd.gguf", "q8_0")
    assert "blk.0.attn_q.weight" in report.fallbacks and "blk.0.ffn_gate.weight" in report.fallbacks
    assert "blk.0.ffn_down.weight" not in report.fallbacks  # its rows are 160 wide: a multiple of 32
    types = summarize(tmp_path / "odd.gguf")["tensor_types"]
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.ffn_down.weight"] == "Q8_0"


def test_unsupported_architecture_is_refused(tokenizer: Any, tmp_path: Path) -> None:
    from tunekit_gguf.writer import write_gguf

    from tunekit.core.errors import TunekitError

    model = tiny_model("llama")
    model.config.architectures = ["GPT2LMHeadModel"]
    with pytest.raises(TunekitError, match="GGUF export supports"):
        write_gguf(model, tokenizer, tmp_path / "x.gguf", "f16")
    with pytest.raises(TunekitError, match=r"llama\.cpp mixture"):
        write_gguf(tiny_model("llama"), tokenizer, tmp_path / "x.gguf", "q4_k_m")


def test_exporter_writes_gguf_and_modelfile(tokenizer: Any, tmp_path: Path) -> None:
    from transformers import GenerationConfig

    from tunekit.core.context import StageContext

    model = tiny_model("llama")
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.95, top_k=20)
    exporter = tunekit_gguf.GGUFExporter(tunekit_gguf.GGUFParams(type="f16", verify=False, num_ctx=1024))
    ctx = StageContext(recipe=None, log=lambda _msg: None)  # type: ignore[arg-type]
    result = exporter.export(model, tokenizer, tmp_path, ctx)
    assert result["path"] == "model-F16.gguf" and (tmp_path / "model-F16.gguf").is_file()
    mf = parse_modelfile((tmp_path / "Modelfile").read_text())
    assert mf["from"] == "./model-F16.gguf"
    assert mf["parameters"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "num_ctx": 1024}


# -- llama.cpp: K-quants and the real client -------------------------------------------------------


@needs_llama_cpp
def test_kquant_through_llama_cpp_with_per_tensor_fallback(tokenizer: Any, tmp_path: Path) -> None:
    from tunekit_gguf.inspect import summarize
    from tunekit_gguf.kquant import quantize
    from tunekit_gguf.writer import write_gguf

    wide = tiny_model("llama", hidden=256, intermediate=512)
    write_gguf(wide, tokenizer, tmp_path / "w.gguf", "f16")
    quantize(tmp_path / "w.gguf", tmp_path / "w-q4km.gguf", "q4_k_m")
    types = summarize(tmp_path / "w-q4km.gguf")["tensor_types"]
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    narrow = tiny_model("llama", hidden=128, intermediate=384)  # 128 % 256 != 0: llama.cpp falls back
    write_gguf(narrow, tokenizer, tmp_path / "n.gguf", "f16")
    report = quantize(tmp_path / "n.gguf", tmp_path / "n-q4km.gguf", "q4_k_m")
    types = summarize(tmp_path / "n-q4km.gguf")["tensor_types"]
    assert types["blk.0.attn_q.weight"] not in {"Q4_K", "F16"}  # llama.cpp's fallback (Q5_0)
    # every tensor llama.cpp gave another type is reported, with the type it got (for metrics.json)
    assert report.fallbacks["blk.0.attn_q.weight"] == "q4_K -> q5_0 (128 columns, not a multiple of 256)"
    assert "of 21 tensor(s) required fallback quantization" in report.log
    assert {name for name, kind in types.items() if kind in {"Q5_0", "Q8_0"} and name != "output.weight"} \
        == set(report.fallbacks)


@needs_llama_cpp
def test_exporter_records_llama_cpp_fallbacks_for_metrics(tokenizer: Any, tmp_path: Path,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    """What llama.cpp quantized to another type reaches the exporter's result (metrics.json export.gguf),
    and its log stays out of the terminal (the run keeps it in backends.log)."""
    from tunekit.core.context import StageContext

    lines: list[str] = []
    exporter = tunekit_gguf.GGUFExporter(tunekit_gguf.GGUFParams(type="q4_k_m", verify=False, modelfile=False))
    ctx = StageContext(recipe=None, log=lines.append)  # type: ignore[arg-type]
    result = exporter.export(tiny_model("llama", hidden=128, intermediate=384), tokenizer, tmp_path, ctx)
    assert result["encoder"] == "llama.cpp llama_model_quantize"
    assert result["fallbacks"]["blk.1.ffn_up.weight"].startswith("q4_K -> q5_0")
    assert any("tensors written as another type than q4_k_m" in line for line in lines)
    printed = capfd.readouterr()
    assert "falling back to" not in printed.err + printed.out  # llama.cpp's own log was collected, not printed


@needs_llama_cpp
def test_llama_cpp_loads_generates_and_agrees_with_transformers(tokenizer: Any, tmp_path: Path) -> None:
    from tunekit_gguf.writer import write_gguf

    from tunekit.serve.bench_backends import transformers_perplexity
    from tunekit.serve.llamacpp import generate, load, perplexity

    model = tiny_model("llama", hidden=256, intermediate=512)
    write_gguf(model, tokenizer, tmp_path / "m.gguf", "f16")
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune, " * 8
    ids = tokenizer(text)["input_ids"][:256]
    llm = load(tmp_path / "m.gguf", n_ctx=128, logits_all=True)
    gen = generate(llm, ids[:16], 8)
    assert gen["new_tokens"] >= 1
    ours = perplexity(llm, ids, 128)["perplexity"]
    ref = transformers_perplexity(model, ids, 128)["perplexity"]
    assert abs(ours / ref - 1) < 0.01
    strided = perplexity(llm, ids, 128, stride=64)  # the pipeline's sliding windows, same plan on both sides
    assert abs(strided["perplexity"] / transformers_perplexity(model, ids, 128, stride=64)["perplexity"] - 1) < 0.01
