"""Issue 20 item 9: a log without a terminal gets progress lines from every long stage; a terminal keeps its bars."""

from __future__ import annotations

import io
import re
import time
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

from tunekit import hookimpl
from tunekit.core.context import RunState
from tunekit.core.registry import load_registry
from tunekit.run import evaluate, reporting, train_progress
from tunekit.run.pipeline import apply_recipe
from tunekit.run.reporting import Reporter
from tunekit.testing import build_tiny_model

torch.set_num_threads(2)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def perplexity_lines(stream: io.StringIO, windows: int) -> list[str]:
    reporter = Reporter(stream=stream, lines_after_s=0)
    ids = torch.randint(3, 512, (windows * 32 + 1,), generator=torch.Generator().manual_seed(0)).tolist()
    progress = RunState(reporter=reporter).progress
    result = evaluate.perplexity_of_ids(build_tiny_model(), ids, seq_len=32, progress=progress,
                                        label="perplexity (before)")
    assert result.windows == windows
    return stream.getvalue().splitlines()


def test_a_perplexity_pass_in_a_log_prints_its_progress() -> None:
    lines = perplexity_lines(io.StringIO(), 10)
    assert len(lines) == 10, lines  # one per 10%, each with how far and how long
    assert lines[0].startswith("perplexity (before): 1/10 (10%), ") and lines[0].endswith(" s")
    assert lines[4].startswith("perplexity (before): 5/10 (50%)")
    assert lines[-1].startswith("perplexity (before): 10/10 (100%)")


def test_a_terminal_keeps_its_bar_and_gets_no_lines() -> None:
    assert perplexity_lines(Terminal(), 4) == []


def test_short_loops_stay_quiet_but_a_silent_one_speaks_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(reporting.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    reporter = Reporter(stream=stream, line_every_s=10)
    with reporter.progress("calibration", 100) as advance:
        for _ in range(50):  # half the loop in under the 2 s a line needs
            clock[0] += 0.01
            advance(1)
        assert stream.getvalue() == ""
        clock[0] += 30  # one slow step: the log has been silent for 30 s
        advance(1)
    assert stream.getvalue().splitlines() == ["calibration: 51/100 (51%), 31 s"]


def test_a_stage_that_runs_in_silence_says_it_is_still_running() -> None:
    stream = io.StringIO()
    reporter = Reporter(stream=stream, line_every_s=0.2)
    with reporter.heartbeat("quantizer (gptq)"):
        time.sleep(0.7)
    lines = stream.getvalue().splitlines()
    assert lines and all(re.fullmatch(r"quantizer \(gptq\): still running, \d+ s", line) for line in lines)
    assert len(lines) <= 4
    terminal = Terminal()
    with Reporter(stream=terminal, line_every_s=0.05).heartbeat("export"):
        time.sleep(0.2)  # a terminal: the bars (and the libraries' own) show progress
    assert terminal.getvalue() == ""
    quiet = io.StringIO()
    with Reporter(stream=quiet, quiet=True, line_every_s=0.05).heartbeat("export"):
        time.sleep(0.2)
    assert quiet.getvalue() == ""


def test_training_without_a_bar_logs_a_step_line_whenever_the_log_went_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    callback = train_progress.ProgressCallback(lines.append, quiet=True)
    state = SimpleNamespace(global_step=0, max_steps=100, num_input_tokens_seen=0)
    callback.on_train_begin(None, state, None)
    state.global_step = 3
    callback.on_log(None, state, None, logs={"loss": 2.0})
    assert lines == []  # not a tenth of the run, and just started
    monkeypatch.setattr(reporting, "LINE_EVERY_S", 0.0)
    callback.on_log(None, state, None, logs={"loss": 1.5, "learning_rate": 1e-4})
    assert len(lines) == 1 and lines[0].startswith("step 3/100  loss 1.5000  lr 1.00e-04")


def test_the_summary_prints_perplexity_to_three_decimals() -> None:
    stream = io.StringIO()
    Reporter(stream=stream).done(Path("out"), {"evaluate": {"perplexity_before": 53.461234, "perplexity_after": 42.2},
                                               "run": {"seconds": 12.5}})
    assert stream.getvalue() == "wrote out; perplexity 53.461 -> 42.200; 12.5 s\n"


def test_apply_says_which_stage_is_still_running(tmp_path: Path) -> None:
    """The heartbeat wraps every stage of a real run: a slow pruner shows up by stage and method."""
    from tunekit.testing import save_tiny_model

    module = types.ModuleType("tunekit_test_slow_prune")

    @hookimpl(wrapper=True)
    def tunekit_run_stage(stage: str, plugin: Any, model: Any, ctx: Any) -> Any:
        if stage == "prune":
            time.sleep(0.6)  # a backend working in silence
        return (yield)

    module.tunekit_run_stage = tunekit_run_stage  # type: ignore[attr-defined]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "slow", "pruner": {"method": "magnitude", "sparsity": 0.3},
                                      "eval": {"perplexity": False, "check": False}}))
    stream = io.StringIO()
    apply_recipe(recipe, model=save_tiny_model(tmp_path / "model"), output=tmp_path / "out",
                 registry=load_registry(extra_modules=[module]), reporter=Reporter(stream=stream, line_every_s=0.2))
    assert re.search(r"^prune \(magnitude\): still running, \d+ s$", stream.getvalue(), re.MULTILINE), stream.getvalue()
