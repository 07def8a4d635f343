"""Every hook tunekit calls, documented. Implementations use ``tunekit.hookimpl``.

One registration hook per kind of plugin (as hatch does): each returns plugin *classes*, so a
plugin module can offer several methods and the host can inspect their declarations before
instantiating anything. Implementations may accept fewer arguments than a spec, so specs can grow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from tunekit.core.context import StageContext
    from tunekit.core.kinds import Adapter, ContextExtender, Exporter, Plugin, Pruner, Quantizer, Sampler

PROJECT = "tunekit"
ENTRY_POINT_GROUP = "tunekit"
"""Entry-point group every plugin (built-in or third-party) registers under."""
DISABLE_ENV = "TUNEKIT_DISABLE_PLUGINS"
"""Comma list of entry-point names not to load."""
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration: one hook per kind -------------------------------------------------------


@hookspec
def tunekit_quantizers() -> list[type[Quantizer]]:  # type: ignore[empty-body]
    """Register quantizer plugins.

    :returns: subclasses of :class:`tunekit.core.kinds.Quantizer`, each with a unique ``name``.
    """


@hookspec
def tunekit_adapters() -> list[type[Adapter]]:  # type: ignore[empty-body]
    """Register adapter plugins (LoRA and relatives).

    :returns: subclasses of :class:`tunekit.core.kinds.Adapter`.
    """


@hookspec
def tunekit_context_extenders() -> list[type[ContextExtender]]:  # type: ignore[empty-body]
    """Register context-extension plugins (RoPE scaling methods).

    :returns: subclasses of :class:`tunekit.core.kinds.ContextExtender`.
    """


@hookspec
def tunekit_pruners() -> list[type[Pruner]]:  # type: ignore[empty-body]
    """Register pruning plugins.

    :returns: subclasses of :class:`tunekit.core.kinds.Pruner`.
    """


@hookspec
def tunekit_samplers() -> list[type[Sampler]]:  # type: ignore[empty-body]
    """Register sampler (decoding control) plugins.

    :returns: subclasses of :class:`tunekit.core.kinds.Sampler`.
    """


@hookspec
def tunekit_exporters() -> list[type[Exporter]]:  # type: ignore[empty-body]
    """Register export formats (``hf``, ``gguf``, ...), named by the recipe's ``output.formats``.

    :returns: subclasses of :class:`tunekit.core.kinds.Exporter`.
    """


# -- knowledge: rules, recipes, models -----------------------------------------------------


@hookspec
def tunekit_rules() -> list[dict[str, Any] | Path]:  # type: ignore[empty-body]
    """Add recommendation rules.

    :returns: rule mappings (the schema of ``recipes/rules/*.yaml``) or paths to YAML rule files.
    """


@hookspec
def tunekit_recipe_dirs() -> list[Path]:  # type: ignore[empty-body]
    """Add directories of recipe files, found by name like the shipped ones.

    :returns: directories holding ``*.yaml`` recipes.
    """


@hookspec
def tunekit_models() -> list[dict[str, Any]]:  # type: ignore[empty-body]
    """Add models to the catalog used by ``recommend`` and ``estimate``.

    :returns: mappings with the fields of :class:`tunekit.core.arch.ModelArch`.
    """


# -- command line --------------------------------------------------------------------------


@hookspec
def tunekit_commands(cli: click.Group) -> None:
    """Add subcommands to the ``tunekit`` command line.

    :param cli: the top-level click group; call ``cli.command()`` or ``cli.add_command``.
    """


# -- checks ---------------------------------------------------------------------------------


@hookspec
def tunekit_checks(pair: Any, options: Any) -> dict[str, dict[str, Any]]:  # type: ignore[empty-body]
    """Add checks to ``tunekit check`` (after the built-in ``kl_divergence``, ``repetition``, ``eos``,
    ``long_context``). Every implementation runs; their results are merged.

    :param pair: the loaded base and tuned models, their tokenizers, the output's generation config and
        resolved recipe (:class:`tunekit.run.checks.load.Pair`; ``pair.recipe`` tells what the run did).
    :param options: the command's :class:`tunekit.run.checks.runner.Options` (``checks``, ``max_new_tokens``...).
    :returns: ``{check_name: result}``; each result a JSON-able dict with ``verdict`` (``ok``, ``warn`` or
        ``fail``) and ``why`` (a list of sentences), optionally ``try`` (a command to run). A name that a
        built-in or another plugin already reports is an error.
    """


# -- pipeline observers --------------------------------------------------------------------


@hookspec(firstresult=True)
def tunekit_run_stage(stage: str, plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    """Run one pipeline stage; observers wrap it (timing, memory, logging, tracing).

    The host implements the stage itself; a plugin observes it with ``@hookimpl(wrapper=True)``:
    the wrapper ``yield``\\s to the stage, receives the model it returned, and returns that model
    (or a replacement). Exceptions propagate through wrappers. Stops at the first non-None result.

    :param stage: one of ``load``, ``context``, ``prune``, ``quantize``, ``adapter``, ``train``,
        ``evaluate``, ``sampler``, ``check``, ``export``.
    :param plugin: the plugin instance running the stage, or None for host stages.
    :param model: the model going into the stage.
    :param ctx: the run's :class:`tunekit.core.context.StageContext`.
    :returns: the model after the stage.
    """
