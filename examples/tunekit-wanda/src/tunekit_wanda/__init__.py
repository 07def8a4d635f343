"""tunekit-wanda: the Wanda pruner as a third-party tunekit plugin.

This module is what the ``wanda`` entry point (group ``tunekit``) names. It stays torch-free so that
``tunekit plugins`` and ``tunekit recommend`` read the plugin's declarations without loading torch;
the pruning itself is in :mod:`tunekit_wanda.prune`, imported by ``WandaPruner.apply``.
"""

from __future__ import annotations

from tunekit import Pruner, hookimpl
from tunekit_wanda.plugin import WandaParams, WandaPruner

__all__ = ["WandaParams", "WandaPruner"]
__version__ = "0.1.0"


@hookimpl
def tunekit_pruners() -> list[type[Pruner]]:
    return [WandaPruner]
