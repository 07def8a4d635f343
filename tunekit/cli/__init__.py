"""The CLI wing: a thin click layer, one module per command, over the library API of the other wings.

The console script is ``tunekit.cli.main:main``; ``from tunekit.cli import cli`` (the click group, where it
was before the wings) still resolves.
"""

from importlib import import_module
from typing import Any


def __getattr__(name: str) -> Any:
    # import_module, not ``from tunekit.cli import main``: a from-import of this package asks this very
    # function for ``main`` before it imports the submodule, and recursed until the stack ran out.
    if name == "cli":
        return import_module("tunekit.cli.main").cli
    raise AttributeError(f"module 'tunekit.cli' has no attribute {name!r}")
