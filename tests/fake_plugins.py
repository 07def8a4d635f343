"""Fake third-party plugins for the plugin-host tests: written to a temp dir, exposed as entry points.

Each module is real Python that ``EntryPoint.load()`` imports, so the tests go through exactly the
door an installed distribution's plugin goes through (``importlib.metadata.entry_points``).
"""

from __future__ import annotations

import sys
import textwrap
import types
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

GOOD = '''
import click
from pydantic import Field

from tunekit import hookimpl
from tunekit.core.kinds import PluginParams, Pruner


class FakeMagnitude(Pruner):
    name = "fake-magnitude"
    summary = "zeroes the smallest weights (test double)"

    class Params(PluginParams):
        sparsity: float = Field(0.5, ge=0.0, lt=1.0, description="Fraction of weights set to zero")

    def sparsity(self) -> float:
        return self.params.sparsity


@hookimpl
def tunekit_pruners():
    return [FakeMagnitude]


@hookimpl
def tunekit_commands(cli):
    @cli.command("fake-hello")
    def hello() -> None:
        """Say hello from a plugin."""
        click.echo("hello from a plugin command")
'''

FAILS_ON_IMPORT = '''
raise ImportError("libfake.so: cannot open shared object file")
'''

EXITS_ON_IMPORT = '''
import sys
sys.exit("plugin gave up at import")
'''

RAISES_IN_HOOK = '''
from tunekit import hookimpl
from tunekit.core.kinds import Adapter


class FakeAdapter(Adapter):
    name = "fake-adapter"
    summary = "an adapter from a plugin whose other hook is broken"


@hookimpl
def tunekit_quantizers():
    raise RuntimeError("quantizer table is corrupt")


@hookimpl
def tunekit_adapters():
    return [FakeAdapter]
'''

NOT_A_PLUGIN = '''
from tunekit import hookimpl


class NotAPlugin:
    name = "not-a-plugin"


@hookimpl
def tunekit_samplers():
    return [NotAPlugin]
'''

DUPLICATE = '''
from tunekit import hookimpl
from tunekit.core.kinds import Pruner


class AnotherMagnitude(Pruner):
    name = "fake-magnitude"
    summary = "same name as the good plugin's pruner"


@hookimpl
def tunekit_pruners():
    return [AnotherMagnitude]
'''

PARAMS_NOT_FORBIDDING = '''
from pydantic import BaseModel

from tunekit import hookimpl
from tunekit.core.kinds import Quantizer


class LooseQuantizer(Quantizer):
    name = "loose"

    class Params(BaseModel):  # accepts any typo silently: must be refused
        bits: int = 4


@hookimpl
def tunekit_quantizers():
    return [LooseQuantizer]
'''

PARAMS_BAD_DEFAULT = '''
from pydantic import ConfigDict, Field

from tunekit import hookimpl
from tunekit.core.kinds import ContextExtender, PluginParams


class BadDefault(ContextExtender):
    name = "bad-default"

    class Params(PluginParams):
        model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
        factor: float = Field(0.5, ge=1.0)


class NoDefault(ContextExtender):
    name = "no-default"

    class Params(PluginParams):
        factor: float


@hookimpl
def tunekit_context_extenders():
    return [BadDefault, NoDefault]
'''

BAD_NAME = '''
from tunekit import hookimpl
from tunekit.core.kinds import Pruner


class Shouting(Pruner):
    name = "Bad Name"


@hookimpl
def tunekit_pruners():
    return [Shouting]
'''

MISSPELLED = '''
from tunekit import hookimpl
from tunekit.core.kinds import Sampler


class FakeGreedy(Sampler):
    name = "fake-greedy"
    summary = "greedy decoding (test double)"

    def generation_config(self):
        return {"do_sample": False}


@hookimpl
def tunekit_quantiser():  # British spelling: not a tunekit hook
    return []


@hookimpl
def tunekit_samplers():
    return [FakeGreedy]
'''

COMMAND_CLASH = '''
import click

from tunekit import hookimpl


@hookimpl
def tunekit_commands(cli):
    @cli.command("validate")
    def validate() -> None:
        click.echo("hijacked")
'''


@dataclass(frozen=True)
class FakePlugin:
    """One fake installed distribution with one ``tunekit`` entry point."""

    entry_point: str
    module: str
    distribution: str
    version: str
    source: str


ALL = [
    FakePlugin("good", "tk_fake_good", "tunekit-good", "1.0", GOOD),
    FakePlugin("fails-import", "tk_fake_fails_import", "tunekit-broken", "0.3", FAILS_ON_IMPORT),
    FakePlugin("exits-import", "tk_fake_exits_import", "tunekit-exits", "0.1", EXITS_ON_IMPORT),
    FakePlugin("raises", "tk_fake_raises", "tunekit-raises", "2.1", RAISES_IN_HOOK),
    FakePlugin("not-a-plugin", "tk_fake_not_a_plugin", "tunekit-junk", "0.0.1", NOT_A_PLUGIN),
    FakePlugin("zz-duplicate", "tk_fake_duplicate", "tunekit-copycat", "9.9", DUPLICATE),
    FakePlugin("loose", "tk_fake_loose", "tunekit-loose", "1.2", PARAMS_NOT_FORBIDDING),
    FakePlugin("bad-default", "tk_fake_bad_default", "tunekit-defaults", "0.2", PARAMS_BAD_DEFAULT),
    FakePlugin("bad-name", "tk_fake_bad_name", "tunekit-shout", "1.0", BAD_NAME),
    FakePlugin("misspelled", "tk_fake_misspelled", "tunekit-typo", "0.9", MISSPELLED),
    FakePlugin("clash", "tk_fake_clash", "tunekit-clash", "0.5", COMMAND_CLASH),
]
BY_NAME = {p.entry_point: p for p in ALL}


def entry_point(plugin: FakePlugin, *, name: str | None = None) -> metadata.EntryPoint:
    """A real ``EntryPoint`` bound to a stand-in distribution (name and version are all the host reads)."""
    ep = metadata.EntryPoint(name or plugin.entry_point, plugin.module, "tunekit")
    dist = types.SimpleNamespace(name=plugin.distribution, version=plugin.version)
    return ep._for(dist)  # type: ignore[attr-defined,no-any-return]


def install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, plugins: list[FakePlugin],
    extra: tuple[metadata.EntryPoint, ...] = (),
) -> list[metadata.EntryPoint]:
    """Write the plugins' modules and make ``importlib.metadata`` report only their entry points."""
    for plugin in plugins:
        (tmp_path / f"{plugin.module}.py").write_text(textwrap.dedent(plugin.source))
        monkeypatch.delitem(sys.modules, plugin.module, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [entry_point(p) for p in plugins] + list(extra)
    real = metadata.entry_points

    def fake_entry_points(**params: str) -> Any:
        if params.get("group") == "tunekit":
            return metadata.EntryPoints(points)
        return real(**params)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    return points


def forget_modules(plugins: list[FakePlugin]) -> None:
    for plugin in plugins:
        sys.modules.pop(plugin.module, None)
