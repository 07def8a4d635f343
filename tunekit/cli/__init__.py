"""The CLI wing: a thin click layer, one module per command, over the library API of the other wings."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``tunekit.cli:main`` and ``from tunekit.cli import cli`` (the module before the wings) still resolve."""
    if name in {"main", "cli"}:
        from tunekit.cli import main as module

        return getattr(module, name)
    raise AttributeError(f"module 'tunekit.cli' has no attribute {name!r}")
