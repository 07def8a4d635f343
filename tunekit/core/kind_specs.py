"""One table describes every kind of plugin; the others (hooks, bases, recipe slots, pipeline stages,
model-card titles, contract tests, scaffold choices) are derived from it, so they cannot disagree.

Pure data: no pydantic, no torch, so the CLI can name kinds and hooks at start-up for free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindSpec:
    """What tunekit knows about one kind of plugin."""

    kind: str
    """The kind's name, and its recipe slot (``quantizer: {method: nf4}``); exporters have no slot."""
    hook: str
    """The registration hook that returns this kind's plugin classes."""
    base: str
    """Name of the base class in ``tunekit`` (``tunekit.core.kinds``) a plugin of this kind subclasses."""
    title: str
    """How the model card and ``tunekit plugins`` name it."""
    stage: str | None
    """The pipeline stage that runs it (``tunekit_run_stage``'s name), None for exporters (run by export)."""


KIND_SPECS: tuple[KindSpec, ...] = (
    # in the order their pipeline stages run: context is set at load, pruning before quantization (a
    # quantizer's scales must see the final weights), the adapter on the final base, sampling last
    KindSpec("context", "tunekit_context_extenders", "ContextExtender", "Context extension", "context"),
    KindSpec("pruner", "tunekit_pruners", "Pruner", "Pruning", "prune"),
    KindSpec("quantizer", "tunekit_quantizers", "Quantizer", "Quantization", "quantize"),
    KindSpec("adapter", "tunekit_adapters", "Adapter", "Adapter", "adapter"),
    KindSpec("sampler", "tunekit_samplers", "Sampler", "Sampling", "sampler"),
    KindSpec("exporter", "tunekit_exporters", "Exporter", "Export format", None),
)

BY_KIND = {spec.kind: spec for spec in KIND_SPECS}
RECIPE_KINDS = tuple(spec.kind for spec in KIND_SPECS if spec.stage is not None)
"""The five kinds a recipe names one plugin of, in pipeline order."""
STAGE_KIND = {spec.stage: spec.kind for spec in KIND_SPECS if spec.stage is not None}
"""Pipeline stage name -> the recipe slot whose plugin runs it."""
KIND_HOOKS = {spec.kind: spec.hook for spec in KIND_SPECS}
"""kind -> the registration hook that provides it."""
