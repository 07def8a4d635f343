"""Shared fixtures. No test downloads anything: models are built from configs or shipped."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The plugin-command listing cache (tunekit.cli.command_cache) would carry one test's fake plugins into the
# next test's --help; tests that exercise it point it at their own file.
os.environ["TUNEKIT_COMMAND_CACHE"] = "off"


@pytest.fixture(autouse=True)
def _forget_signals() -> object:
    """A test that sends itself SIGTERM/SIGINT leaves the signal recorded (tunekit.run.interrupts); forget it so
    the next test's pipeline does not stop at its first stage."""
    yield
    from tunekit.run import interrupts

    interrupts.clear()
