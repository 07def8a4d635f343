"""In-process stage plugins for the recipe tests, so they do not depend on the built-in plugins.

Registered with ``load_registry(entry_points=False, extra_modules=[this module])``: the same
hooks and validation as an installed plugin, without an entry point.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tunekit import hookimpl
from tunekit.core.kinds import Adapter, ContextExtender, PluginParams, Pruner, Quantizer, Sampler
from tunekit.core.registry import Registry, load_registry


class FakeQuantizer(Quantizer):
    name = "fq"
    summary = "fake trainable quantizer"
    trainable = True

    class Params(PluginParams):
        bits: int = Field(4, ge=2, le=8, description="Bits per weight")
        group_size: int | None = Field(128, ge=1, description="Weights per scale")


class FakePackedQuantizer(Quantizer):
    name = "fq-packed"
    summary = "fake quantizer PEFT cannot train on"

    class Params(PluginParams):
        bits: int = Field(4, ge=2, le=8)


class FakeLora(Adapter):
    name = "fake-lora"
    summary = "fake LoRA"

    class Params(PluginParams):
        r: int = Field(8, ge=1, le=1024, description="Rank")
        alpha: float = Field(16.0, gt=0, description="Scale numerator")
        dropout: float = Field(0.0, ge=0, lt=1, description="Dropout")
        target: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], description="Modules")


class FakeRope(ContextExtender):
    name = "fake-rope"
    summary = "fake RoPE scaling"

    class Params(PluginParams):
        factor: float = Field(2.0, gt=1, le=64, description="Scaling factor")
        type: Literal["linear", "yarn"] = Field("linear", description="Scaling type")


class FakePruner(Pruner):
    name = "fake-prune"
    summary = "fake magnitude pruning"

    class Params(PluginParams):
        sparsity: float = Field(0.5, ge=0, lt=1, description="Fraction zeroed")
        pattern: Literal["unstructured", "2:4"] = Field("unstructured", description="Pattern")


class FakeSampling(Sampler):
    name = "sampling"
    summary = "fake sampling controls"

    class Params(PluginParams):
        temperature: float = Field(1.0, ge=0, le=5, description="Temperature")
        top_p: float = Field(1.0, gt=0, le=1, description="Nucleus")
        top_k: int = Field(0, ge=0, description="Top-k")

    def generation_config(self) -> dict[str, Any]:
        return self.params.model_dump()


#: Extra recipe directories that ``tunekit_recipe_dirs`` reports (tests append to it).
RECIPE_DIRS: list[Path] = []


@hookimpl
def tunekit_quantizers() -> list[type[Quantizer]]:
    return [FakeQuantizer, FakePackedQuantizer]


@hookimpl
def tunekit_adapters() -> list[type[Adapter]]:
    return [FakeLora]


@hookimpl
def tunekit_context_extenders() -> list[type[ContextExtender]]:
    return [FakeRope]


@hookimpl
def tunekit_pruners() -> list[type[Pruner]]:
    return [FakePruner]


@hookimpl
def tunekit_samplers() -> list[type[Sampler]]:
    return [FakeSampling]


@hookimpl
def tunekit_recipe_dirs() -> list[Path]:
    return list(RECIPE_DIRS)


def fake_registry() -> Registry:
    """A registry holding only the fake plugins above."""
    registry = load_registry(entry_points=False, extra_modules=[sys.modules[__name__]])
    assert not registry.failures, registry.failures
    return registry
