"""Names of files written into an output folder: never absolute, never ``..``.

Why: a file a plugin writes outside the temporary output escapes the rename-at-the-end protection
(``tunekit.run.output``) and may overwrite anything the user can write. Plugins write through
``StageContext.output_file`` (which calls :func:`inside`), and their Params type file-name fields as
:data:`RelativeName`, so ``tunekit validate`` rejects a bad name before a run starts.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Annotated

from pydantic import AfterValidator

from tunekit.core.errors import UsageError


def check_relative(name: str) -> str:
    """``name`` if it stays inside the folder it is joined to; ValueError for absolute paths and ``..``.

    Why: a file a plugin writes outside the temporary output escapes the rename-at-the-end protection
    (and may overwrite anything the user can write); ``validate`` rejects such names through
    :data:`RelativeName` before a run starts.
    """
    path = PurePath(name)
    if not str(name).strip():
        raise ValueError("a file name is needed, got an empty one")
    if path.is_absolute() or str(name).startswith("~"):
        raise ValueError(f"must be a path inside the output folder, not the absolute path {name!r}")
    if ".." in path.parts:
        raise ValueError(f"must stay inside the output folder ('..' is not allowed): {name!r}")
    return name


RelativeName = Annotated[str, AfterValidator(check_relative)]
"""A Params field type for file names an exporter or plugin writes into the output folder."""


def inside(root: Path, name: str | PurePath) -> Path:
    """``root / name``, refused (``UsageError``) when ``name`` would leave ``root``: every output file goes here."""
    try:
        check_relative(str(name))
    except ValueError as exc:
        raise UsageError(f"output file {name}: {exc}") from None
    return Path(root) / name
