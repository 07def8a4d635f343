"""``tunekit check``: what a change did to a model, measured on the user's own model against its base.

One small module per measure, each usable on its own: :mod:`.kl` (KL divergence, top-1 agreement,
perplexity), :mod:`.repetition` (distinct-n, loops), :mod:`.eos` (EOS share, template and special
tokens), :mod:`.passkey` (long-context retrieval), :mod:`.verdicts` (ok/warn/fail and the symptom to
try), :mod:`.generations` (the shared greedy/sampled generations), :mod:`.load` (output folders and
adapters) and :mod:`.runner` (all of it, plus plugins' checks through ``tunekit_checks``).
Torch is imported inside functions only; ``docs/check.md`` documents the thresholds.
"""

from __future__ import annotations

CHECKS = ("kl_divergence", "repetition", "eos", "long_context")
"""The built-in checks, in the order they run and print; ``--json`` keys are exactly these names."""
