"""Atomic output folders: a run writes beside ``--output`` and renames at the end, or leaves nothing.

Why: a crashed or interrupted run must never leave a half-written model that a server would load, and
a refused or failed re-run must leave the earlier output byte-identical. Renames inside one parent
directory are atomic on POSIX, so the temporary folder lives next to the target (same filesystem).
With ``--force`` the old output is renamed aside, the new one renamed in, and only then the old one
deleted: at every instant ``--output`` is either the complete old result or the complete new one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

from tunekit.core.errors import OutputExistsError, UsageError

TMP_MARK = ".tunekit-tmp-"
OLD_MARK = ".tunekit-old-"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still runs (a leftover temp folder of a live run is not stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AtomicOutput:
    """Context manager: ``with AtomicOutput(path, force=...) as tmp:`` write into ``tmp``; on a clean exit
    ``tmp`` becomes ``path``; on any exception (Ctrl-C included) ``tmp`` is removed and ``path`` untouched."""

    def __init__(self, final: Path, *, force: bool = False) -> None:
        self.final = Path(final)
        self.force = force
        self.tmp: Path | None = None
        self._discarded = False

    @property
    def checkpoint_dir(self) -> Path:
        """Training checkpoints: beside the output (outside the temp folder) so ``--resume`` finds them."""
        return self.final.parent / f".{self.final.name}.checkpoints"

    def check(self) -> None:
        """Refuse before any work when the output exists and ``--force`` was not given."""
        if self.final.exists() and not self.force:
            raise OutputExistsError(f"output {self.final} already exists; pass --force to replace it")
        if self.final.exists() and not self.final.is_dir():
            raise UsageError(f"output {self.final} exists and is not a directory")

    def clean_stale(self) -> None:
        """Remove temp folders that runs killed with SIGKILL left beside the output (their pid is gone)."""
        parent = self.final.parent
        if not parent.is_dir():
            return
        for prefix in (f".{self.final.name}{TMP_MARK}", f".{self.final.name}{OLD_MARK}"):
            for leftover in parent.glob(prefix + "*"):
                pid_text = leftover.name[len(prefix):].split("-", 1)[0]
                if pid_text.isdigit() and not pid_alive(int(pid_text)):
                    shutil.rmtree(leftover, ignore_errors=True)

    def __enter__(self) -> Path:
        self.check()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.clean_stale()
        self.tmp = self.final.parent / f".{self.final.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        return self.tmp

    def discard(self) -> None:
        """Throw the temporary folder away on exit instead of renaming it (non-main distributed ranks)."""
        self._discarded = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.tmp is None:  # __enter__ failed before creating it
            return
        if exc_type is not None or self._discarded:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if exc_type is not None:
                self.remove_checkpoints_if_empty()
            return
        try:
            self.commit()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def commit(self) -> None:
        if self.tmp is None:
            raise UsageError("AtomicOutput.commit() outside its with-block")
        if not self.final.exists():
            os.rename(self.tmp, self.final)
            return
        if not self.force:  # someone created it while we ran
            raise OutputExistsError(f"output {self.final} appeared during the run; pass --force to replace it")
        old = self.final.parent / f".{self.final.name}{OLD_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(self.final, old)
        try:
            os.rename(self.tmp, self.final)
        except BaseException:
            os.rename(old, self.final)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def remove_checkpoints_if_empty(self) -> None:
        """A failed run keeps its checkpoints for ``--resume``, but leaves no empty folder behind."""
        directory = self.checkpoint_dir
        if directory.is_dir() and not any(directory.glob("checkpoint-*")):
            shutil.rmtree(directory, ignore_errors=True)

    def remove_checkpoints(self) -> None:
        """After a successful run the resume checkpoints have served their purpose."""
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
