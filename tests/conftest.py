"""Shared fixtures. No test downloads anything: models are built from configs or shipped."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")



@pytest.fixture(autouse=True)
def _forget_signals() -> object:
    """A test that sends itself SIGTERM/SIGINT leaves the signal recorded (tunekit.interrupts); forget it so
    the next test's pipeline does not stop at its first stage."""
    yield
    from tunekit import interrupts

    interrupts.clear()
