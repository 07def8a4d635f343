"""The sampler's kv_cache knob: written where transformers reads it, run by generate and bench, refused
clearly where it cannot run, and counted by the estimator."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError
from transformers import GenerationConfig
from tunekit_sampling import SamplingParams, SamplingSampler

from tunekit.core.errors import UsageError
from tunekit.core.kv_cache import kv_bits, parse_spec
from tunekit.testing.builders import save_tiny_model


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """A cache backend that hangs in generate (optimum-quanto did on CPU) fails the test instead."""
    def fail(*_: object) -> None:
        raise TimeoutError(f"generate with a KV cache knob ran past {seconds}s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def keys(**kv_cache: object) -> dict[str, object]:
    values = SamplingSampler(SamplingParams(preset="deterministic", kv_cache=kv_cache)).generation_config()  # type: ignore[arg-type]
    return {k: values[k] for k in ("cache_implementation", "cache_config") if k in values}


def test_kv_cache_becomes_generation_config_keys() -> None:
    assert keys() == {}
    assert keys(implementation="quantized") == {"cache_implementation": "quantized", "cache_config": {"backend": "fp8"}}
    four = keys(implementation="quantized", nbits=4, residual_length=32)
    assert four == {"cache_implementation": "quantized",
                    "cache_config": {"backend": "hqq", "nbits": 4, "residual_length": 32}}
    assert keys(implementation="static") == {"cache_implementation": "static"}
    for values in (four, keys(implementation="offloaded")):
        GenerationConfig(max_new_tokens=4, **values).validate(strict=True)
    assert (kv_bits(four), kv_bits(keys(implementation="quantized")), kv_bits({})) == (4.0, 8.0, 16.0)


@pytest.mark.parametrize("bad", [{"implementation": "dynamic", "nbits": 4},
                                 {"implementation": "quantized", "backend": "fp8", "nbits": 4},
                                 {"implementation": "quantized", "backend": "quanto", "nbits": 8},
                                 {"implementation": "sliding_window"}, {"implementation": "sink"}])
def test_kv_cache_refuses_what_transformers_cannot_build(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SamplingParams(kv_cache=bad)  # type: ignore[arg-type]


def test_bench_spec_parsing() -> None:
    assert parse_spec("quantized:2:hqq")["cache_config"] == {"backend": "hqq", "nbits": 2}
    assert parse_spec("dynamic") == {}
    for bad in ("quantized:5", "static:4", "sink", "quantized:8:quanto"):
        with pytest.raises(UsageError):
            parse_spec(bad)


def output_with_cache(folder: Path, **kv_cache: object) -> Path:
    """A tiny model folder whose generation_config.json names the cache, as `tunekit apply` writes it."""
    save_tiny_model(folder)
    values = SamplingSampler(SamplingParams(preset="deterministic", max_new_tokens=12,
                                            kv_cache=kv_cache)).generation_config()  # type: ignore[arg-type]
    GenerationConfig(**values).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kv_cache", [{"implementation": "quantized"},
                                      {"implementation": "quantized", "nbits": 4, "residual_length": 8},
                                      {"implementation": "static"}])
def test_generate_runs_with_the_cache_the_output_names(tmp_path: Path, kv_cache: dict[str, object]) -> None:
    if kv_cache.get("nbits") == 4:
        pytest.importorskip("hqq")
    from tunekit.run.generate import generate

    folder = output_with_cache(tmp_path / "out", **kv_cache)
    with time_limit(120):
        done = generate(str(folder), "It is a truth universally acknowledged " * 8, chat=False)
    assert done.new_tokens == 12
    assert done.generation["cache_implementation"] == kv_cache["implementation"]


def test_bench_cache_holds_fewer_bytes_when_quantized(tmp_path: Path) -> None:
    from tunekit.serve.bench_backends import run_transformers

    folder = save_tiny_model(tmp_path / "m")
    text = "It is a truth universally acknowledged that a single man in possession of a good fortune. " * 40
    measured = {}
    for spec in ("dynamic", "quantized:8"):
        with time_limit(120):
            measured[spec] = run_transformers(folder, source=text, prompt_tokens=192, new_tokens=8, seq_len=32,
                                              eval_tokens=64, threads=1, kv_cache=parse_spec(spec))
    assert measured["quantized:8"]["kv_cache"] == "quantized"
    # fp8 stores 1 byte per element where the tiny fp32 model's dynamic cache stores 4
    ratio = measured["quantized:8"]["kv_cache_bytes"] / measured["dynamic"]["kv_cache_bytes"]
    assert 0.2 < ratio < 0.3


def test_offloaded_cache_is_refused_on_cpu_with_the_reason(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("the offloaded cache runs on a CUDA machine")
    from tunekit.run.generate import generate

    folder = output_with_cache(tmp_path / "out", implementation="offloaded")
    assert json.loads((folder / "generation_config.json").read_text())["cache_implementation"] == "offloaded"
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        generate(str(folder), "Hello", chat=False)


def test_checks_compare_weights_under_the_default_cache_when_the_named_one_cannot_run(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("the offloaded cache runs on a CUDA machine")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.run.checks.generations import generate_all
    from tunekit.run.checks.load import _default_cache_unless_runnable

    folder = output_with_cache(tmp_path / "out", implementation="offloaded")
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()  # its own generation_config says offloaded
    generation = GenerationConfig.from_pretrained(str(folder))
    _default_cache_unless_runnable(generation)
    assert generation.cache_implementation == "dynamic"
    [made] = generate_all(model, AutoTokenizer.from_pretrained(str(folder)), ["Hello there"], generation,
                          sampled=False, max_new_tokens=4)
    assert len(made.tokens) <= 4
