"""Tiny models and a tiny tokenizer for the adapter and training tests (no downloads).

The tokenizer is a byte-level BPE trained in well under a second on the shipped Austen instruction
data, so loss curves mean something; the models are built from configs with widths that are multiples
of 128 (every CPU kernel, bitsandbytes' 4-bit path included, accepts them).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
INSTRUCT = REPO / "tunekit" / "data" / "austen_instruct.jsonl"
VOCAB = 512
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=512)


@functools.cache
def tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    for line in INSTRUCT.read_text().splitlines():
        record = json.loads(line)
        texts += [record["instruction"], record["input"], record["output"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_model(kind: str = "llama", seed: int = 0) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[kind]
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config_cls(**TINY, bos_token_id=0, eos_token_id=1, pad_token_id=2))


def write_text_jsonl(path: Path, n: int = 40) -> Path:
    """A JSONL of ``text`` records made from the shipped instruction data's answers."""
    lines = INSTRUCT.read_text().splitlines()[:n]
    path.write_text("".join(json.dumps({"text": json.loads(x)["output"]}) + "\n" for x in lines))
    return path
