"""tunekit: a declarative plugin framework for the knobs people turn on an LLM after pre-training.

This module is the plugin author's stable surface, with ``tunekit.testing``::

    from tunekit import hookimpl, Quantizer, PluginParams, Requirements, Effects, PluginError, StageContext

Everything else lives in wings (``tunekit.core``, ``advise``, ``run``, ``serve``, ``authoring``, ``cli``)
and may move between releases. Importing this package never imports torch, nor pydantic until a kind
base is first used (``tunekit --help`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunekit import _compat
from tunekit.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from tunekit.core.arch import ModelArch
    from tunekit.core.context import StageContext
    from tunekit.core.errors import MissingDependencyError, PluginError, TunekitError, UsageError
    from tunekit.core.kinds import (
        Adapter,
        ContextExtender,
        Effects,
        Exporter,
        PluginParams,
        Pruner,
        Quantizer,
        Requirements,
        Sampler,
    )
    from tunekit.core.output_paths import RelativeName
    from tunekit.core.quantization import CalibrationParams
    from tunekit.core.texts import calibration_windows

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use, PEP 562)
_LAZY = {
    "Quantizer": "tunekit.core.kinds", "Adapter": "tunekit.core.kinds", "ContextExtender": "tunekit.core.kinds",
    "Pruner": "tunekit.core.kinds", "Sampler": "tunekit.core.kinds", "Exporter": "tunekit.core.kinds",
    "PluginParams": "tunekit.core.kinds", "Requirements": "tunekit.core.kinds", "Effects": "tunekit.core.kinds",
    "StageContext": "tunekit.core.context", "ModelArch": "tunekit.core.arch",
    "PluginError": "tunekit.core.errors", "UsageError": "tunekit.core.errors",
    "MissingDependencyError": "tunekit.core.errors", "TunekitError": "tunekit.core.errors",
    # what a quantizer or a calibrated pruner needs to read calibration text the way the built-ins do
    "CalibrationParams": "tunekit.core.quantization", "calibration_windows": "tunekit.core.texts",
    # a Params field type for file names a plugin writes into the output (absolute paths and .. refused)
    "RelativeName": "tunekit.core.output_paths",
}
__all__ = [
    "Adapter", "CalibrationParams", "ContextExtender", "Effects", "Exporter", "MissingDependencyError", "ModelArch",
    "PluginError", "PluginParams", "Pruner", "Quantizer", "RelativeName", "Requirements", "Sampler", "StageContext",
    "TunekitError", "UsageError", "__version__", "calibration_windows", "hookimpl",
]

_compat.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    return _compat.module_attribute(name)
