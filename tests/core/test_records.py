"""``evolve`` copies a dataclass with changed fields as ``dataclasses.replace`` does, only faster."""

from __future__ import annotations

import dataclasses

import pytest

from tunekit.advise.estimate import Setup
from tunekit.core.arch import ModelArch
from tunekit.core.records import evolve


def test_evolve_equals_replace_on_a_frozen_dataclass_and_leaves_the_original() -> None:
    setup = Setup()
    changed = evolve(setup, seq_len=512, optimizer="sgd")
    assert changed == dataclasses.replace(setup, seq_len=512, optimizer="sgd")
    assert hash(changed) == hash(dataclasses.replace(setup, seq_len=512, optimizer="sgd"))
    assert setup.seq_len == 2048 and type(changed) is Setup
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.seq_len = 1  # type: ignore[misc]


def test_evolve_refuses_unknown_fields_and_defers_to_post_init() -> None:
    with pytest.raises(TypeError, match="no field"):
        evolve(Setup(), seq_length=5)
    arch = ModelArch(name="m", layers=2, hidden=64, intermediate=128, heads=4, kv_heads=4, vocab=100)
    wider = evolve(arch, hidden=128, head_dim=0)  # __post_init__ derives head_dim again
    assert wider.head_dim == 32


def test_derived_counts_are_kept_per_instance_outside_equality() -> None:
    arch = ModelArch(name="m", layers=2, hidden=64, intermediate=128, heads=4, kv_heads=4, vocab=100)
    first = arch.param_count()
    assert arch.param_count() == first and arch == dataclasses.replace(arch)
    assert evolve(arch, layers=4).param_count() > first  # a copy with other facts counts again
