"""The built-in model catalog: ``model_catalog.json`` beside this module, one mapping per model.

JSON, not a Python table: it is data any tool reads, and ``json`` parses it in a fraction of a millisecond
where compiling the same table as Python source took ~3 ms of every start-up without a bytecode cache
(YAML took 15-40 ms).

Architecture facts come from each model's published ``config.json`` on the Hugging Face hub, and
``params`` is the parameter count its model card publishes (billions). Keys: id, hf_id, family, layers,
hidden, intermediate, heads, kv_heads, head_dim, vocab, tied (tie_word_embeddings), ctx
(max_position_embeddings), rope_type, theta (rope_theta), experts, active_experts, moe_intermediate,
params, aliases; the facts the model ranking of ``tunekit recommend`` (no --model) reads: release
(year-month of the first public weights), licence (the model card's), instruct (an instruction-tuned
variant is published), skills (code / reasoning: a code- or reasoning-tuned variant or distillation).
``extra_params_b`` counts weights outside the decoder (the vision tower of multimodal
Gemma 3), so the catalog test can compare the decoder count plus that with the published total.
Plugins add models through the ``tunekit_models`` hook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("model_catalog.json")

MODELS: tuple[dict[str, Any], ...] = tuple(json.loads(CATALOG_FILE.read_text(encoding="utf-8"))["models"])
