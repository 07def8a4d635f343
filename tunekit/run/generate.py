"""``tunekit generate``: one completion from a tunekit output folder, or from a recipe's model and sampler.

An output folder is loaded as written (``AutoModelForCausalLM``, or PEFT's ``AutoPeftModelForCausalLM``
for an adapter) with its ``generation_config.json``; a recipe loads its model (``--model``, else
``model.path``, else the shipped SmolLM2) and uses only its sampler: the weight stages run with
``tunekit apply``. A sampler's ``assistant_model`` turns on speculative (assisted) decoding; its
``kv_cache`` picks the cache ``generate`` builds, and one this machine cannot run (offloaded without CUDA,
a quantized backend not installed) is refused before the weights load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunekit.core.errors import UsageError
from tunekit.core.kinds import special_token_ids
from tunekit.core.kv_cache import check_runnable


@dataclass
class Completion:
    text: str
    new_tokens: int
    seconds: float
    source: str
    generation: dict[str, Any]


def is_output_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file())


def load_output(folder: Path, dtype: Any, trust: bool = False) -> Any:
    """An output folder as a model: a full model, or an adapter loaded onto the base it names.

    Shared by ``generate`` and ``bench`` so both run what ``apply`` measured: bitsandbytes layers get the
    CPU kernel path the run evaluated with (:func:`tunekit.core.quantization.portable_cpu_kernels`).
    """
    from transformers import AutoModelForCausalLM

    from tunekit.run.saved_model import load_plugin_format

    own_format = load_plugin_format(folder)
    if own_format is not None:
        return own_format
    from tunekit.core.quantization import portable_cpu_kernels

    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        try:
            from peft import AutoPeftModelForCausalLM
        except ImportError:
            raise UsageError(f"{folder} holds a PEFT adapter: pip install 'tunekit[peft]'") from None
        from tunekit.core.backends import guard_peft_gptqmodel

        guard_peft_gptqmodel()
        try:
            model = AutoPeftModelForCausalLM.from_pretrained(str(folder), dtype=dtype, trust_remote_code=trust)
        except OSError as exc:
            raise UsageError(f"{folder}: cannot load the adapter's base model ({exc})") from None
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, trust_remote_code=trust)
    portable_cpu_kernels(model)
    return model


def check_cache_here(generation_file: Path) -> None:
    """Refuse a ``generation_config.json`` whose KV cache cannot run on this machine, before loading weights
    (``tunekit generate`` and ``tunekit bench`` both build the cache it names)."""
    if not generation_file.is_file():
        return
    import torch

    check_runnable(json.loads(generation_file.read_text(encoding="utf-8")), torch.cuda.is_available())


def _recorded_recipe(folder: Path) -> dict[str, Any]:
    recipe = folder / "tunekit-recipe.yaml"
    if not recipe.is_file():
        return {}
    data = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _assistant_from_recipe_file(folder: Path) -> str | None:
    sampler = _recorded_recipe(folder).get("sampler") or {}
    return sampler.get("assistant_model")


def _trust_from_recipe_file(folder: Path) -> bool:
    """The recorded ``model.trust_remote_code`` (False unless the run that wrote the folder said True)."""
    return (_recorded_recipe(folder).get("model") or {}).get("trust_remote_code") is True


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
        trust = _trust_from_recipe_file(folder)
        check_cache_here(folder / "generation_config.json")
        lm = load_output(folder, "auto", trust)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust)
        gen_file = folder / "generation_config.json"
        generation = GenerationConfig.from_pretrained(str(folder)) if gen_file.is_file() else lm.generation_config
        assistant_path = _assistant_from_recipe_file(folder)
        source = str(folder)
    else:
        from tunekit.core.recipe import load_recipe
        from tunekit.run.plan import choose_model, default_model_path

        resolved = load_recipe(target, overrides=list(overrides or []))
        from tunekit.run.model_source import resolve as resolve_model_source

        folder_or_none, gguf = choose_model(resolved, model)
        sampler = resolved.stages.get("sampler")
        if sampler is not None:
            check_runnable(sampler.generation_config(), torch.cuda.is_available())  # type: ignore[attr-defined]
        named = resolve_model_source(resolved, model, folder_or_none, gguf)
        folder = Path(named.ref) if named.ref else default_model_path()  # a hub id passes through str() as is
        trust = resolved.recipe.model.trust_remote_code
        kwargs: dict[str, Any] = {"trust_remote_code": trust, **({"gguf_file": gguf} if gguf else {})}
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        if resolved.recipe.model.offload is not None:
            import tempfile

            from tunekit.run.offload import recipe_load_kwargs

            scratch = Path(tempfile.mkdtemp(prefix="tunekit-offload-"))
            kwargs.update(recipe_load_kwargs(resolved.recipe.model.offload, folder, scratch))
        lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32 if gguf else "auto", **kwargs)
        generation = (GenerationConfig(**{**special_token_ids(lm.generation_config, tokenizer),
                                          **sampler.generation_config()})  # type: ignore[attr-defined]
                      if sampler else lm.generation_config)
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
        extra["assistant_model"] = AutoModelForCausalLM.from_pretrained(assistant_path, dtype=lm.dtype,
                                                                          trust_remote_code=trust).eval()
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
