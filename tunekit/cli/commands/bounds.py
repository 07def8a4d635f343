"""Bounded number types for CLI options: a value that cannot mean anything is a usage error (exit 2).

``click.FloatRange`` lets ``nan`` through (every comparison with it is False) and ``inf`` through an
open upper end, so the float type here refuses both before checking the range. The bounds are far
outside any real machine or model and only keep nonsense (``--vram 1e-300``, ``--batch 0``,
``--margin 2``) from reaching the estimator, which would answer it with a confident wrong number.
"""

from __future__ import annotations

import math
from typing import Any

import click


class Bounded(click.ParamType):
    """A finite int or float within ``[low, high]`` (``low`` excluded when ``low_open``)."""

    def __init__(self, kind: type[int] | type[float], low: float, high: float, *, low_open: bool = False,
                 unit: str = "") -> None:
        self.kind, self.low, self.high, self.low_open, self.unit = kind, low, high, low_open, unit
        self.name = kind.__name__

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number: float
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = self.kind(value)
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a valid {self.name}", param, ctx)
        if isinstance(number, float) and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high:
            low = f"above {_show(self.low)}" if self.low_open else f"at least {_show(self.low)}"
            self.fail(f"{value} is out of range: must be {low} and at most {_show(self.high)}{self.unit}", param, ctx)
        return number


def _show(number: float) -> str:
    return f"{number:,.0f}" if float(number).is_integer() else f"{number:g}"


GB = Bounded(float, 0.1, 100_000.0, unit=" GB")
GPUS = Bounded(int, 1, 1024)
TOKENS = Bounded(int, 1, 100_000_000, unit=" tokens")
BATCH = Bounded(int, 1, 1_000_000)
TOP = Bounded(int, 1, 1000)
MARGIN = Bounded(float, 0.0, 0.9)
RANK = Bounded(int, 1, 65_536)
BITS = Bounded(float, 0.0, 32.0, low_open=True, unit=" bits")
MILLISECONDS = Bounded(float, 0.0, 1_000_000.0, low_open=True, unit=" ms")
MINUTES = Bounded(float, 0.1, 100_000.0, unit=" minutes")
