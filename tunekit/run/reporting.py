"""How a run talks: human lines and rich progress bars, nothing with ``--quiet``, JSON lines with ``--log-json``.

One object so every stage reports the same way: ``log`` for messages, ``event`` for machine-readable
milestones (shown only as JSON), ``progress`` for long loops (calibration, training, evaluation),
``plan`` before any weight loads and ``done`` at the end. Messages go to stderr so stdout stays clean
for JSON consumers. Without a terminal (a CI log, ``| tee run.log``) a bar would draw nothing, so long loops
print plain progress lines instead and a stage that runs on in silence (calibration inside a backend, an
export) prints a "still running" line every ``line_every_s`` seconds: a log never goes quiet for minutes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunekit.run import interrupts

LINE_EVERY_S = 10.0
"""Without a terminal, the longest a run's log goes without a line (progress, step or "still running")."""


class Reporter:
    """Prints a run's plan, messages, progress and summary according to ``quiet`` / ``log_json``."""

    def __init__(self, *, quiet: bool = False, log_json: bool = False, stream: Any = None,
                 line_every_s: float = LINE_EVERY_S, lines_after_s: float = 2.0) -> None:
        self.quiet = quiet
        self.log_json = log_json
        self.stream = stream
        self.line_every_s = line_every_s
        """Without a terminal: the longest silence before a progress or "still running" line."""
        self.lines_after_s = lines_after_s
        """Without a terminal: a loop prints its 10% lines once it has run this long (short loops stay quiet)."""
        self._last_line = time.monotonic()

    def _out(self) -> Any:
        return self.stream or sys.stderr

    def _on_terminal(self) -> bool:
        isatty = getattr(self._out(), "isatty", None)
        return bool(isatty and isatty())

    def emit(self, event: str, **data: Any) -> None:
        """One JSON line: ``{"event": ..., "time": ..., ...}``."""
        line = json.dumps({"event": event, "time": round(time.time(), 3), **data}, default=str)
        print(line, file=self.stream or sys.stdout, flush=True)

    def log(self, message: str) -> None:
        if self.log_json:
            self.emit("log", message=message)
        elif not self.quiet:
            print(message, file=self._out(), flush=True)
            self._last_line = time.monotonic()

    def event(self, event: str, **data: Any) -> None:
        if self.log_json:
            self.emit(event, **data)

    def plan(self, plan: dict[str, Any]) -> None:
        if self.log_json:
            self.emit("plan", **plan)
            return
        if self.quiet:
            return
        from tunekit.core.render import console, table

        t = table(f"tunekit apply: {plan['recipe']} ({plan['source']})", ["stage", "plugin", "parameters"])
        for row in plan["stages"]:
            name = row.get("method", "")
            params = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("stage", "kind", "method")
                               and v is not None)
            t.add_row(row["stage"], str(name), params)
        out = console(stderr=self.stream is None)
        out.print(t)
        out.print("checks: " + "; ".join(plan["checks"]))

    def done(self, output: Path, metrics: dict[str, Any]) -> None:
        if self.log_json:
            self.emit("done", output=str(output), metrics=metrics)
            return
        ev = metrics.get("evaluate", {})
        before, after = ev.get("perplexity_before"), ev.get("perplexity_after")
        ppl = f"; perplexity {before:.3f} -> {after:.3f}" if before is not None and after is not None else ""
        self.log(f"wrote {output}{ppl}; {metrics.get('run', {}).get('seconds', '?')} s")

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """``with reporter.progress("evaluating", n) as advance: advance(1)`` — a rich bar on a terminal,
        a JSON ``progress`` line every ~10% with ``--log-json``, nothing with ``--quiet``. Every step
        also re-raises a Ctrl-C that a library swallowed (``tunekit.run.interrupts``), so long loops stop."""
        with self._progress(description, total) as advance:

            def step(n: int) -> None:
                interrupts.check()
                advance(n)

            yield step

    @contextmanager
    def _progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        if self.quiet:
            yield lambda _n: None
            return
        if self.log_json:
            done = [0, -1]

            def advance_json(n: int) -> None:
                done[0] += n
                tenth = int(10 * done[0] / total) if total else done[0]
                if tenth != done[1]:
                    done[1] = tenth
                    self.emit("progress", task=description, done=done[0], total=total)

            yield advance_json
            return
        if not self._on_terminal():
            yield self._line_progress(description, total)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from tunekit.core.render import console

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)

    def _line_progress(self, description: str, total: int | None) -> Callable[[int], None]:
        """Plain lines for a log: one per 10% once the loop has run ``lines_after_s``, and one whenever
        ``line_every_s`` passed without a line, each saying how far it is and for how long it has run."""
        started = time.monotonic()
        done, shown = [0], [0]

        def advance(n: int) -> None:
            done[0] += n
            now = time.monotonic()
            tenth = int(10 * done[0] / total) if total else 0
            stepped = tenth > shown[0] and now - started >= self.lines_after_s
            if stepped or now - self._last_line >= self.line_every_s:
                shown[0] = tenth
                where = f"{done[0]}/{total} ({100 * done[0] // total}%)" if total else f"{done[0]} done"
                self.log(f"{description}: {where}, {now - started:.0f} s")

        return advance

    @contextmanager
    def heartbeat(self, what: str) -> Iterator[None]:
        """Around a stage: without a terminal, a line every ``line_every_s`` seconds in which nothing else was
        printed, so a stage whose work happens inside a library (calibration, an export) shows it is alive."""
        if self.quiet or self.log_json or self._on_terminal():
            yield
            return
        stop = threading.Event()
        started = time.monotonic()

        def beat() -> None:
            while not stop.wait(min(1.0, self.line_every_s / 4)):
                now = time.monotonic()
                if now - self._last_line >= self.line_every_s:
                    self.log(f"{what}: still running, {now - started:.0f} s")

        thread = threading.Thread(target=beat, name="tunekit-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
