"""Ctrl-C and SIGTERM that a run cannot lose.

A signal becomes ``KeyboardInterrupt`` so the atomic output's clean-up runs. But the exception is raised
wherever Python happens to be, and some libraries guard optional imports with a bare ``except:`` (seen
while transformers loads, under load): the interrupt is swallowed and the run goes on. So the handler
also remembers the signal, and the pipeline calls :func:`check` at every stage boundary to raise it again.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import NoReturn

_received: int | None = None


def record(signum: int) -> None:
    """Remember that ``signum`` arrived, for :func:`check`."""
    global _received
    _received = signum


def interrupt(signum: int, reason: str = "") -> NoReturn:
    """Record the signal, then interrupt whatever is running (``reason`` ends the message)."""
    record(signum)
    raise KeyboardInterrupt(f"interrupted by signal {signum}" + (f" ({reason})" if reason else ""))


def handler(signum: int, frame: FrameType | None) -> None:
    """A signal handler: :func:`interrupt`."""
    interrupt(signum)


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`handler` (main thread only: signals cannot be set elsewhere)."""
    clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def clear() -> None:
    """Forget a handled signal (the CLI calls it once the interrupt has been reported)."""
    global _received
    _received = None


def check() -> None:
    """Raise ``KeyboardInterrupt`` again if a signal arrived and its exception was swallowed."""
    if _received is not None:
        raise KeyboardInterrupt(f"interrupted by signal {_received}")
