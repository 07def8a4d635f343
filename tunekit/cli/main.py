"""The ``tunekit`` command line: a thin click layer over the library.

Every command lives in its own module under ``tunekit.cli.commands`` and calls a library function.
Nothing imported here (or by ``--help``) may import torch, transformers or peft.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any

import click

from tunekit import __version__
from tunekit.core.errors import TunekitError

#: Built-in command -> the module under ``tunekit.cli.commands`` that defines it (as ``command`` or in
#: ``commands``). A command's module is imported when it runs, all of them only to list or describe the
#: commands (``--help``): ``tunekit recommend`` does not compile ``apply``'s or ``bench``'s code to start.
#: ``tests/cli/test_cli_main.py`` checks every module defines exactly the names mapped to it.
COMMANDS = {
    "plugins": "plugins_cmd", "recipes": "recipes_cmd", "validate": "recipes_cmd", "show": "recipes_cmd",
    "schema": "recipes_cmd", "recommend": "recommend_cmd", "estimate": "estimate_cmd", "launch": "launch_cmd",
    "bench": "bench_cmd", "sweep": "sweep_cmd", "report": "report_cmd", "new-plugin": "new_plugin_cmd",
    "apply": "apply_cmd", "check": "check_cmd", "generate": "generate_cmd",
}


def command_module(name: str) -> Any:
    """The module that defines built-in command ``name`` (imported now)."""
    return importlib.import_module(f"tunekit.cli.commands.{COMMANDS[name]}")


def module_commands(module: Any) -> list[click.Command]:
    return [c for c in getattr(module, "commands", [getattr(module, "command", None)]) if c is not None]


class TunekitGroup(click.Group):
    """Maps tunekit's own errors to one clear line and an exit code (2 usage/validation, 1 failure).

    Plugin-added commands load lazily: only when a name is not a built-in command, or when the
    command list is needed (completion, or ``--help`` when :mod:`tunekit.cli.command_cache` has no
    listing for the installed plugins). Running a built-in command never imports every plugin just
    to build the command table, and ``--help`` imports none once the listing is cached.
    """

    _plugin_commands_loaded = False
    _builtin_names: frozenset[str] = frozenset()

    def load_builtin(self, name: str) -> None:
        """Import the module of built-in command ``name`` and add the commands it defines."""
        if name in COMMANDS and name not in self.commands:
            for command in module_commands(command_module(name)):
                self.commands.setdefault(command.name or name, command)

    def load_builtins(self) -> None:
        for name in COMMANDS:
            self.load_builtin(name)

    def load_plugin_commands(self) -> None:
        """Call ``tunekit_commands`` once; a plugin may add commands but never replace a built-in."""
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        self.load_builtins()
        from tunekit.core.registry import get_registry

        registry = get_registry()
        builtin = dict(self.commands)
        registry.call_safely("tunekit_commands", cli=self)
        for name, command in builtin.items():
            replacement = self.commands.get(name)
            if replacement is not command:
                self.commands[name] = command
                owner = getattr(getattr(replacement, "callback", None), "__module__", None) or "?"
                registry.record_failure(owner, f"tunekit_commands(): command '{name}' clashes with a built-in; skipped")
        self._builtin_names = frozenset(builtin)
        if registry.from_entry_points_only:
            self._remember_plugin_commands()

    def _remember_plugin_commands(self) -> None:
        """Cache what the installed plugins added, for the next ``--help``."""
        from tunekit.cli import command_cache

        added = {n: command_cache.describe(c) for n, c in self.commands.items() if n not in self._builtin_names}
        command_cache.save(command_cache.fingerprint(), added)

    def unload_plugin_commands(self) -> None:
        """Forget plugin commands (tests reset the registry between cases)."""
        if self._plugin_commands_loaded:
            for name in set(self.commands) - self._builtin_names:
                del self.commands[name]
        self._plugin_commands_loaded = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_builtin(cmd_name)
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugin_commands_loaded:
            self.load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugin_commands()
        return super().list_commands(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command table, from the cached plugin listing when it matches what is installed."""
        self.load_builtins()
        cached = None if self._plugin_commands_loaded else _cached_plugin_commands()
        if cached is None:
            super().format_commands(ctx, formatter)
            return
        described = {n: c for n, c in self.commands.items() if not c.hidden}
        for name, info in cached.items():
            if name not in described and not info.get("hidden"):
                described[name] = click.Command(
                    name, help=info.get("help"), short_help=info.get("short_help"),
                    deprecated=info.get("deprecated") or False,
                )
        if described:
            limit = formatter.width - 6 - max(len(name) for name in described)
            rows = [(name, described[name].get_short_help_str(limit)) for name in sorted(described)]
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TunekitError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)


def _cached_plugin_commands() -> dict[str, Any] | None:
    """The cached plugin commands, unless a registry is already loaded in this process (then it wins)."""
    loaded = sys.modules.get("tunekit.core.registry")
    if loaded is not None and getattr(loaded, "_cached", None) is not None:
        return None
    from tunekit.cli import command_cache

    return command_cache.load(command_cache.fingerprint())


@click.group(cls=TunekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tunekit")
def cli() -> None:
    """tunekit: recipes and recommendations for quantizing, adapting, extending and pruning LLMs."""


def main() -> None:
    # A command makes most of its objects once, while it starts (pydantic, the plugins, the rules), and they
    # live to the end: collecting the young generation every 700 allocations walks them ~90 times for
    # nothing (~15 ms of `tunekit recommend`). mypy raises the threshold the same way; the cyclic garbage a
    # long run makes between two collections stays small next to what it holds.
    gc.set_threshold(100_000, 50, 100)
    try:
        cli()
    finally:
        # Exiting, CPython collects every generation while it tears the modules down: a walk of everything the
        # command built, ~25 ms of `tunekit recommend` for no memory anyone will use. Freezing moves those
        # objects out of the collector's sight; they are still freed by reference counting, and atexit
        # handlers still run (unlike mypy's os._exit). Nothing here relies on a collection to flush or close
        # a file: writes are closed where they are made.
        gc.freeze()


if __name__ == "__main__":
    main()
