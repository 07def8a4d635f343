"""The two memory options of ``train``: a chunked causal-LM loss and activations kept in CPU RAM.

transformers' loss path materialises the whole ``tokens x vocab`` logits in bf16, its fp32 upcast and that
upcast's gradient: about 10 bytes per logit, gigabytes at a 128k vocabulary (``LOGIT_BYTES_HF`` in the
estimator). ``train.chunked_loss`` runs the decoder without its lm_head, then for each chunk of
``CHUNK_TOKENS`` tokens: lm_head -> fp32 -> cross-entropy, summed, each chunk under
``torch.utils.checkpoint`` so backward recomputes the chunk's logits instead of keeping them (the torchtune
``CEWithChunkedOutputLoss`` / Liger idea, in plain torch). ``train.activation_offload`` wraps the forward in
``torch.autograd.graph.save_on_cpu``: every tensor autograd saves (with gradient checkpointing, each layer's
input) lives in CPU RAM and comes back for backward (Unsloth's "offloaded" checkpointing).

Imported inside ``training.train`` only: it imports torch and transformers at module level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer

from tunekit.core.errors import UsageError

CHUNK_TOKENS = 1024
"""Tokens per loss chunk: the fp32 logits alive at once are CHUNK_TOKENS x vocab x 4 bytes (0.5 GB at 128k)."""

IGNORE_INDEX = -100


def chunked_causal_lm_loss(hidden: Any, lm_head: Any, labels: Any, num_items: Any = None, *,
                           chunk: int = CHUNK_TOKENS, logit_scale: float | None = None,
                           softcap: float | None = None) -> Any:
    """The causal-LM loss of ``hidden`` (``[batch, seq, h]``, the decoder's normed output) against ``labels``,
    computed ``chunk`` tokens at a time; equal to transformers' ``ForCausalLMLoss`` (same shift, same
    ``num_items`` normalisation) without ever holding the full logits."""
    shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    flat = hidden.reshape(-1, hidden.shape[-1])
    targets = shifted.reshape(-1).to(flat.device)

    def chunk_loss(h: Any, y: Any) -> Any:
        logits = lm_head(h).float()
        if logit_scale is not None:
            logits = logits * logit_scale
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum")

    total = flat.new_zeros((), dtype=torch.float32)
    for start in range(0, flat.shape[0], chunk):
        part = checkpoint(chunk_loss, flat[start:start + chunk], targets[start:start + chunk], use_reentrant=False)
        total = total + part
    if num_items is None:
        return total / (targets != IGNORE_INDEX).sum()
    if torch.is_tensor(num_items):
        num_items = num_items.to(total.device)
    return total / num_items


def decoder_and_head(model: Any) -> tuple[Any, Any, Any]:
    """The decoder stack, the lm_head and the config under any wrapper (PEFT, DDP): what the chunked loss
    calls separately. A model without ``get_decoder`` cannot be split this way: a usage error, not a guess."""
    inner = model.module if hasattr(model, "module") else model  # DDP
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()  # PEFT: the transformers model, with its adapter layers in place
    get_decoder = getattr(inner, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if decoder is None or decoder is inner or head is None:
        raise UsageError(f"train.chunked_loss: {type(inner).__name__} has no separate decoder and lm_head; "
                         "set chunked_loss: false")
    return decoder, head, inner.config


def hidden_and_head(model: Any, inputs: dict[str, Any], unwrapped: Any = None) -> tuple[Any, Any, Any]:
    """Run the whole model (through its wrappers, so DDP and PEFT see their forward) asking for the last
    position's logits only, and catch the decoder's output on the way: the hidden states to chunk over.
    ``unwrapped`` is the model under the launcher's wrappers (the Trainer's ``accelerator.unwrap_model``)."""
    decoder, head, config = decoder_and_head(model if unwrapped is None else unwrapped)
    caught: list[Any] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        caught.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handle = decoder.register_forward_hook(keep)
    try:
        model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=1)
    finally:
        handle.remove()
    if len(caught) != 1:
        raise UsageError(f"train.chunked_loss: the decoder ran {len(caught)} times in one forward")
    return caught[0], head, config


@contextlib.contextmanager
def offloaded_activations(enabled: bool) -> Iterator[None]:
    """Saved tensors go to CPU RAM (pinned on a GPU machine, so the copies back overlap with compute)."""
    if not enabled:
        yield
        return
    with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
        yield


class MemoryOptionsTrainer(Trainer):
    """transformers' Trainer whose loss honours ``train.chunked_loss`` and ``train.activation_offload``."""

    def __init__(self, *args: Any, chunked_loss: bool = False, activation_offload: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunked_loss = chunked_loss
        self.activation_offload = activation_offload

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        with offloaded_activations(self.activation_offload and model.training):
            if not self.chunked_loss:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            hidden, head, config = hidden_and_head(model, inputs, self.accelerator.unwrap_model(model))
            # as the Trainer does for a model's own loss: divide by the tokens of the whole accumulated batch
            # only where the model takes that count, so its gradient-accumulation scaling stays right
            count = num_items_in_batch if self.model_accepts_loss_kwargs else None
            text = config.get_text_config() if hasattr(config, "get_text_config") else config
            loss = chunked_causal_lm_loss(hidden, head, inputs["labels"], count,
                                          logit_scale=getattr(text, "logit_scale", None),
                                          softcap=getattr(text, "final_logit_softcapping", None))
        if self.args.average_tokens_across_devices and count is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, {"loss": loss}) if return_outputs else loss
