"""What ``tunekit recommend --goal`` accepts, and the levers each goal pulls when no rule names one.

Plain data in a module of its own: the CLI builds its ``--goal`` choices from it without importing the
engine (pydantic, the estimator), and the engine reads the same table.
"""

from __future__ import annotations

DEFAULT_LEVERS: dict[str, tuple[str, ...]] = {
    "finetune": ("adapter",), "serve": ("as-is", "quantize"), "long-context": ("context",),
    "compress": ("quantize", "prune"),
}
GOALS: tuple[str, ...] = tuple(DEFAULT_LEVERS)
