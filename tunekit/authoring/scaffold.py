"""``tunekit new-plugin``: write a ready third-party plugin package for one kind.

The package is what docs/plugins.md describes, nothing more: distribution ``tunekit-NAME``, import
package ``tunekit_NAME``, entry point ``NAME`` in group ``tunekit``, a torch-free plugin class with a
documented ``Params`` model and a real (if simple) operation, a README, and a test file that runs
tunekit's contract for the kind. ``pip install -e`` then ``pytest`` passes as written, so an author
starts from green and changes one thing at a time. The templates live in :mod:`tunekit.authoring.scaffold_templates`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tunekit.authoring.scaffold_templates import COMMON, KIND_TEMPLATES
from tunekit.core.errors import OutputExistsError, UsageError

KIND_CHOICES = tuple(KIND_TEMPLATES)
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


@dataclass(frozen=True)
class PluginNames:
    """Every spelling of one plugin's name, derived from the one the author typed."""

    name: str  # entry point and the method name recipes use: ``demo``
    distribution: str  # what pip installs: ``tunekit-demo``
    module: str  # what Python imports: ``tunekit_demo``
    class_name: str  # ``DemoPruner``

    @classmethod
    def from_name(cls, raw: str, kind: str) -> PluginNames:
        name = raw.strip().lower()
        for prefix in ("tunekit-", "tunekit_"):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if not _NAME_RE.match(name):
            raise UsageError(f"plugin name {raw!r}: use lowercase letters, digits and '-' (e.g. 'my-pruner')")
        stem = name.replace("-", "_")
        suffix = KIND_TEMPLATES[kind]["suffix"]
        title = "".join(part.title() for part in stem.split("_"))
        return cls(name=name, distribution=f"tunekit-{name}", module=f"tunekit_{stem}",
                   class_name=title if title.endswith(suffix) else title + suffix)


def refuse_builtin_name(names: PluginNames) -> None:
    """A built-in name would be skipped at load (built-ins win), and ``tunekit_rope`` would shadow ours."""
    from tunekit.core.registry import builtin_names, get_registry

    if names.name in builtin_names(get_registry()):
        raise UsageError(f"plugin name {names.name!r} is a built-in tunekit plugin or method; "
                         "a third-party plugin by that name would be skipped. Choose another name")


def render_files(names: PluginNames, kind: str) -> dict[str, str]:
    """Relative path -> file text of the package for ``kind``."""
    if kind not in KIND_TEMPLATES:
        raise UsageError(f"unknown kind {kind!r}; choose one of {', '.join(KIND_CHOICES)}")
    spec = KIND_TEMPLATES[kind]
    values = {"name": names.name, "dist": names.distribution, "module": names.module, "cls": names.class_name,
              "kind": kind, "base": spec["base"], "hook": spec["hook"], "contract": spec["contract"],
              "what": spec["what"]}
    files = {
        "pyproject.toml": COMMON["pyproject"],
        "README.md": COMMON["readme"],
        f"src/{names.module}/__init__.py": COMMON["init"],
        f"src/{names.module}/plugin.py": spec["plugin"],
        "tests/test_plugin.py": COMMON["tests"],
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def new_plugin(raw_name: str, kind: str, directory: Path | None = None) -> Path:
    """Write the package into ``directory/tunekit-NAME`` (never over an existing folder)."""
    names = PluginNames.from_name(raw_name, kind)
    refuse_builtin_name(names)
    root = (directory or Path.cwd()) / names.distribution
    if root.exists():
        raise OutputExistsError(f"{root} already exists; choose another name or --dir")
    for relative, text in render_files(names, kind).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
