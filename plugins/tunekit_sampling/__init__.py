"""tunekit's ``sampling`` sampler: decoding controls written as the output's ``generation_config.json``.

Registered through the ``tunekit`` entry point group like a third party's plugin. The declarations are
in :mod:`tunekit_sampling.plugin` (torch-free); the base class's ``apply`` does the work.
"""

from __future__ import annotations

from tunekit import Sampler, hookimpl
from tunekit_sampling.plugin import PRESETS, SamplingParams, SamplingSampler

__all__ = ["PRESETS", "SamplingParams", "SamplingSampler"]


@hookimpl
def tunekit_samplers() -> list[type[Sampler]]:
    return [SamplingSampler]
