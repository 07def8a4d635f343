"""Which device a run's model is on, so plugins that pick kernels by ``ctx.device`` see the truth.

Two moments: before loading, a quantize-on-load method builds its ``from_pretrained`` kwargs from the
device the weights will land on (:func:`load_device`); after loading, the device is read off the model
itself (:func:`model_device`). Both answer "cpu" or an accelerator such as "cuda:0".
"""

from __future__ import annotations

from typing import Any

SPREADING_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
"""``device_map`` strings with which accelerate spreads the model over every GPU it finds."""


def _name(device: Any) -> str:
    """``0`` -> "cuda:0", ``"cuda"`` -> "cuda:0", ``torch.device("cpu")`` -> "cpu"; "disk"/"meta" count as cpu."""
    if isinstance(device, int):
        return f"cuda:{device}"
    text = str(device)
    if text == "cuda":
        return "cuda:0"
    if text in ("disk", "meta"):
        return "cpu"
    return text


def load_device(device_map: str | None, *, quantize_on_load: bool, cuda_available: bool) -> str:
    """Where ``from_pretrained`` will put the weights, known before it runs.

    No ``device_map``: the CPU, except that transformers puts a bitsandbytes (quantize-on-load) model on
    the current GPU when there is one. A spreading map ("auto", ...) uses the GPUs when there are any.
    """
    if device_map is None:
        return "cuda:0" if quantize_on_load and cuda_available else "cpu"
    if device_map in SPREADING_MAPS:
        return "cuda:0" if cuda_available else "cpu"
    return _name(device_map)


def model_device(model: Any) -> str:
    """The device a loaded model computes on: the first accelerator of its ``hf_device_map`` (a model spread
    over GPUs and CPU computes on the GPUs), else where its first parameter lives, else "cpu"."""
    placed = getattr(model, "hf_device_map", None)
    if isinstance(placed, dict) and placed:
        names = [_name(where) for where in placed.values()]
        return next((name for name in names if name != "cpu"), "cpu")
    try:
        first = next(iter(model.parameters()))
    except (AttributeError, StopIteration, TypeError):
        return "cpu"
    return _name(first.device)
