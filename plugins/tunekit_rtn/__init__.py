"""tunekit's ``rtn`` quantizer: plain round-to-nearest, the baseline every other method is measured against.

Registered through the ``tunekit`` entry point group like a third party's plugin. This module is
torch-free; the rounding itself lives in ``tunekit_rtn.rounding`` and is imported by ``apply``.
"""

from __future__ import annotations

from tunekit import Quantizer, hookimpl
from tunekit_rtn.plugin import RTNQuantizer

__all__ = ["RTNQuantizer"]


@hookimpl
def tunekit_quantizers() -> list[type[Quantizer]]:
    return [RTNQuantizer]
