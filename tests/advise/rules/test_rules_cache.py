"""Rule files are parsed once per change: a JSON copy in the user cache stands in for the YAML while the
file's size and mtime are unchanged (PyYAML's import and parse were ~15 ms of every recommend)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunekit.advise.rules import loader
from tunekit.core.errors import UsageError

RULES = """rules:
  - id: cached-rule
    description: a rule for the cache test
    when: {goal: serve}
    levers: [quantize]
"""


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(loader.RULES_CACHE_ENV, raising=False)
    return tmp_path / "cache" / "rules"


def test_a_rule_file_is_read_from_its_cached_copy_until_it_changes(tmp_path: Path, cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(RULES)
    assert [r.id for r in loader.read_rule_file(path)] == ["cached-rule"]
    (copy,) = cache.glob("*.json")
    # the copy answers while the file is unchanged: make it say something else to prove it is read
    kept = json.loads(copy.read_text())
    kept["data"]["rules"][0]["id"] = "from-the-copy"
    copy.write_text(json.dumps(kept))
    assert [r.id for r in loader.read_rule_file(path)] == ["from-the-copy"]
    path.write_text(RULES.replace("cached-rule", "edited-rule"))
    os.utime(path, ns=(1, 2))  # a new mtime even on a coarse clock
    assert [r.id for r in loader.read_rule_file(path)] == ["edited-rule"]


def test_a_corrupt_or_unwritable_cache_only_costs_speed(tmp_path: Path, cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(RULES)
    loader.read_rule_file(path)
    (copy,) = cache.glob("*.json")
    copy.write_text("{not json")
    assert [r.id for r in loader.read_rule_file(path)] == ["cached-rule"]
    monkeypatch.setenv("TUNEKIT_CACHE", str(path))  # a file where the folder should be: nothing is written
    assert [r.id for r in loader.read_rule_file(path)] == ["cached-rule"]
    monkeypatch.setenv(loader.RULES_CACHE_ENV, "off")
    assert loader._cache_path(path) is None


def test_a_broken_rule_file_is_reported_with_or_without_the_cache(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules: [ {id: x, when: {goal: serve}")
    with pytest.raises(UsageError, match="cannot read rules"):
        loader.read_rule_file(path)
    assert not list(cache.glob("*.json"))  # nothing kept of a file that does not parse


def test_a_value_json_cannot_keep_as_it_is_is_not_cached(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "dated.yaml"
    path.write_text(RULES + "    note: 2024-01-01\n")  # a YAML date: JSON would keep a string
    assert loader.read_rule_file(path)[0].note == "2024-01-01"
    assert not list(cache.glob("*.json"))
