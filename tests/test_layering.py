"""The package is grouped in wings, and a wing imports only the wings below it (docs/design.md, "Wings").

    cli  ->  serve  ->  run  ->  advise / authoring  ->  core

``core`` imports no wing. The public facade (``tunekit``, ``tunekit.testing``) imports only ``core``.
Every import counts, the lazy ones inside functions and the ``TYPE_CHECKING`` ones too: a lazy import is
still a dependency. Module-level imports between tunekit modules must form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tunekit"
LAYER = {"core": 0, "advise": 1, "authoring": 1, "run": 2, "serve": 3, "cli": 4}
FACADE = {"tunekit", "tunekit._compat", "tunekit.testing", "tunekit.testing.builders", "tunekit.testing.contracts"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, *, module_level_only: bool = False) -> list[str]:
    """tunekit modules imported by ``tree`` (``from tunekit.x import y`` counts y when it is a module)."""
    found: list[str] = []
    nodes = _top_level(tree) if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tunekit" \
                and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append(sub if _is_module(sub) else node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "tunekit"]
    return found


def _top_level(tree: ast.AST) -> list[ast.AST]:
    """Statements run at import time: the module body and its plain ``if``/``try`` blocks, minus TYPE_CHECKING."""
    out: list[ast.AST] = []
    todo = list(getattr(tree, "body", []))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
        elif isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
    return out


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYER else None


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_lives_in_a_wing_or_the_facade() -> None:
    loose = [module_name(p) for p in SOURCES
             if wing_of(module_name(p)) is None and module_name(p) not in FACADE | {"tunekit.__main__"}]
    assert loose == [], "put these modules in a wing (docs/design.md)"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_wing_imports_only_wings_below(path: Path) -> None:
    me = module_name(path)
    wing = wing_of(me)
    bad = []
    for target in imports(ast.parse(path.read_text(encoding="utf-8"))):
        other = wing_of(target)
        if target == "tunekit" or target.startswith("tunekit._compat"):
            continue  # the package facade, which imports only core
        if me in FACADE:
            if other != "core" and target not in FACADE:
                bad.append(target)
        elif me == "tunekit.__main__":
            continue
        elif other is None:
            bad.append(target)  # a wing reaching into the facade (tunekit.testing)
        elif other != wing and LAYER[other] >= LAYER[wing]:  # type: ignore[index]
            bad.append(target)
    assert bad == [], f"{me} ({wing or 'facade'}) imports {bad}"


def test_no_import_cycle_at_module_level() -> None:
    graph = {module_name(p): {t for t in imports(ast.parse(p.read_text(encoding="utf-8")), module_level_only=True)
                              if t != module_name(p)} for p in SOURCES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
