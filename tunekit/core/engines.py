"""The serving engines tunekit knows, by the name recipes and ``--engine`` use. Plain data (torch- and
pydantic-free): the recipe schema, the estimator and the serve advice all read this one tuple.

``hf`` is transformers' ``generate`` (prefills the whole prompt at once); ``vllm`` and ``llama.cpp`` prefill
in chunks and pre-allocate a KV pool, so the same model and context need less activation memory there.
"""

from __future__ import annotations

ENGINES = ("hf", "vllm", "llama.cpp")
