"""``Plugin`` is generic over its Params: the brackets name the model, so ``Params`` is one fact."""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field

from tunekit import PluginParams, Pruner, Quantizer


class BitsParams(PluginParams):
    bits: int = Field(4, ge=2, le=8, description="Bits per weight")


class WideParams(BitsParams):
    group: int = Field(64, ge=1, description="Columns per scale")


class Rounder(Quantizer[BitsParams]):
    name = "rounder"

    def bits_per_weight(self) -> float:
        return float(self.params.bits)


class WideRounder(Rounder):
    name = "wide-rounder"
    Params = WideParams  # an explicit Params still wins over the inherited one


Q = TypeVar("Q", bound=BitsParams)


class Family(Pruner[Q]):
    """A shared base that stays generic: its members name their own Params."""


class Member(Family[WideParams]):
    name = "member"


def test_params_come_from_the_brackets() -> None:
    assert Rounder.Params is BitsParams
    assert Rounder().params == BitsParams() and Rounder(BitsParams(bits=3)).bits_per_weight() == 3.0


def test_subclasses_inherit_or_override_params() -> None:
    assert WideRounder.Params is WideParams and WideRounder().params == WideParams()
    assert Member.Params is WideParams and Member().params.group == 64


def test_a_generic_base_without_a_concrete_model_keeps_the_default() -> None:
    assert Family.Params is PluginParams
