"""tunekit's ``magnitude`` pruner: layer-wise or global unstructured sparsity, or N:M (2:4) masks.

Registered through the ``tunekit`` entry point group like a third party's plugin. The declarations are
in :mod:`tunekit_prune.plugin` (torch-free); the work is in :mod:`tunekit_prune.magnitude`.
"""

from __future__ import annotations

from tunekit import Pruner, hookimpl
from tunekit_prune.plugin import MagnitudeParams, MagnitudePruner

__all__ = ["MagnitudeParams", "MagnitudePruner"]


@hookimpl
def tunekit_pruners() -> list[type[Pruner]]:
    return [MagnitudePruner]
