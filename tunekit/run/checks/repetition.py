"""Repetition in generated text: distinct-n (Li et al. 2016) and whether a generation loops.

distinct-n is the share of a generation's word n-grams that are unique (1.0: no n-gram repeats);
reported as the mean over generations. A generation *loops* when its last ``period * repeats`` tokens
repeat one span of ``period`` tokens (``period <= max_period``) at least ``repeats`` times: the
degenerate ending users report after fine-tuning or with greedy decoding. The repeated tail must also be
at least ``min_span`` tokens (so three newlines in a row are not a loop). Pure Python, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence


def distinct_n(text: str, n: int = 2) -> float:
    """Unique word n-grams / all word n-grams of one text (1.0 when it has no n-gram at all)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def mean_distinct_n(texts: Sequence[str], n: int = 2) -> float:
    return sum(distinct_n(t, n) for t in texts) / len(texts) if texts else 1.0


def loops(tokens: Sequence[int], *, repeats: int = 3, max_period: int = 32, min_span: int = 12) -> bool:
    """True when the sequence ends in ``repeats`` or more copies of one span of at most ``max_period``."""
    for period in range(1, max_period + 1):
        span = period * max(repeats, -(-min_span // period))
        if span > len(tokens):
            break
        tail = tokens[-span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False


def loop_share(sequences: Sequence[Sequence[int]], *, repeats: int = 3, max_period: int = 32) -> float:
    """Share of sequences that loop."""
    if not sequences:
        return 0.0
    return sum(loops(s, repeats=repeats, max_period=max_period) for s in sequences) / len(sequences)
