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


# -- plain text, for the commands that must start fast (rich costs ~25 ms to import and set up) -----------


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` wins, as for rich), 80 when stdout is not a terminal."""
    import shutil

    return max(shutil.get_terminal_size((80, 24)).columns, 20)


def wrap(text: str, width: int | None = None) -> str:
    """Each line of ``text`` wrapped at word boundaries to ``width``: a word (a model id, a path) is never cut."""
    import textwrap

    width = width or terminal_width()
    return "\n".join(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) or line
                     for line in text.splitlines() or [""])


def text_table(columns: list[str], rows: list[list[str]], *, width: int | None = None) -> str:
    """A table with a rule under the header, columns two spaces apart; the last column wraps at word
    boundaries so the table fits ``width`` (the terminal's), never breaking a word or a name."""
    import textwrap

    width = width or terminal_width()
    cells = [columns, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    fixed = sum(widths[:-1]) + 2 * (len(columns) - 1)  # everything left of the last column
    longest_word = max((len(word) for row in cells for word in row[-1].split()), default=1)
    widths[-1] = max(min(widths[-1], width - fixed), longest_word, len(columns[-1]))
    lines = []
    for index, row in enumerate(cells):
        last = textwrap.wrap(row[-1], widths[-1], break_long_words=False, break_on_hyphens=False) or [""]
        head = "".join(cell.ljust(w) + "  " for cell, w in zip(row[:-1], widths[:-1], strict=True))
        lines.append((head + last[0]).rstrip())
        lines += [(" " * len(head) + more).rstrip() for more in last[1:]]
        if index == 0:
            lines.append("-" * min(width, sum(widths) + 2 * (len(columns) - 1)))
    return "\n".join(lines)
