"""Fixtures and contract tests for plugin authors: ``from tunekit.testing import PrunerContract``.

A plugin's test file subclasses the contract of its kind and names the class under test::

    from tunekit.testing import PrunerContract
    from tunekit_foo import FooPruner

    class TestFoo(PrunerContract):
        plugin_class = FooPruner
        params = {"sparsity": 0.5}          # optional: the params the apply checks use

The contract checks what tunekit relies on without reading the plugin's code: the name and the
``Params`` schema the registry and ``tunekit plugins show`` read; that the torch-free declarations the
estimator and the recommender read (bits per weight, trainable parameters, sparsity, context factor)
match what ``apply`` really does to a tiny Llama built from a config (no download); that the plugin
loads through a recipe; and that errors a user can cause are tunekit errors. tunekit's built-in plugins
run the same contract (``tests/plugins/test_contracts.py``).

The fixtures (``tiny_model``, ``tiny_model_dir``, ``tiny_tokenizer``, ``stage_context``) are plain pytest
fixtures: the contracts carry them, and other tests get them with ``pytest_plugins = ["tunekit.testing"]``
in a ``conftest.py``. This module imports pytest but never torch at import time: heavy imports live in
the fixtures and tests, so the module is cheap to import and the torch-free rule is testable.

The builders (``build_tiny_model``, ``build_tokenizer``, ``save_tiny_model``, ``make_context``) work without
pytest fixtures; tunekit's own tests build every tiny model and tokenizer through them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunekit.core.context import StageContext
from tunekit.testing.builders import (
    FAMILIES,
    TINY_LLAMA,
    build_tiny_model,
    build_tokenizer,
    decoder_linears,
    make_context,
    registry_with,
    save_tiny_model,
    saved_bits_per_weight,
)
from tunekit.testing.contracts import (
    AdapterContract,
    ContextContract,
    PluginContract,
    PrunerContract,
    QuantizerContract,
    SamplerContract,
)

__all__ = [
    "FAMILIES",
    "TINY_LLAMA",
    "AdapterContract",
    "ContextContract",
    "PluginContract",
    "PrunerContract",
    "QuantizerContract",
    "SamplerContract",
    "build_tiny_model",
    "build_tokenizer",
    "decoder_linears",
    "make_context",
    "registry_with",
    "save_tiny_model",
    "saved_bits_per_weight",
    "stage_context",
    "tiny_model",
    "tiny_model_dir",
    "tiny_tokenizer",
]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    """The tiny byte-level BPE (512 tokens) matching ``tiny_model``'s vocabulary."""
    return build_tokenizer()


@pytest.fixture
def tiny_model() -> Any:
    """A fresh tiny Llama (hidden 256, intermediate 512, 2 layers, GQA 4/2 heads, 256 positions)."""
    return build_tiny_model()


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """The tiny Llama and tokenizer saved as a Hugging Face folder."""
    return save_tiny_model(tmp_path / "tiny-llama")


@pytest.fixture
def stage_context(tiny_model_dir: Path) -> StageContext:
    """A StageContext pointing at ``tiny_model_dir`` with the tiny tokenizer and the model's arch."""
    return make_context(tiny_model_dir)


