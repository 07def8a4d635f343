"""Quantization backends stay out of runs that do not use them.

With the ``gptq`` extra installed, PEFT imports GPTQModel the first time it wraps any layer (its LoRA
dispatch asks ``is_gptqmodel_available()`` and then imports GPTQModel's layer classes to compare
against). Importing GPTQModel prints a banner to stdout, sets ``PYTORCH_ALLOC_CONF`` and
``CUDA_DEVICE_ORDER`` for the whole process and starts a progress log, all in a plain LoRA run.
A layer can only be a GPTQModel layer once GPTQModel is imported (a GPTQ load imports it), so
"not imported yet" answers PEFT's question without the import.

The Python-logging noise of backends (torchao's missing CUDA kernels at import, torch's pytree
deprecations, llama.cpp's quantizer log) is routed by :func:`backend_logs` into the run's own log file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BACKEND_LOGGERS = ("torchao", "torch.utils._pytree", "bitsandbytes", "gptqmodel", "llama-cpp-python", "optimum")
"""Loggers whose records go to the run's ``backends.log`` while a run is in progress, not the terminal.
Not ``torch`` itself: importing torch resets that logger's handlers, and its own warnings are the user's."""

_GUARD = "_tunekit_only_if_imported"


def guard_peft_gptqmodel() -> None:
    """Make PEFT ask for GPTQModel only when GPTQModel is already imported (idempotent; needs peft)."""
    import peft.import_utils

    original = peft.import_utils.is_gptqmodel_available
    if getattr(original, _GUARD, False):
        return

    def available() -> bool:
        return "gptqmodel" in sys.modules and bool(original())

    setattr(available, _GUARD, True)
    # PEFT's modules bind the function by name (``from peft.import_utils import ...``): replace every binding
    for name, module in list(sys.modules.items()):
        if (name == "peft" or name.startswith("peft.")) and getattr(module, "is_gptqmodel_available", None) \
                is original:
            module.is_gptqmodel_available = available  # type: ignore[attr-defined]


@contextmanager
def backend_logs(path: Path) -> Iterator[None]:
    """Send the backends' log records to ``path`` (appended) for the duration, and restore the loggers."""
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in BACKEND_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
        handler.close()
