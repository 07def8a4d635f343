"""tunekit's own exception types.

Every error a user can cause is one of these, so the CLI can map it to an exit code
(2 for usage and validation, 1 for failures) and print one clear line instead of a traceback.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 2


def excerpt(value: Any, limit: int = 80) -> str:
    """A short ``repr`` for error messages: a huge (or alias-expanded) value never lands whole in one."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'lr'?)`` naming the nearest of ``choices`` (difflib, as pip and git do), or ``""``.

    A typo is the commonest bad input (a recipe key, a ``--set`` path, a method name); the nearest
    allowed name turns "unknown" into the fix.
    """
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class TunekitError(Exception):
    """Base of every error tunekit raises on purpose."""

    exit_code = 1


class UsageError(TunekitError):
    """The command line or a Python call asked for something that cannot be done."""

    exit_code = 2


class RecipeError(UsageError):
    """A recipe is malformed: carries the file and the dotted key path of the problem."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(part for part in (self.source, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class PluginError(TunekitError):
    """A plugin is unknown, broken, or cannot run on this machine."""


class UnknownPluginError(PluginError, UsageError):
    """A recipe or command named a plugin that is not installed."""

    exit_code = 2


class MissingDependencyError(PluginError):
    """A plugin needs a package (or CUDA) that this environment lacks; says what to install."""


class OutputExistsError(UsageError):
    """The output directory exists and --force was not given."""


class OutputBusyError(TunekitError):
    """Another run holds the output's lock: two runs to one output would interleave their files."""


class InputFileError(TunekitError):
    """An input file exists but its content cannot be used: binary or non-UTF-8 where text is read, a
    truncated or corrupt weight file, a pickle torch refuses. Exit 1 naming the file, not a traceback."""


class OutputLocationError(TunekitError):
    """The output cannot be created where it was asked for: a parent is a file, or the place is read-only."""
