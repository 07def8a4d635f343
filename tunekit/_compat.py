"""Old module paths (before the wings) stay importable for one release, with a DeprecationWarning.

Plugins in the wild import e.g. ``tunekit.kinds``; an import finder maps each old name to its new
module, so ``tunekit.kinds is tunekit.core.kinds`` (classes keep their identity for isinstance checks).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

#: old dotted name -> new dotted name
MOVED = {
    f"tunekit.{old}": f"tunekit.{new}"
    for old, new in {
        "arch": "core.arch", "context": "core.context", "errors": "core.errors", "hookspecs": "core.hookspecs",
        "kinds": "core.kinds", "plugins": "core.registry", "recipe": "core.recipe",
        "recipe_model": "core.recipe_model", "resources": "core.resources", "schema": "core.schema",
        "quantization": "core.quantization", "texts": "core.texts", "fixtures": "core.fixtures",
        "render": "core.render", "estimate": "advise.estimate", "hardware": "advise.hardware",
        "model_catalog": "core.model_catalog", "model_facts": "core.model_facts", "serving": "advise.serving",
        "rules": "advise.rules", "pipeline": "run.pipeline", "training": "run.training",
        "train_data": "run.train_data", "train_progress": "run.train_progress", "evaluate": "run.evaluate",
        "export": "run.export", "exporters": "run.exporters", "output": "run.output",
        "distributed": "run.distributed", "launch_config": "run.launch_config", "interrupts": "run.interrupts",
        "sweep": "run.sweep", "generate": "run.generate", "model_card": "run.model_card",
        "reporting": "run.reporting", "bench": "serve.bench", "bench_backends": "serve.bench_backends",
        "llamacpp": "serve.llamacpp", "scaffold": "authoring.scaffold",
        "scaffold_templates": "authoring.scaffold_templates", "command_cache": "cli.command_cache",
        "commands": "cli.commands",
    }.items()
}


def _target(fullname: str) -> str | None:
    """The new name of an old module path, including submodules of moved packages (tunekit.rules.engine)."""
    for old, new in MOVED.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


# duck-typed finder and loader (what the import system calls): importlib.abc would cost every command
# ~10 ms of start-up (it imports importlib.resources, tempfile, shutil...)
class _Alias:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; the old path goes away in the next release "
                      "(plugin authors: import from `tunekit` and `tunekit.testing`)", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _Finder:
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        new = _target(fullname) if fullname.startswith("tunekit.") else None
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))  # type: ignore[arg-type]


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def module_attribute(name: str) -> ModuleType:
    """``import tunekit; tunekit.kinds`` (attribute access to an old submodule name)."""
    if f"tunekit.{name}" in MOVED:
        return importlib.import_module(f"tunekit.{name}")
    raise AttributeError(f"module 'tunekit' has no attribute {name!r}")
