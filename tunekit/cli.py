"""The ``tunekit`` command line: a thin click layer over the library.

Every command lives in its own module under ``tunekit.commands`` and calls a library function.
Nothing imported here (or by ``--help``) may import torch, transformers or peft.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from tunekit import __version__
from tunekit.errors import TunekitError

#: Command modules, each exposing ``command`` (a click command or group). All torch-free at import.
COMMAND_MODULES = (
    "tunekit.commands.plugins_cmd",
    "tunekit.commands.recipes_cmd",
)


class TunekitGroup(click.Group):
    """Maps tunekit's own errors to one clear line and an exit code (2 usage/validation, 1 failure)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TunekitError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=TunekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tunekit")
def cli() -> None:
    """tunekit: recipes and recommendations for quantizing, adapting, extending and pruning LLMs."""


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        for command in getattr(module, "commands", [getattr(module, "command", None)]):
            if command is not None:
                cli.add_command(command)


def _register_plugin_commands() -> None:
    """Let plugins add subcommands; a plugin whose hook raises is recorded and skipped."""
    from tunekit.plugins import get_registry

    get_registry().call_safely("tunekit_commands", cli=cli)


_register_commands()


def main() -> None:
    _register_plugin_commands()
    cli()


if __name__ == "__main__":
    main()
