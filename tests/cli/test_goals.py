"""One list of goals and one of strategies: the CLI choices, the engine and the recipe schema read the same."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import click

from tunekit.advise import goals
from tunekit.advise.rules import engine
from tunekit.cli.commands.launch_cmd import command as launch
from tunekit.cli.commands.recommend_cmd import command as recommend
from tunekit.core.recipe_model import DistributedSection
from tunekit.core.sharding import SHARDED, STRATEGIES


def choices(command: click.Command, option: str) -> tuple[str, ...]:
    (param,) = [p for p in command.params if p.name == option]
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def test_goal_choices_are_the_engines_goals() -> None:
    assert choices(recommend, "goal") == goals.GOALS == tuple(engine.DEFAULT_LEVERS)
    assert engine.DEFAULT_LEVERS is goals.DEFAULT_LEVERS


def test_goals_module_imports_nothing_heavy() -> None:
    code = ("import sys, tunekit.advise.goals; "
            "print(','.join(m for m in ('pydantic', 'click', 'torch', 'tunekit.advise.rules') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""


def test_strategy_is_one_list() -> None:
    assert get_args(DistributedSection.model_fields["strategy"].annotation) == STRATEGIES
    assert set(SHARDED) == set(STRATEGIES)
    assert choices(launch, "strategy") == tuple(s for s in STRATEGIES if s != "none")
