"""Evaluation: strided-window perplexity on held-out text, and ROUGE-L / BLEU against references.

Perplexity follows the sliding-window recipe of the transformers docs ("Perplexity of fixed-length
models"): windows of ``seq_len`` tokens advance by ``stride``; each window scores only the tokens the
previous windows did not, so with ``stride < seq_len`` every scored token sees ``seq_len - stride``
tokens of context or more, and with ``stride == seq_len`` windows are disjoint (each window's first
token is then not scored: nothing inside the window predicts it).

ROUGE-L (F1 of the longest common subsequence, Lin 2004) and BLEU-4 (corpus level, brevity penalty,
Papineni et al. 2002, with add-one smoothing of the 2-4-gram precisions) are computed here on
whitespace tokens: a few lines each, so no extra dependency; numbers are comparable between tunekit
runs, not to a specific library's tokenisation. torch is imported inside the functions.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError
from tunekit.core.texts import eval_text

ProgressFactory = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]

__all__ = ["Perplexity", "bleu", "eval_text", "perplexity", "perplexity_of_ids", "reference_scores", "rouge_l"]


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    nll: float
    tokens: int
    windows: int


def _windows(n_tokens: int, seq_len: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(begin, end, scored) per window: ``scored`` is how many of the window's last tokens count."""
    prev_end = 0
    begin = 0
    while prev_end < n_tokens:
        end = min(begin + seq_len, n_tokens)
        scored = min(end - prev_end, end - begin - 1)  # a window's first token has no prediction in it
        if scored > 0:
            yield begin, end, scored
        prev_end = end
        if end == n_tokens:
            break
        begin += stride


def _no_progress(description: str, total: int | None) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda _n: None)


def perplexity_of_ids(model: Any, ids: list[int], *, seq_len: int = 256, stride: int | None = None,
                      progress: ProgressFactory | None = None, label: str = "perplexity") -> Perplexity:
    """Perplexity of ``model`` on the token ids, with windows of ``seq_len`` advancing by ``stride``."""
    import torch
    import torch.nn.functional as F

    stride = stride or seq_len
    if stride > seq_len:
        raise UsageError(f"eval.stride {stride} is larger than eval.seq_len {seq_len}: tokens would be skipped")
    if len(ids) < 2:
        raise UsageError("evaluation text has fewer than 2 tokens")
    device = next(model.parameters()).device
    plan = list(_windows(len(ids), seq_len, stride))
    total_nll, total_tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with (progress or _no_progress)(label, len(plan)) as advance, torch.no_grad():
        for begin, end, scored in plan:
            chunk = torch.tensor([ids[begin:end]], device=device)
            logits = model(input_ids=chunk).logits[0, :-1].float()
            targets = chunk[0, 1:]
            losses = F.cross_entropy(logits, targets, reduction="none")
            total_nll += float(losses[-scored:].sum())
            total_tokens += scored
            advance(1)
    if was_training:
        model.train()
    mean = total_nll / total_tokens
    return Perplexity(perplexity=math.exp(mean), nll=mean, tokens=total_tokens, windows=len(plan))


def perplexity(model: Any, tokenizer: Any, text: str, *, seq_len: int = 256, stride: int | None = None,
               max_tokens: int | None = None, progress: ProgressFactory | None = None,
               label: str = "perplexity") -> Perplexity:
    """Tokenize ``text`` (at most ``max_tokens`` tokens) and measure the model's perplexity on it."""
    budget = len(text) if max_tokens is None else max_tokens * 8  # ~4-6 characters a token; margin
    ids: list[int] = tokenizer(text[:budget], add_special_tokens=False)["input_ids"]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    return perplexity_of_ids(model, ids, seq_len=seq_len, stride=stride, progress=progress, label=label)


# -- reference metrics -----------------------------------------------------------------------


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidates: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 over pairs (whitespace tokens, lower-cased)."""
    scores = []
    for cand, ref in zip(candidates, references, strict=True):
        c, r = cand.lower().split(), ref.lower().split()
        lcs = _lcs(c, r)
        if not c or not r or not lcs:
            scores.append(0.0)
            continue
        p, rec = lcs / len(c), lcs / len(r)
        scores.append(2 * p * rec / (p + rec))
    return sum(scores) / len(scores) if scores else 0.0


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(candidates: list[str], references: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 with brevity penalty; add-one smoothing for n > 1 so short outputs are not all 0."""
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for cand, ref in zip(candidates, references, strict=True):
        c, r = cand.lower().split(), ref.lower().split()
        cand_len, ref_len = cand_len + len(c), ref_len + len(r)
        for n in range(1, max_n + 1):
            cn, rn = _ngrams(c, n), _ngrams(r, n)
            matches[n - 1] += sum(min(k, rn[g]) for g, k in cn.items())
            totals[n - 1] += max(len(c) - n + 1, 0)
    if cand_len == 0 or matches[0] == 0:
        return 0.0
    logs = [math.log(matches[0] / totals[0])]
    logs += [math.log((matches[i] + 1) / (totals[i] + 1)) for i in range(1, max_n)]
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return brevity * math.exp(sum(logs) / max_n)


def read_references(path: Path) -> list[tuple[str, str]]:
    """(prompt, reference) pairs from JSONL records with ``prompt`` and ``reference`` (or instruction/output)."""
    if not path.is_file():
        raise UsageError(f"eval.references: {path} not found")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        prompt = record.get("prompt", record.get("instruction"))
        reference = record.get("reference", record.get("output"))
        if prompt is None or reference is None:
            raise UsageError(f"{path}:{number}: a record needs 'prompt' and 'reference' (or instruction/output)")
        pairs.append((str(prompt), str(reference)))
    if not pairs:
        raise UsageError(f"{path}: no records")
    return pairs


def reference_scores(model: Any, tokenizer: Any, path: Path, tasks: Sequence[str], *, max_new_tokens: int = 64,
                     progress: ProgressFactory | None = None) -> dict[str, float]:
    """Greedy completions for each prompt, scored against the references with the requested metrics."""
    import torch

    pairs = read_references(path)
    device = next(model.parameters()).device
    outputs = []
    with (progress or _no_progress)("reference metrics", len(pairs)) as advance, torch.no_grad():
        for prompt, _ in pairs:
            ids = tokenizer(prompt, return_tensors="pt").to(device)
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
            advance(1)
    refs = [r for _, r in pairs]
    scores: dict[str, float] = {"references": float(len(pairs))}
    if "rouge" in tasks:
        scores["rouge_l"] = round(rouge_l(outputs, refs), 4)
    if "bleu" in tasks:
        scores["bleu"] = round(bleu(outputs, refs), 4)
    return scores
