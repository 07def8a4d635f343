"""What autograd keeps for backward with and without train.chunked_loss / train.activation_offload.

    python bench/train_memory.py                 # SmolLM2-135M's architecture, random bf16 weights, seq 512
    python bench/train_memory.py --seq-len 1024

One forward of a causal LM (every weight trainable) under ``torch.autograd.graph.saved_tensors_hooks`` that
add up the bytes of each distinct tensor saved for backward (weights excluded): the activation memory a GPU
holds at the end of the forward, measured the same way on any device. Four setups: transformers' own loss,
``chunked_causal_lm_loss`` (tunekit's ``train.chunked_loss``), each with gradient checkpointing; under
checkpointing, what is saved is what ``train.activation_offload`` moves to CPU RAM. The logits-shaped part
is compared with the estimator's logits term (``tunekit.advise.estimate.logits_bytes``) and the checkpointed
part with its 2·h bytes per token per layer. Writes ``bench/results/train-memory-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def saved_bytes(model: Any, batch: dict[str, Any], chunked: bool) -> dict[str, float]:
    """Bytes autograd keeps after one forward (by distinct storage), the logits-shaped share, and the time of
    forward + backward."""
    import torch

    from tunekit.run.train_loss import chunked_causal_lm_loss, hidden_and_head

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    vocab = model.config.vocab_size
    kept: dict[int, tuple[int, bool]] = {}

    def pack(t: Any) -> Any:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = (storage.nbytes(), t.dim() > 0 and t.shape[-1] == vocab)
        return t

    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if chunked:
            hidden, head, _ = hidden_and_head(model, batch)
            loss = chunked_causal_lm_loss(hidden, head, batch["labels"])
        else:
            loss = model(**batch).loss
    loss.backward()
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return {"saved_mb": sum(n for n, _ in kept.values()) / 1e6,
            "logits_mb": sum(n for n, logits in kept.values() if logits) / 1e6, "step_s": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunekit.advise.estimate import logits_bytes
    from tunekit.core.arch import ModelArch
    from tunekit.core.fixtures import smollm2_path

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(smollm2_path())
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).train()
    ids = torch.randint(0, config.vocab_size, (1, args.seq_len))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    arch = ModelArch.from_hf_config(config.to_dict())
    tokens = args.seq_len
    rows: dict[str, dict[str, float]] = {}
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for chunked in (False, True):
            name = ("chunked loss" if chunked else "HF loss") + (" + checkpointing" if checkpointing else "")
            rows[name] = saved_bytes(model, batch, chunked)
            print(name, rows[name], flush=True)
    result = {
        "model": "SmolLM2-135M architecture, random bf16 weights", "seq_len": tokens, "machine": platform.machine(),
        "torch": torch.__version__, "rows": rows,
        "estimator": {"logits_mb_hf": logits_bytes(arch, tokens, False) / 1e6,
                      "logits_mb_chunked": logits_bytes(arch, tokens, True) / 1e6,
                      "checkpointed_inputs_mb": arch.layers * 2 * arch.hidden * tokens / 1e6},
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"train-memory-{'gpu' if torch.cuda.is_available() else 'cpu'}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Saved-for-backward memory, {result['model']}, seq {tokens}", "",
             "| setup | saved MB | logits-shaped MB | fwd+bwd s |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['saved_mb']:.1f} | {v['logits_mb']:.1f} | {v['step_s']} |" for k, v in rows.items()]
    est = result["estimator"]
    lines += ["", f"Estimator: logits {est['logits_mb_hf']:.1f} MB on the HF loss path (10 bytes per logit, "
              f"including the fp32 grad that backward adds), {est['logits_mb_chunked']:.1f} MB chunked; "
              f"checkpointed layer inputs {est['checkpointed_inputs_mb']:.1f} MB (what activation offload moves "
              "to CPU RAM)."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
