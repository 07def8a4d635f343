"""The kind descriptor is the one table of kinds; everything that lists kinds agrees with it."""

from __future__ import annotations

import tunekit
from tunekit import testing
from tunekit.authoring.scaffold import KIND_CHOICES
from tunekit.core import hookspecs
from tunekit.core.kind_specs import KIND_SPECS, RECIPE_KINDS, STAGE_KIND
from tunekit.core.kinds import BASES, KINDS
from tunekit.core.recipe_model import Recipe
from tunekit.run.model_card import SLOTS
from tunekit.run.plan import STAGES


def test_every_kind_has_its_hook_and_public_base_class() -> None:
    for spec in KIND_SPECS:
        assert callable(getattr(hookspecs, spec.hook))
        base = getattr(tunekit, spec.base)
        assert BASES[spec.kind] is base and base.kind == spec.kind


def test_recipe_slots_are_the_staged_kinds_in_pipeline_order() -> None:
    assert KINDS == RECIPE_KINDS == ("context", "pruner", "quantizer", "adapter", "sampler")
    assert all(kind in Recipe.model_fields for kind in KINDS)
    assert [STAGE_KIND[s] for s in STAGES if s in STAGE_KIND] == list(KINDS)
    assert [slot for slot, _ in SLOTS] == list(KINDS)


def test_every_recipe_kind_has_a_contract_and_a_scaffold_template() -> None:
    contracts = {cls.kind for cls in vars(testing).values()
                 if isinstance(cls, type) and issubclass(cls, testing.PluginContract) and getattr(cls, "kind", None)}
    assert set(KINDS) <= contracts
    assert set(KIND_CHOICES) == set(KINDS)

