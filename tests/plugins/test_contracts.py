"""Every built-in plugin runs the contract a third-party author runs (``tunekit.testing``).

One test class per plugin is generated from the installed registry, so a new built-in is covered the
day it is registered. Plugins whose ``apply`` costs a backend run of tens of seconds (GPTQModel) keep
the declaration checks here and their apply checks in their own test module (``APPLY_ELSEWHERE``).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tunekit import testing
from tunekit.core.kind_specs import KIND_HOOKS
from tunekit.core.registry import get_registry

CONTRACTS: dict[str, type[testing.PluginContract]] = {
    "quantizer": testing.QuantizerContract,
    "adapter": testing.AdapterContract,
    "context": testing.ContextContract,
    "pruner": testing.PrunerContract,
    "sampler": testing.SamplerContract,
}

APPLY_ELSEWHERE = {
    ("quantizer", "gptq"): "GPTQModel run (~40 s); apply covered by tests/plugins/test_gptq.py",
    ("quantizer", "awq"): "GPTQModel AWQ run (~40 s); apply covered by tests/plugins/test_gptq.py",
}
"""(kind, name) -> why the apply-based checks of that plugin run in its own tests instead."""

APPLY_TESTS = ("test_apply_matches_declared_bits", "test_trainable_params_match",
               "test_factor_applied_to_rope_parameters", "test_sparsity_achieved_and_permanent",
               "test_unsupported_model_raises_a_tunekit_error")

KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}
"""(kind, name, test) -> the contract a built-in breaks today (reported to its owner); strict xfail."""


def builtin_plugins() -> list[tuple[str, str, type[Any]]]:
    registry = get_registry()
    return [(kind, name, cls) for kind in CONTRACTS for name, cls in sorted(registry.of(kind).items())
            if registry.owners[(kind, name)].distribution == "tunekit"]


def _skip(reason: str) -> Any:
    def test(self: Any, *args: Any, **kwargs: Any) -> None:
        pytest.skip(reason)

    return test


def _contract_class(kind: str, name: str, cls: type[Any]) -> type:
    attrs: dict[str, Any] = {"plugin_class": cls, "check_torch_free": False}
    reason = APPLY_ELSEWHERE.get((kind, name))
    if reason:
        attrs.update({test: _skip(reason) for test in APPLY_TESTS})
    for (k, n, test), why in KNOWN_FAILURES.items():
        if (k, n) == (kind, name):
            attrs[test] = pytest.mark.xfail(reason=why, strict=True)(getattr(CONTRACTS[kind], test))
    safe = name.replace("-", "_").replace(".", "_")
    return type(f"Test{kind.title()}_{safe}", (CONTRACTS[kind],), attrs)


for _kind, _name, _cls in builtin_plugins():
    _generated = _contract_class(_kind, _name, _cls)
    globals()[_generated.__name__] = _generated


def test_every_kind_has_a_contract() -> None:
    assert set(CONTRACTS) == set(KIND_HOOKS) - {"exporter"}


def test_builtin_plugin_modules_import_without_torch() -> None:
    """One interpreter for all built-ins (the per-class check would start one each)."""
    modules = sorted({cls.__module__ for _k, _n, cls in builtin_plugins()})
    assert modules
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(','.join(n for n in ('torch', 'transformers', 'peft') if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not done.stdout.strip(), f"a built-in plugin module imports {done.stdout.strip()} at import time"
