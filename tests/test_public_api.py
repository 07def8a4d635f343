"""The plugin author's surface: ``from tunekit import ...`` and old module paths kept for one release."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import tunekit
from tunekit import _compat

PUBLIC = ["hookimpl", "Quantizer", "Adapter", "ContextExtender", "Pruner", "Sampler", "Exporter", "PluginParams",
          "Requirements", "Effects", "PluginError", "StageContext", "ModelArch", "UsageError"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_import_from_the_package(name: str) -> None:
    assert name in tunekit.__all__
    assert getattr(tunekit, name) is not None


def test_importing_tunekit_loads_no_pydantic_until_a_kind_is_used() -> None:
    code = ("import sys, tunekit; before = 'pydantic' in sys.modules; tunekit.Quantizer; "
            "print(before, 'pydantic' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "False"]


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_old_module_paths_warn_and_are_the_same_module(old: str) -> None:
    import importlib

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(_compat.MOVED[old])


def test_old_submodule_of_a_moved_package_resolves() -> None:
    import importlib

    sys.modules.pop("tunekit.rules.engine", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("tunekit.rules.engine")
    assert old is importlib.import_module("tunekit.advise.rules.engine")


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        tunekit.no_such_thing  # noqa: B018
