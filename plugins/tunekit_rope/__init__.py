"""tunekit's RoPE context extenders: ``linear``, ``dynamic``, ``yarn``, ``llama3``, ``longrope``.

Registered through the ``tunekit`` entry point group like a third party's plugin. The declarations are
in :mod:`tunekit_rope.plugin` (torch-free); the work is in :mod:`tunekit_rope.rope`.
"""

from __future__ import annotations

from tunekit import ContextExtender, hookimpl
from tunekit_rope.plugin import (
    DEFAULT_FACTOR,
    PLUGINS,
    DynamicRope,
    LinearRope,
    Llama3Params,
    Llama3Rope,
    LongRope,
    LongRopeParams,
    RopeExtender,
    RopeParams,
    YarnParams,
    YarnRope,
)

__all__ = ["DEFAULT_FACTOR", "PLUGINS", "DynamicRope", "LinearRope", "Llama3Params", "Llama3Rope", "LongRope",
           "LongRopeParams", "RopeExtender", "RopeParams", "YarnParams", "YarnRope"]


@hookimpl
def tunekit_context_extenders() -> list[type[ContextExtender]]:
    return list(PLUGINS)
