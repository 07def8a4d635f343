"""Tokenizer and chat-template metadata for GGUF, as convert_hf_to_gguf.py writes it.

Two tokenizer families cover the Llama-family models we ship: GPT-2 style byte-level BPE
(Llama 3, Qwen2, SmolLM2: ``tokenizer.ggml.model = gpt2`` with tokens, token types, merges and the
pre-tokenizer name) and SentencePiece-style BPE with byte fallback (Llama 2, Mistral: ``llama``,
through ``gguf.LlamaHfVocab``). The pre-tokenizer is identified like the converter does: the token
ids of a fixed check text, hashed (``get_vocab_base_pre``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf

logger = logging.getLogger(__name__)

# The check text of convert_hf_to_gguf.py's get_vocab_base_pre, byte for byte.
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
    "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "  # noqa: RUF001
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

#: sha256 of the check text's token ids -> llama.cpp pre-tokenizer (convert_hf_to_gguf.py)
KNOWN_PRE = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",
}


def _looks_special(token: str) -> bool:
    """``does_token_look_special`` of the converter, for added tokens not flagged special."""
    return (token.startswith("<|") and token.endswith("|>")) or token in {"<pad>", "<mask>"}


def pre_tokenizer(tokenizer: Any) -> str:
    """llama.cpp's name for this tokenizer's pre-tokenization regex, or ``default`` if unknown."""
    ids = tokenizer.encode(CHECK_TEXT)  # with special tokens, as the converter hashes it
    digest = sha256(str(ids).encode()).hexdigest()
    name = KNOWN_PRE.get(digest)
    if name is None:
        logger.warning("unknown BPE pre-tokenizer (hash %s): writing 'default'; llama.cpp may split text "
                       "differently from transformers", digest)
        return "default"
    return name


def _is_byte_fallback(tok_dir: Path) -> bool:
    tj = tok_dir / "tokenizer.json"
    if not tj.is_file():
        return (tok_dir / "tokenizer.model").is_file()
    model = json.loads(tj.read_text(encoding="utf-8")).get("model", {})
    return bool(model.get("byte_fallback"))


def add_vocab(writer: gguf.GGUFWriter, tokenizer: Any, vocab_size: int) -> str:
    """Add tokens, types, merges, special ids and the chat template; return the tokenizer model name."""
    with tempfile.TemporaryDirectory(prefix="tunekit-tok-") as tmp:
        tok_dir = Path(tmp)
        tokenizer.save_pretrained(tok_dir)
        if _is_byte_fallback(tok_dir):
            _add_llama_hf(writer, tok_dir)
            return "llama"
        _add_gpt2(writer, tokenizer, tok_dir, vocab_size)
        return "gpt2"


def _add_gpt2(writer: gguf.GGUFWriter, tokenizer: Any, tok_dir: Path, vocab_size: int) -> None:
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ValueError(f"tokenizer has ids up to {max(vocab.values())} but the model's vocab_size is {vocab_size}")
    reverse = {i: t for t, i in vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            special = bool(getattr(decoder.get(i), "special", False))
            types.append(gguf.TokenType.CONTROL if special or _looks_special(token) else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(tok_dir, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)


def _add_llama_hf(writer: gguf.GGUFWriter, tok_dir: Path) -> None:
    vocab = gguf.LlamaHfVocab(tok_dir)
    tokens, scores, types = [], [], []
    for text, score, toktype in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(toktype)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(tok_dir, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
