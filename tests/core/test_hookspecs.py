"""Every hook spec is documented and tested (datasette's test_plugin_hooks_have_tests idea).

A hook added to ``tunekit/core/hookspecs.py`` fails here until docs/plugins.md has a ``### <hook>``
heading for it and some test file names it. Hooks are found through pluggy's own marker, not by a
naming convention, so a spec cannot hide under an unusual name.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from tunekit.core import hookspecs
from tunekit.core.kind_specs import KIND_HOOKS
from tunekit.core.kinds import BASES

ROOT = Path(__file__).resolve().parents[2]
SPEC_ATTR = f"{hookspecs.PROJECT}_spec"  # pluggy stores HookspecMarker options under "<project>_spec"
HOOKS = sorted(name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, SPEC_ATTR))


def test_hookspecs_are_found() -> None:
    assert {"tunekit_quantizers", "tunekit_commands", "tunekit_run_stage"} <= set(HOOKS)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registered = sorted(name for name in vars(pm.hook) if getattr(pm.hook, name).has_spec())
    assert registered == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_prefixed_typed_and_documented_in_code(hook: str) -> None:
    function = getattr(hookspecs, hook)
    assert hook.startswith("tunekit_")
    assert inspect.getdoc(function), f"{hook} has no docstring"
    signature = inspect.signature(function)
    assert signature.return_annotation is not inspect.Signature.empty, f"{hook} has no return type"
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, f"{hook}({parameter.name}) is untyped"
        assert f":param {parameter.name}:" in (function.__doc__ or ""), f"{hook} does not document {parameter.name}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_heading_in_docs_plugins_md(hook: str) -> None:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    headings = {m.strip().strip("`").removesuffix("()") for m in re.findall(r"^###\s+(.+)$", text, re.MULTILINE)}
    assert hook in headings, f"docs/plugins.md has no '### {hook}' heading"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_referenced_by_a_test(hook: str) -> None:
    me = Path(__file__).resolve()
    users = [p for p in (ROOT / "tests").rglob("*.py") if p.resolve() != me and hook in p.read_text(encoding="utf-8")]
    assert users, f"no test file mentions {hook}: write one that implements it"


def test_every_kind_has_a_registration_hook() -> None:
    assert set(KIND_HOOKS) == set(BASES)
    assert set(KIND_HOOKS.values()) <= set(HOOKS)
