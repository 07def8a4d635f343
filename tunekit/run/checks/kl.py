"""KL(base || tuned) per token, top-1 agreement and both perplexities, on the same held-out windows.

The mean per-token KL divergence of the tuned model's next-token distribution from the base's is what
llama.cpp's ``perplexity --kl-divergence`` ranks quantizations by: it sees every change in the
distribution, where perplexity only sees the probability of the one observed token (and can even
improve by chance). Windows are disjoint, ``seq_len`` tokens each; every position but the last
predicts the next token, so KL is averaged over ``seq_len - 1`` positions a window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tunekit.core.errors import UsageError


@dataclass(frozen=True)
class Divergence:
    kl_divergence: float
    top1_agreement: float
    perplexity_base: float
    perplexity_tuned: float
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class Sums:
    """Running sums over windows (kept apart so a caller can feed logits it already has)."""

    kl: float = 0.0
    agree: int = 0
    nll_base: float = 0.0
    nll_tuned: float = 0.0
    tokens: int = 0

    def add(self, base_logits: Any, tuned_logits: Any, targets: Any | None = None) -> None:
        """Add positions: logits ``[T, V]`` of both models for the same input; targets ``[T]`` if known."""
        import torch.nn.functional as F

        if base_logits.shape != tuned_logits.shape:
            raise UsageError(f"base and tuned logits differ in shape: {tuple(base_logits.shape)} vs "
                             f"{tuple(tuned_logits.shape)} (different vocabularies?)")
        log_base = F.log_softmax(base_logits.float(), dim=-1)
        log_tuned = F.log_softmax(tuned_logits.float(), dim=-1)
        kl = (log_base.exp() * (log_base - log_tuned)).sum(-1)
        self.kl += float(kl.clamp_min(0).sum())
        self.agree += int((log_base.argmax(-1) == log_tuned.argmax(-1)).sum())
        if targets is not None:
            self.nll_base -= float(log_base.gather(-1, targets[:, None]).sum())
            self.nll_tuned -= float(log_tuned.gather(-1, targets[:, None]).sum())
        self.tokens += int(base_logits.shape[0])

    def result(self) -> Divergence:
        if not self.tokens:
            raise UsageError("no tokens compared")
        n = self.tokens
        return Divergence(kl_divergence=self.kl / n, top1_agreement=self.agree / n,
                          perplexity_base=math.exp(self.nll_base / n), perplexity_tuned=math.exp(self.nll_tuned / n),
                          tokens=n)


def windows_of(ids: list[int], seq_len: int, max_windows: int | None = None) -> list[list[int]]:
    """Disjoint windows of ``seq_len`` ids (the last shorter one dropped unless it is the only one)."""
    out = [ids[i:i + seq_len] for i in range(0, len(ids), seq_len)]
    out = [w for w in out if len(w) == seq_len] or out[:1]
    if not out or len(out[0]) < 2:
        raise UsageError("held-out text has fewer than 2 tokens")
    return out[:max_windows] if max_windows else out


def logits_of(model: Any, window: list[int]) -> Any:
    """Next-token logits ``[len-1, V]`` for one window (no grad, eval mode: dropout would add noise to KL)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(input_ids=torch.tensor([window], device=device)).logits[0, :-1].float().cpu()
    finally:
        if was_training:
            model.train()


def divergence(base: Any, tuned: Any, ids: list[int], *, seq_len: int = 256,
               max_windows: int | None = None) -> Divergence:
    """Compare two models that share a tokenizer on the same token ids."""
    windows = windows_of(ids, seq_len, max_windows)
    return divergence_from([logits_of(base, w) for w in windows], tuned, windows)


def divergence_from(reference: list[Any], tuned: Any, windows: list[list[int]]) -> Divergence:
    """Compare ``tuned`` with the base's logits computed once (``recommend --measure`` reuses them)."""
    import torch

    sums = Sums()
    for base_logits, window in zip(reference, windows, strict=True):
        sums.add(base_logits, logits_of(tuned, window), torch.tensor(window[1:]))
    return sums.result()
