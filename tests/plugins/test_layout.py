"""Every built-in plugin has the scaffold's layout: ``__init__`` registers, ``plugin`` declares, heavy modules work.

A newcomer who has read one built-in (or run ``tunekit new-plugin``) knows where everything is in the others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tunekit.core import hookspecs
from tunekit.core.registry import get_registry

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
PACKAGES = sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").is_file())


def test_every_package_is_listed() -> None:
    assert {"tunekit_rtn", "tunekit_bnb", "tunekit_gptq", "tunekit_peft", "tunekit_rope", "tunekit_prune",
            "tunekit_sampling", "tunekit_gguf"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_init_only_registers(package: str) -> None:
    tree = ast.parse((PLUGINS / package / "__init__.py").read_text(encoding="utf-8"))
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    hooks = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
             and any(ast.unparse(d) == "hookimpl" for d in n.decorator_list)]
    assert not classes, f"{package}/__init__.py declares {classes}: declarations go in {package}/plugin.py"
    assert hooks and set(hooks) <= {name for name in vars(hookspecs) if name.startswith("tunekit_")}
    assert (PLUGINS / package / "plugin.py").is_file(), f"{package} has no plugin.py"


def test_builtin_classes_are_declared_in_their_plugin_module() -> None:
    registry = get_registry()
    builtin = [cls for cls in registry.all() if cls.__module__.split(".")[0] in PACKAGES]
    assert builtin
    wrong = [f"{cls.__module__}.{cls.__qualname__}" for cls in builtin
             if cls.__module__ != f"{cls.__module__.split('.')[0]}.plugin"]
    assert wrong == []
