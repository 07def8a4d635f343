"""docs/plugins.md stays true: every hook has a ``### hook`` heading whose example runs, and a test.

Each hook's example is executed as a plugin module, registered in an in-process registry, and put
through what tunekit does with that hook (a class is registered and its declarations read, a rule is
loaded, a recipe is found by name, a model resolves, a command runs, a wrapper observes a stage). A hook
added to ``tunekit/core/hookspecs.py`` without a heading, an example or an entry in ``CHECKS`` fails here
(the datasette idea: hooks that are not documented and tested do not ship).
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tunekit.core import hookspecs
from tunekit.core.kind_specs import KIND_HOOKS
from tunekit.core.registry import Registry, load_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("tunekit_") and callable(getattr(hookspecs, name)))


def sections() -> dict[str, str]:
    """``### heading`` -> the text up to the next heading of level 2 or 3."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^(#{2,3}) (.+)$", text, flags=re.MULTILINE)
    return {parts[i + 1].strip(): parts[i + 2] for i in range(1, len(parts) - 2, 3) if parts[i] == "###"}


def example_module(hook: str) -> types.ModuleType:
    blocks = re.findall(r"```python\n(.*?)```", sections().get(hook, ""), flags=re.DOTALL)
    assert blocks, f"docs/plugins.md: section '### {hook}' has no ```python example"
    module = types.ModuleType(f"docs_example_{hook}")
    exec(compile(blocks[0], f"docs/plugins.md#{hook}", "exec"), module.__dict__)
    return module


def registry_for(hook: str) -> Registry:
    registry = load_registry(entry_points=False, extra_modules=[example_module(hook)])
    assert not registry.failures, registry.failures
    return registry


def check_kind(hook: str) -> None:
    from tunekit.core.arch import ModelArch

    arch = ModelArch(name="tiny", layers=2, hidden=256, intermediate=512, heads=4, kv_heads=2, vocab=512)
    kind = {v: k for k, v in KIND_HOOKS.items()}[hook]
    registry = registry_for(hook)
    (cls,) = registry.of(kind).values()
    plugin = cls()
    assert cls.summary and all(f.description for f in cls.Params.model_fields.values())
    declared = {"quantizer": lambda: plugin.bits_per_weight(), "adapter": lambda: plugin.trainable_params(arch),
                "context": lambda: plugin.factor_for(arch), "pruner": lambda: plugin.sparsity(),
                "sampler": lambda: plugin.generation_config(), "exporter": lambda: cls.shorthand_field}[kind]()
    assert declared


def check_rules(hook: str) -> None:
    from tunekit.advise.rules.loader import load_rules

    rules = {rule.id: rule for rule in load_rules(registry_for(hook))}
    assert "prefer-row-magnitude-when-it-does-not-fit" in rules
    assert "prune" in rules["prefer-row-magnitude-when-it-does-not-fit"].levers


def check_recipe_dirs(hook: str) -> None:
    from tunekit.core.recipe import load_recipe

    resolved = load_recipe("docs-example-prune", registry=registry_for(hook), resolve=False)
    assert resolved.recipe.name == "docs-example-prune"


def check_models(hook: str) -> None:
    from tunekit.core.model_facts import load_catalog

    arch = load_catalog(registry_for(hook)).find("acme/Acme-1B")
    assert arch is not None and arch.layers == 16 and arch.kv_heads == 4


def check_commands(hook: str) -> None:
    group = click.Group("tunekit")
    registry_for(hook).call_safely("tunekit_commands", cli=group)
    result = CliRunner().invoke(group, ["hello", "--name", "plugin author"])
    assert result.exit_code == 0 and result.output == "hello plugin author\n"


def check_run_stage(hook: str) -> None:
    from tunekit.core.context import StageContext
    from tunekit.core.recipe_model import Recipe

    class Host:
        """Stands in for the pipeline, which implements the stage itself."""

        @hookspecs.hookimpl
        def tunekit_run_stage(self, stage: str, plugin: Any, model: Any, ctx: StageContext) -> Any:
            return {"stage": stage, **model}

    registry = registry_for(hook)
    registry.pm.register(Host(), name="host")
    ctx = StageContext(recipe=Recipe.model_validate({}))
    out = registry.pm.hook.tunekit_run_stage(stage="prune", plugin=None, model={"weights": 1}, ctx=ctx)
    assert out == {"stage": "prune", "weights": 1}
    assert ctx.metrics["prune"]["wall_seconds"] >= 0


CHECKS: dict[str, Callable[[str], None]] = {
    **{hook: check_kind for hook in KIND_HOOKS.values()},
    "tunekit_rules": check_rules,
    "tunekit_recipe_dirs": check_recipe_dirs,
    "tunekit_models": check_models,
    "tunekit_commands": check_commands,
    "tunekit_run_stage": check_run_stage,
}


def test_every_hook_has_exactly_one_heading() -> None:
    headings = re.findall(r"^### (tunekit_\w+)\s*$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(headings) == HOOKS, f"docs/plugins.md hook headings {sorted(headings)} != hookspecs {HOOKS}"


def test_every_hook_has_a_check() -> None:
    assert sorted(CHECKS) == HOOKS, f"add a check for {sorted(set(HOOKS) - set(CHECKS))} to CHECKS"


@pytest.mark.parametrize("hook", HOOKS)
def test_documented_example_runs(hook: str) -> None:
    if hook not in CHECKS:
        pytest.fail(f"hook {hook} has no test: add one to CHECKS in {Path(__file__).name}")
    CHECKS[hook](hook)
