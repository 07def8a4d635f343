"""``tunekit plugins`` readiness: derived from each plugin's declared extra and what its default params need."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from tunekit.cli.commands.plugins_cmd import plugins_report
from tunekit.cli.main import cli


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in names else real(name, *a, **k))


def item(kind: str, name: str) -> dict[str, object]:
    return next(i for i in plugins_report()["kinds"][kind] if i["name"] == name)


def test_gguf_default_needs_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit_gguf import GGUFExporter

    hide(monkeypatch, "llama_cpp")
    gguf = item("exporter", "gguf")
    assert gguf["ready"] is False and gguf["missing"] == ["llama_cpp"]
    assert gguf["hint"] == "pip install 'tunekit[gguf]'"
    # a directly encoded type needs only the gguf package
    assert GGUFExporter(GGUFExporter.Params(type="f16")).needs().missing_packages() == []


@pytest.mark.parametrize("name,extra", [("gptq", "gptq"), ("awq", "gptq"), ("nf4", "bnb")])
def test_missing_backends_name_their_extra(monkeypatch: pytest.MonkeyPatch, name: str, extra: str) -> None:
    hide(monkeypatch, "gptqmodel", "bitsandbytes")
    quantizer = item("quantizer", name)
    assert quantizer["ready"] is False and quantizer["hint"] == f"pip install 'tunekit[{extra}]'"
    out = CliRunner().invoke(cli, ["plugins", "--json"]).output
    listed = next(i for i in json.loads(out)["kinds"]["quantizer"] if i["name"] == name)
    assert listed["hint"] == f"pip install 'tunekit[{extra}]'"


def test_ready_plugins_have_no_hint() -> None:
    assert item("adapter", "lora")["ready"] is True and item("adapter", "lora")["hint"] is None


def test_the_table_prints_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich markup once swallowed "[gptq]", printing `pip install 'tunekit'`."""
    hide(monkeypatch, "gptqmodel")
    out = CliRunner().invoke(cli, ["plugins"], env={"COLUMNS": "250"}).output
    assert "pip install 'tunekit[gptq]'" in out and "'tunekit'" not in out
