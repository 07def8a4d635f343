"""Shared console helpers for commands (rich is imported lazily: it costs start-up time)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import click


def echo_json(data: Any, stream: TextIO | None = None) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str), file=stream)


@contextlib.contextmanager
def stdout_for_data() -> Iterator[TextIO]:
    """Keep stdout for what a command prints on purpose (JSON, a table, a completion): while the work runs,
    whatever else lands on stdout (GPTQModel's import banner, which PEFT triggers on every LoRA attach;
    a library's ``print``) goes to stderr. Yields the real stdout."""
    real = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield real


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def table(title: str | None, columns: list[str]) -> Any:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    return t
