"""``tunekit generate``: one completion from a tunekit output folder, or from a recipe's model and sampler.

An output folder is loaded as written (``AutoModelForCausalLM``, or PEFT's ``AutoPeftModelForCausalLM``
for an adapter) with its ``generation_config.json``; a recipe loads its model (``--model``, else
``model.path``, else the shipped SmolLM2) and uses only its sampler: the weight stages run with
``tunekit apply``. A sampler's ``assistant_model`` turns on speculative (assisted) decoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunekit.errors import UsageError


@dataclass
class Completion:
    text: str
    new_tokens: int
    seconds: float
    source: str
    generation: dict[str, Any]


def is_output_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file())


def _load_folder(folder: Path, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    from tunekit.saved_model import load_plugin_format

    own_format = load_plugin_format(folder)
    if own_format is not None:
        return own_format

    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        try:
            from peft import AutoPeftModelForCausalLM
        except ImportError:
            raise UsageError(f"{folder} holds a PEFT adapter: pip install 'tunekit[peft]'") from None
        return AutoPeftModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)


def _assistant_from_recipe_file(folder: Path) -> str | None:
    recipe = folder / "tunekit-recipe.yaml"
    if not recipe.is_file():
        return None
    data = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    sampler = data.get("sampler") or {}
    return sampler.get("assistant_model")


def generate(target: str, prompt: str, *, model: str | None = None, overrides: list[str] | None = None,
             max_new_tokens: int | None = None, chat: bool | None = None, seed: int | None = None) -> Completion:
    """Generate one completion for ``prompt`` from an output folder or a recipe."""
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    path = Path(target).expanduser()
    assistant_path: str | None = None
    if is_output_folder(path):
        folder = path
        lm = _load_folder(folder, "auto")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        gen_file = folder / "generation_config.json"
        generation = GenerationConfig.from_pretrained(str(folder)) if gen_file.is_file() else lm.generation_config
        assistant_path = _assistant_from_recipe_file(folder)
        source = str(folder)
    else:
        from tunekit.pipeline import choose_model, default_model_path
        from tunekit.recipe import load_recipe

        resolved = load_recipe(target, overrides=list(overrides or []))
        folder_or_none, gguf = choose_model(resolved, model)
        folder = folder_or_none or default_model_path()
        kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        if resolved.recipe.model.offload is not None:
            import tempfile

            from tunekit.offload import recipe_load_kwargs

            scratch = Path(tempfile.mkdtemp(prefix="tunekit-offload-"))
            kwargs.update(recipe_load_kwargs(resolved.recipe.model.offload, folder, scratch))
        lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32 if gguf else "auto", **kwargs)
        sampler = resolved.stages.get("sampler")
        generation = GenerationConfig(**sampler.generation_config()) if sampler else lm.generation_config  # type: ignore[attr-defined]
        assistant_path = getattr(getattr(sampler, "params", None), "assistant_model", None)
        source = f"{target} ({folder})"
    lm.eval()
    if max_new_tokens is not None:
        generation.max_new_tokens = max_new_tokens
    if generation.pad_token_id is None:
        pad = tokenizer.pad_token_id
        generation.pad_token_id = pad if pad is not None else tokenizer.eos_token_id
    extra: dict[str, Any] = {}
    if assistant_path:
        extra["assistant_model"] = AutoModelForCausalLM.from_pretrained(assistant_path, dtype=lm.dtype).eval()
    use_chat = chat if chat is not None else bool(getattr(tokenizer, "chat_template", None))
    if use_chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    else:
        inputs = tokenizer(prompt, return_tensors="pt")
    if seed is not None:
        torch.manual_seed(seed)
    device = next(lm.parameters()).device
    inputs = inputs.to(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = lm.generate(**inputs, generation_config=generation, **extra)
    elapsed = time.perf_counter() - start
    new = out[0, inputs["input_ids"].shape[1]:]
    return Completion(text=str(tokenizer.decode(new, skip_special_tokens=True)), new_tokens=int(new.numel()),
                      seconds=round(elapsed, 3), source=source,
                      generation=json.loads(generation.to_json_string(use_diff=True)))
