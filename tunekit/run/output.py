"""Atomic output folders: a run writes beside ``--output`` and renames at the end, or leaves nothing.

Why: a crashed or interrupted run must never leave a half-written model that a server would load, and
a refused or failed re-run must leave the earlier output byte-identical. Renames inside one parent
directory are atomic on POSIX, so the temporary folder lives next to the target (same filesystem).
With ``--force`` the old output is renamed aside, the new one renamed in, and only then the old one
deleted: at every instant ``--output`` is either the complete old result or the complete new one.

Why a lock and a stamp: liveness by process id fails across PID namespaces (two containers on one
volume), so a run holds an ``fcntl`` lock beside the output for its whole life; whatever temporary
folder it finds while holding the lock belongs to a dead run. ``--force`` only replaces a folder that
carries the ``.tunekit`` stamp every output gets, so an unset ``$OUT`` cannot delete a source tree.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

from tunekit.core.errors import OutputBusyError, OutputExistsError, OutputLocationError, UsageError

TMP_MARK = ".tunekit-tmp-"
OLD_MARK = ".tunekit-old-"
LOCK_MARK = ".tunekit-lock"
STAMP = ".tunekit"
"""Marker file in every output folder: ``--force`` replaces only folders that have it."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still runs in this PID namespace (a hint, never proof of death)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_to_replace(final: Path, *, recipe_path: Path | None = None) -> str | None:
    """Why ``--force`` must not replace ``final`` (None when it may): the reason names the rule."""
    final = final.resolve()
    cwd = Path.cwd().resolve()
    if final == Path(final.anchor):
        return "it is the filesystem root"
    if final == Path.home().resolve():
        return "it is the home directory"
    if cwd == final or cwd.is_relative_to(final):
        return "it is the working directory or one of its parents"
    if recipe_path is not None and recipe_path.resolve().is_relative_to(final):
        return "it holds the recipe being run"
    if not final.is_dir():
        return "it is not a directory"
    if not (final / STAMP).is_file():
        return f"tunekit did not write it (no {STAMP} stamp in it); remove it yourself or choose another --output"
    return None


class AtomicOutput:
    """Context manager: ``with AtomicOutput(path, force=...) as tmp:`` write into ``tmp``; on a clean exit
    ``tmp`` becomes ``path``; on any exception (Ctrl-C included) ``tmp`` is removed and ``path`` untouched.

    ``lock=False`` is for the non-main ranks of a distributed run: they share the main rank's lock and
    write their throw-away folder into the system temp directory instead of beside the output.
    """

    def __init__(self, final: Path, *, force: bool = False, lock: bool = True,
                 recipe_path: Path | None = None) -> None:
        self.final = Path(final)
        self.force = force
        self.lock = lock
        self.recipe_path = recipe_path
        self.tmp: Path | None = None
        self._discarded = False
        self._lock_file: IO[str] | None = None
        self.messages: list[str] = []
        """What ``clean_stale`` did (restored an output, removed leftovers), for the run's log."""

    @property
    def checkpoint_dir(self) -> Path:
        """Training checkpoints: beside the output (outside the temp folder) so ``--resume`` finds them."""
        return self.final.parent / f".{self.final.name}.checkpoints"

    @property
    def lock_path(self) -> Path:
        return self.final.parent / f".{self.final.name}{LOCK_MARK}"

    def check_location(self) -> None:
        """Refuse before any work when the output cannot be created: a parent is a file, or not writable.

        The nearest existing ancestor decides (``mkdir -p`` creates the rest); ``os.access`` sees
        read-only mounts even for root, and permission bits for everyone else.
        """
        ancestor = self.final.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputLocationError(f"{ancestor}: is a file, so the output {self.final} cannot be created "
                                      "under it; choose another --output")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputLocationError(f"{ancestor}: not writable (read-only or no permission), so the output "
                                      f"{self.final} cannot be created there; choose another --output")

    def check(self) -> None:
        """Refuse before any work when the output exists and ``--force`` was not given, or may not be replaced,
        or cannot be created at all."""
        if not self.final.exists():
            self.check_location()
            return
        if not self.force:
            raise OutputExistsError(f"output {self.final} already exists; pass --force to replace it")
        reason = refuse_to_replace(self.final, recipe_path=self.recipe_path)
        if reason:
            raise UsageError(f"--force refuses to replace output {self.final}: {reason}")

    def acquire(self) -> None:
        """Take the output's lock or refuse at once, naming who holds it (a second run must not interleave)."""
        if self._lock_file is not None:
            return
        handle = open(self.lock_path, "a+", encoding="utf-8")  # held for the run's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder unlinks the file when it finishes: a lock on an unlinked inode locks nothing
            if os.fstat(handle.fileno()).st_ino != os.stat(self.lock_path).st_ino:
                raise BlockingIOError
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise OutputBusyError(f"output {self.final} is in use by another tunekit run ({holder}; lock "
                                  f"{self.lock_path}); wait for it to finish or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        handle.flush()
        self._lock_file = handle

    def release(self) -> None:
        """Drop the lock and its file (unlinked while still held, so no run can lock the old inode)."""
        if self._lock_file is not None:
            self.lock_path.unlink(missing_ok=True)
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def clean_stale(self) -> None:
        """Under the lock: put back an old output that a crashed ``--force`` swap left aside, drop dead temps.

        Only a run holding the lock calls this, so every folder found belongs to a run that is gone,
        whatever its process id says in this namespace.
        """
        parent = self.final.parent
        if not parent.is_dir():
            return
        olds = sorted(parent.glob(f".{self.final.name}{OLD_MARK}*"), key=lambda p: p.stat().st_mtime)
        if olds and not self.final.exists():
            # the crash came between "old aside" and "new in": the old output is the only complete one
            newest = olds.pop()
            os.rename(newest, self.final)
            self.messages.append(f"restored the earlier output {self.final} from an interrupted --force swap")
        for old in olds:  # the swap had finished (the new output is in place); its old one was due to go
            shutil.rmtree(old, ignore_errors=True)
        for leftover in parent.glob(f".{self.final.name}{TMP_MARK}*"):
            shutil.rmtree(leftover, ignore_errors=True)
            self.messages.append(f"removed {leftover.name}, left by an interrupted run")

    def __enter__(self) -> Path:
        if not self.lock:
            self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.final.name}{TMP_MARK}"))
            return self.tmp
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.acquire()
        except OutputBusyError:
            raise
        except OSError as exc:  # read-only, full or vanished since check(): one line naming the place
            raise OutputLocationError(f"{exc.filename or self.final.parent}: cannot create the output there: "
                                      f"{exc.strerror or exc}") from None
        try:
            self.clean_stale()
            self.check()
            self.tmp = self.final.parent / f".{self.final.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.tmp.mkdir()
            (self.tmp / STAMP).write_text(json.dumps({"written_by": "tunekit", "since": time.time()}) + "\n",
                                          encoding="utf-8")
        except BaseException as exc:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None
            self.release()
            if isinstance(exc, OSError):
                raise OutputLocationError(f"{exc.filename or self.final.parent}: cannot create the output there: "
                                          f"{exc.strerror or exc}") from None
            raise
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
            if exc_type is not None and self.lock:
                self.remove_checkpoints_if_empty()
                self.release()
            return
        try:
            self.commit()
            self.remove_checkpoints()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        finally:
            self.release()

    def commit(self) -> None:
        if self.tmp is None:
            raise UsageError("AtomicOutput.commit() outside its with-block")
        if not self.final.exists():
            os.rename(self.tmp, self.final)
            return
        self.check()  # it may have appeared, or changed, while we ran
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
