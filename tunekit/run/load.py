"""The pipeline's load stage: a recipe's model and tokenizer as transformers loads them.

Everything a load decides lives here (dtype, device map or offload, GGUF files, the quantize-on-load
method, ``trust_remote_code`` passed explicitly) and the one-line errors for model files that cannot load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.context import StageContext
from tunekit.core.errors import InputFileError, TunekitError
from tunekit.run.devices import load_device, model_device
from tunekit.run.measure import size_mb
from tunekit.run.plan import default_model_path

if TYPE_CHECKING:
    from tunekit.core.kinds import Plugin


def stage_load(plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    """Load the recipe's model and tokenizer: dtype, device placement or offload, the GGUF file, the
    quantize-on-load method's kwargs; then record where the weights landed (``ctx.device``) and the arch."""
    import pickle

    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.core.arch import ModelArch
    from tunekit.core.kinds import Quantizer

    recipe = ctx.recipe
    path = ctx.model_path
    if path is None:
        path = ctx.model_path = default_model_path()
    gguf = ctx.run.gguf_file
    # explicit, never None: with None transformers asks on stdin before running a folder's auto_map code
    trust = {"trust_remote_code": recipe.model.trust_remote_code}
    kwargs: dict[str, Any] = dict(trust)
    if recipe.model.dtype != "auto":
        kwargs["dtype"] = getattr(torch, recipe.model.dtype)
    elif gguf:
        kwargs["dtype"] = torch.float32  # the GGUF loader dequantizes; fp32 is what every CPU kernel runs
    else:
        kwargs["dtype"] = "auto"
    if recipe.model.device_map:
        kwargs["device_map"] = recipe.model.device_map
    if recipe.model.offload is not None:
        from tunekit.run.offload import recipe_load_kwargs

        scratch = Path(ctx.run.checkpoint_dir or ctx.output_dir or ".")
        kwargs.update(recipe_load_kwargs(recipe.model.offload, Path(path), scratch))
    if gguf:
        kwargs["gguf_file"] = gguf
    quantizer = ctx.run.stages.get("quantizer")
    if ctx.run.unquantized:
        quantizer = None  # the baseline load of a quantize-on-load run: the unmodified base
    on_load = isinstance(quantizer, Quantizer) and quantizer.on_load
    ctx.device = load_device(recipe.model.device_map, quantize_on_load=on_load,
                             cuda_available=torch.cuda.is_available())
    if isinstance(quantizer, Quantizer) and on_load:
        kwargs.update(quantizer.load_kwargs(ctx))
    ctx.log(f"loading {path}{' (' + gguf + ')' if gguf else ''}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **trust, **({"gguf_file": gguf} if gguf else {}))
        loaded = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except pickle.UnpicklingError as exc:
        bins = sorted(path.glob("*.bin")) if path.is_dir() else []
        where = bins[0] if len(bins) == 1 else path
        raise InputFileError(f"{where}: torch's safe loader refuses this pickle (it holds objects other than "
                             "tensors, which could run code): convert it to safetensors from a trusted copy") from exc
    except SafetensorError as exc:  # a hub download checked only now; local folders are checked before loading
        raise InputFileError(f"{path}: a .safetensors file is damaged: {exc}") from exc
    except (OSError, ValueError) as exc:
        # transformers' hub errors run to several lines with advice for its own API: keep the first
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TunekitError(f"cannot load a causal LM from {path}: {reason}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    ctx.tokenizer = tokenizer
    ctx.device = model_device(loaded)  # where the weights really landed, for every later stage
    ctx.arch = ModelArch.from_hf_config(loaded.config.to_dict(), name=path.name)
    if isinstance(quantizer, Quantizer) and quantizer.on_load:
        loaded = quantizer.prepare_loaded(loaded, ctx)  # before any forward (see Quantizer.prepare_loaded)
    loaded.eval()
    ctx.record("load", path=str(path), size_mb=size_mb(loaded), params=sum(p.numel() for p in loaded.parameters()),
               dtype=str(loaded.dtype).replace("torch.", ""), device=ctx.device)
    if recipe.model.offload is not None:
        from tunekit.run.offload import placement

        ctx.record("load", offload=placement(loaded))
    return loaded
