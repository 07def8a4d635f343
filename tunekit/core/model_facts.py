"""Architecture facts for ``--model``: the built-in catalog, plugin models, local configs, ``--params 7B``.

The catalog is data (``tunekit/core/model_catalog.json``, read by ``model_catalog``: JSON parses in a
fraction of a millisecond where YAML took tens of milliseconds of ``tunekit recommend``'s start-up); a plugin
adds models through the ``tunekit_models`` hook. Lookups
are case-insensitive over ids, Hugging Face ids and aliases, so ``meta-llama/Llama-3.1-8B`` and
``llama-3.1-8b`` name the same facts.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.arch import ModelArch
from tunekit.core.errors import UsageError

if TYPE_CHECKING:
    from tunekit.core.registry import Registry

#: short catalog keys -> ModelArch field names
_RENAMES = {"tied": "tied_embeddings", "ctx": "max_context", "theta": "rope_theta", "params": "published_params_b"}
#: catalog-only keys (not ModelArch fields), kept beside the arch
_EXTRA_KEYS = ("hf_id", "extra_params_b", "id", "release", "licence", "instruct", "skills")
_ARCH_FIELDS = {f.name for f in fields(ModelArch)}


def arch_from_entry(entry: dict[str, Any]) -> ModelArch:
    """Build a ``ModelArch`` from a catalog or plugin mapping (short or long field names)."""
    data = {_RENAMES.get(k, k): v for k, v in entry.items()}
    name = data.pop("id", None) or data.get("name")
    if not name:
        raise UsageError(f"model entry without an id: {entry!r}")
    data["name"] = str(name)
    aliases = [str(a) for a in data.get("aliases") or []]
    if data.get("hf_id"):
        aliases.insert(0, str(data["hf_id"]))
    data["aliases"] = tuple(aliases)
    unknown = set(data) - _ARCH_FIELDS - set(_EXTRA_KEYS)
    if unknown:
        raise UsageError(f"model '{name}': unknown fields {sorted(unknown)}")
    try:
        return ModelArch(**{k: v for k, v in data.items() if k in _ARCH_FIELDS})
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise UsageError(f"model '{name}': {exc}") from exc


def catalog_entries() -> tuple[dict[str, Any], ...]:
    """The raw catalog rows (for the integrity test and ``--list-models``)."""
    from tunekit.core.model_catalog import MODELS

    return MODELS


def _key(name: str) -> str:
    return name.strip().lower()


class Catalog:
    """Models by case-insensitive id, Hugging Face id and alias."""

    def __init__(self, archs: list[ModelArch]) -> None:
        self.models: dict[str, ModelArch] = {}
        self._index: dict[str, str] = {}
        for arch in archs:
            self.add(arch)

    def add(self, arch: ModelArch) -> None:
        """Add (or replace) a model; later additions win, so plugins can correct built-in facts."""
        self.models[arch.name] = arch
        for name in (arch.name, *arch.aliases):
            self._index[_key(name)] = arch.name

    def find(self, name: str) -> ModelArch | None:
        key = _key(name)
        if key in self._index:
            return self.models[self._index[key]]
        # "meta-llama/Llama-3.1-8B" also matches by its last path segment
        tail = key.rsplit("/", 1)[-1]
        return self.models.get(self._index.get(tail, ""))

    def __len__(self) -> int:
        return len(self.models)


def load_catalog(registry: Registry | None = None) -> Catalog:
    """The built-in catalog plus models from the ``tunekit_models`` hook (a bad entry is skipped)."""
    catalog = Catalog([arch_from_entry(dict(row)) for row in catalog_entries()])
    if registry is not None:
        for plugin, returned in registry.call_safely("tunekit_models"):
            for entry in returned if isinstance(returned, (list, tuple)) else [returned]:
                try:
                    catalog.add(entry if isinstance(entry, ModelArch) else arch_from_entry(dict(entry)))
                except (UsageError, TypeError, ValueError) as exc:
                    registry.record_failure(plugin, f"tunekit_models(): {exc}")
    return catalog


_PARAMS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmbt]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1e9, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_params(text: str | float) -> float:
    """``7B`` / ``135M`` / ``0.5`` (billions) -> parameter count."""
    if isinstance(text, (int, float)):
        return float(text) * 1e9
    match = _PARAMS_RE.match(text)
    if not match:
        raise UsageError(f"--params: expected a size like 7B, 135M or 1.5, got '{text}'")
    return float(match.group(1)) * _SCALE[match.group(2).lower()]


def generic_arch(params: str | float) -> ModelArch:
    """A Llama-shaped dense model of about ``params`` parameters, for ``--params 7B``.

    Shapes follow the Llama-2/3 scaling: head_dim 128, SwiGLU intermediate ~= 8/3·h rounded to 256,
    GQA with 8 KV heads above 4B, 32k vocab; depth from params ~= 12·L·h² with L ~= h/128.
    """
    count = parse_params(params)
    if count < 1e6:
        raise UsageError(f"--params: {count:.0f} parameters is too small for a language model")
    step = 512 if count >= 1e9 else 128
    hidden = step * max(2, round((count / 12 * 128) ** (1 / 3) / step))
    intermediate = 256 * math.ceil(hidden * 8 / 3 / 256)
    heads = hidden // 128
    kv_heads = 8 if count > 4e9 and heads % 8 == 0 else heads
    vocab = 32000
    per_layer = hidden * (2 * heads * 128 + 2 * kv_heads * 128) + 3 * hidden * intermediate
    layers = max(1, round((count - 2 * vocab * hidden) / per_layer))
    label = f"{count / 1e9:g}B" if count >= 1e9 else f"{count / 1e6:g}M"
    return ModelArch(name=f"generic-{label}", layers=layers, hidden=hidden, intermediate=intermediate,
                     heads=heads, kv_heads=kv_heads, head_dim=128, vocab=vocab, max_context=4096,
                     family="generic", published_params_b=count / 1e9)


def resolve_model(model: str | None = None, *, params: str | None = None,
                  registry: Registry | None = None) -> ModelArch:
    """The arch for ``--model`` (catalog id/alias, folder or config.json) or ``--params``."""
    if params and not model:
        return generic_arch(params)
    if not model:
        raise UsageError("name a model: --model ID (see `tunekit estimate --list-models`) or --params 7B")
    found = load_catalog(registry).find(model)
    if found is not None:
        return found
    path = Path(model).expanduser()
    if path.exists():
        return ModelArch.from_path(path)
    if params:
        return generic_arch(params)
    close = _suggest(model, load_catalog(registry))
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown model '{model}' (not in the catalog, not a local folder or config.json).{hint} "
                     "Use --params 7B for a generic dense model.")


def _suggest(name: str, catalog: Catalog) -> list[str]:
    import difflib

    return difflib.get_close_matches(_key(name).rsplit("/", 1)[-1], list(catalog.models), n=3, cutoff=0.6)


def model_facts(arch: ModelArch) -> dict[str, Any]:
    """The plain-data facts the rules engine and ``--json`` see."""
    total = arch.param_count()
    return {
        "id": arch.name,
        "family": arch.family,
        "params_b": round(total / 1e9, 3),
        "active_params_b": round(arch.param_count(active_only=True) / 1e9, 3),
        "layers": arch.layers,
        "hidden": arch.hidden,
        "intermediate": arch.intermediate,
        "heads": arch.heads,
        "kv_heads": arch.kv_heads,
        "head_dim": arch.head_dim,
        "vocab": arch.vocab,
        "tied_embeddings": arch.tied_embeddings,
        "max_context": arch.max_context,
        "rope_type": arch.rope_type,
        "rope_theta": arch.rope_theta,
        "experts": arch.experts,
        "active_experts": arch.active_experts,
        "moe": bool(arch.experts),
    }
