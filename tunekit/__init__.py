"""tunekit: a declarative plugin framework for the knobs people turn on an LLM after pre-training.

Importing this package never imports torch; heavy libraries load inside the code that needs them.
"""

from __future__ import annotations

from tunekit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
