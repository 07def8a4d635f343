"""Load what ``tunekit check`` compares: a tunekit (or any Hugging Face) output folder and its base.

The base is ``--base``, else the path ``tunekit apply`` recorded in ``metrics.json`` (``load.path``),
else an adapter's ``base_model_name_or_path``, else the model card's ``base_model_path``. An adapter
folder is loaded onto its own fresh copy of the base, so the base stays untouched for comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunekit.core.errors import UsageError


@dataclass
class Pair:
    """The two models, their tokenizers, and what the output's recipe did (for the verdicts)."""

    output: Path
    base_path: Path
    base: Any
    tuned: Any
    tokenizer: Any
    base_tokenizer: Any
    generation_config: Any
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return bool(self.recipe.get("train"))

    @property
    def quantized(self) -> bool:
        return bool(self.recipe.get("quantizer"))

    @property
    def extended(self) -> bool:
        return bool(self.recipe.get("context"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def base_of(output: Path) -> str | None:
    """The base the output names, or None."""
    recorded = _read_json(output / "metrics.json").get("load", {})
    if isinstance(recorded, dict) and recorded.get("path"):
        return str(recorded["path"])
    adapter = _read_json(output / "adapter_config.json").get("base_model_name_or_path")
    if adapter:
        return str(adapter)
    card = output / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if text.startswith("---"):
            front = yaml.safe_load(text.split("---", 2)[1]) or {}
            if isinstance(front, dict) and front.get("base_model_path") not in (None, "unknown"):
                return str(front["base_model_path"])
    return None


def read_recipe(output: Path) -> dict[str, Any]:
    path = output / "tunekit-recipe.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _causal_lm(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype="auto").eval()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a causal LM from {path}: {exc}") from exc


def _default_cache_unless_runnable(generation: Any) -> None:
    """The checks compare weights, base and tuned under one config: a KV cache this machine cannot build
    (``offloaded`` without CUDA, a quantized backend not installed) gives way to the default cache."""
    import torch

    from tunekit.core.kv_cache import check_runnable

    try:
        check_runnable(generation.to_dict(), torch.cuda.is_available())
    except UsageError:
        generation.cache_implementation = "dynamic"  # not None: generate fills a None from the model's config
        generation.cache_config = None


def load_pair(output: Path, base: str | Path | None = None) -> Pair:
    """Load the output and its base; one-line errors when either is missing."""
    from transformers import AutoTokenizer, GenerationConfig

    if not output.is_dir():
        raise UsageError(f"{output}: no such output folder")
    is_adapter = (output / "adapter_config.json").is_file() and not (output / "config.json").is_file()
    if not is_adapter and not (output / "config.json").is_file():
        raise UsageError(f"{output}: neither config.json nor adapter_config.json (not a model folder)")
    named = base if base is not None else base_of(output)
    if named is None:
        raise UsageError(f"{output}: no base recorded (metrics.json load.path); pass --base MODEL")
    base_path = Path(named).expanduser()
    if not (base_path / "config.json").is_file():
        raise UsageError(f"base {base_path}: no config.json (pass a local model folder with --base)")
    base_model = _causal_lm(base_path)
    if is_adapter:
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(_causal_lm(base_path), str(output)).eval()
    else:
        tuned = _causal_lm(output)
    tok_source = output if (output / "tokenizer_config.json").is_file() else base_path
    tokenizer = AutoTokenizer.from_pretrained(str(tok_source))
    base_tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    for tok in (tokenizer, base_tokenizer):
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
    gen_file = output / "generation_config.json"
    generation = GenerationConfig.from_pretrained(str(output)) if gen_file.is_file() else tuned.generation_config
    _default_cache_unless_runnable(generation)
    return Pair(output=output, base_path=base_path, base=base_model, tuned=tuned, tokenizer=tokenizer,
                base_tokenizer=base_tokenizer, generation_config=generation, recipe=read_recipe(output))
