"""Training checkpoints that ``--resume`` can trust, and that no run deletes silently.

Why a completion mark: the Trainer writes ``checkpoint-N`` in place (weights, optimizer, scheduler,
RNG, state), so a run killed while saving leaves a folder that looks like the newest checkpoint and
makes resume crash. After the Trainer has finished a save, a callback drops ``tunekit-complete`` into
it; resume takes the newest folder carrying the mark and falls back past unmarked ones. Torch-free:
the callback class is built on first use.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError

COMPLETE = "tunekit-complete"
"""Written into a checkpoint folder once the Trainer has saved all of it."""

_STEP = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(directory: Path) -> list[Path]:
    """Every ``checkpoint-N`` folder in ``directory``, oldest step first (complete or not)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _STEP.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))  # type: ignore[union-attr]


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


def latest_complete(directory: Path, log: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete checkpoint; newer incomplete ones (a save that was cut short) are removed, saying so."""
    found = checkpoints(directory)
    while found and not is_complete(found[-1]):
        broken = found.pop()
        shutil.rmtree(broken, ignore_errors=True)
        if log is not None:
            log(f"resume: skipped and removed {broken.name}, whose save was interrupted")
    return found[-1] if found else None


def check_checkpoints(directory: Path, *, resume: bool, force: bool) -> None:
    """Before any work: a fresh run must not reuse or delete an interrupted run's checkpoints unasked."""
    found = checkpoints(directory)
    if found and not resume and not force:
        raise UsageError(f"{directory} holds {len(found)} checkpoint(s) of an interrupted run (newest "
                         f"{found[-1].name}): pass --resume to continue it, or --force to discard them")


def discard_checkpoints(directory: Path, log: Callable[[str], None]) -> None:
    """``--force`` without ``--resume``: an interrupted run's checkpoints go, and the log says so."""
    found = checkpoints(directory)
    if found:
        log(f"--force: discarding {len(found)} checkpoint(s) of an interrupted run in {directory}")
        shutil.rmtree(directory, ignore_errors=True)


def completion_callback() -> Any:
    """A ``TrainerCallback`` that marks each checkpoint complete after the Trainer saved it (main process)."""
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / COMPLETE).write_text(f"{state.global_step}\n", encoding="utf-8")

    return MarkComplete()
