"""Rules as data: shipped YAML in ``recipes/rules/`` plus whatever the ``tunekit_rules`` hook adds.

A rule file holds ``rules: [...]`` (or a bare list). Each rule::

    id: symptom-doesnt-fit            # unique; a later rule with the same id replaces the earlier one
    description: ...                  # shown by --explain and --list-symptoms
    source: docs/reference.md, diagnosis   # where the advice comes from
    when: {symptom: doesnt-fit}       # condition over facts (see tunekit.advise.rules.conditions)
    priority: 50                      # higher: its levers come first and its `set` wins
    levers: [quantize, prune]         # families: as-is, adapter, savings, full, quantize, prune, context, sampler, none
    set: {sampler: {temperature: 0.3}}  # recipe values merged into the candidates it generates
    prefer: [{when: {fact: candidate.bits, op: le, value: 4.5}, points: 3, reason: "..."}]
    drop: [{when: {...}, reason: "..."}]
    note: "..."                       # printed with the result
    next: ["..."]                     # what to try if this is not enough
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.advise.rules.conditions import check
from tunekit.core.errors import UsageError, excerpt
from tunekit.core.recipe_files import is_yaml_error
from tunekit.core.resources import shipped_recipe_dir

if TYPE_CHECKING:
    from tunekit.core.registry import Registry

LEVERS = ("as-is", "adapter", "savings", "full", "quantize", "prune", "context", "sampler", "none")
_FIELDS = {"id", "description", "source", "when", "priority", "levers", "set", "prefer", "drop", "note", "next"}


@dataclass(frozen=True)
class Rule:
    """One validated rule."""

    id: str
    description: str = ""
    source: str = ""
    when: dict[str, Any] | None = None
    priority: int = 0
    levers: tuple[str, ...] = ()
    set: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefer: tuple[dict[str, Any], ...] = ()
    drop: tuple[dict[str, Any], ...] = ()
    note: str = ""
    next: tuple[str, ...] = ()
    origin: str = ""

    @property
    def symptom(self) -> str | None:
        """The symptom this rule diagnoses, when its condition is exactly ``{symptom: X}``."""
        if isinstance(self.when, dict) and set(self.when) == {"symptom"}:
            return str(self.when["symptom"])
        return None


def parse_rule(data: Any, origin: str) -> Rule:
    """Validate one rule mapping; errors name the origin and the rule id."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise UsageError(f"{origin}: a rule must be a mapping with a string 'id', got {excerpt(data)}")
    where = f"{origin}: rule {excerpt(data['id'])}"
    unknown = set(map(str, data)) - _FIELDS
    if unknown:
        raise UsageError(f"{where}: unknown keys {excerpt(sorted(unknown))} (allowed: {sorted(_FIELDS)})")
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise UsageError(f"{where}: 'priority' must be an integer (higher wins), got {excerpt(priority)}")
    for name in ("levers", "prefer", "drop", "next"):
        if not isinstance(data.get(name) or [], list):
            raise UsageError(f"{where}: '{name}' must be a list, got {excerpt(data[name])}")
    levers = tuple(data.get("levers") or ())
    bad = [lv for lv in levers if lv not in LEVERS]
    if bad:
        raise UsageError(f"{where}: unknown levers {bad} (known: {', '.join(LEVERS)})")
    try:
        check(data.get("when"))
        for item in [*(data.get("prefer") or []), *(data.get("drop") or [])]:
            if not isinstance(item, dict):
                raise UsageError(f"prefer/drop items must be mappings, got {excerpt(item)}")
            check(item.get("when"))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    settings = data.get("set") or {}
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise UsageError(f"{where}: 'set' must map recipe sections to mappings")
    return Rule(id=data["id"], description=str(data.get("description", "")).strip(),
                source=str(data.get("source", "")), when=data.get("when"), priority=priority,
                levers=levers, set=settings, prefer=tuple(data.get("prefer") or ()),
                drop=tuple(data.get("drop") or ()), note=str(data.get("note", "")).strip(),
                next=tuple(data.get("next") or ()), origin=origin)


#: The parsed rule files are kept as JSON under the user cache, keyed by each file's path, size and mtime:
#: PyYAML's import and parse are ~15 ms of every ``tunekit recommend``, for files that change only with
#: tunekit or a plugin. ``TUNEKIT_RULES_CACHE=off`` parses every time.
RULES_CACHE_ENV = "TUNEKIT_RULES_CACHE"
_RULES_CACHE_FORMAT = 1


def _cache_path(path: Path) -> Path | None:
    import hashlib

    from tunekit.core.fixtures import cache_dir

    if os.environ.get(RULES_CACHE_ENV, "").strip().lower() in {"off", "0", "no", "false"}:
        return None
    try:
        base = cache_dir()
    except RuntimeError:  # no home directory: no cache
        return None
    return base / "rules" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:20] + ".json")


def _stamp(path: Path) -> list[int]:
    info = path.stat()
    return [_RULES_CACHE_FORMAT, info.st_size, info.st_mtime_ns]


def _parsed(path: Path) -> Any:
    """The YAML document of a rule file: its cached JSON copy when the file is unchanged, else parsed (and
    the copy written, when the document survives JSON as it is and the cache folder can be written)."""
    import json

    cached = _cache_path(path)
    try:
        stamp = _stamp(path)
        if cached is not None and cached.is_file():
            kept = json.loads(cached.read_text(encoding="utf-8"))
            if isinstance(kept, dict) and kept.get("stamp") == stamp:
                return kept.get("data")
    except (OSError, ValueError):  # unreadable or corrupt copy: parse the file
        stamp = None
    import yaml

    data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if cached is not None and stamp is not None:
        try:
            text = json.dumps({"stamp": stamp, "data": data})
            if json.loads(text)["data"] == data:  # no date, tuple or non-text key changed on the way
                cached.parent.mkdir(parents=True, exist_ok=True)
                temporary = cached.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(text, encoding="utf-8")
                os.replace(temporary, cached)
        except (OSError, TypeError, ValueError):  # a read-only home, or a value JSON cannot hold
            pass
    return data


def read_rule_file(path: Path) -> list[Rule]:
    try:
        data = _parsed(path)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: cannot read rules: not UTF-8 text (byte {exc.start})") from None
    except Exception as exc:
        # KeyError/ValueError: a tag the safe constructor cannot build (``priority: !!bool high``)
        if not (isinstance(exc, (OSError, KeyError, ValueError, TypeError, RecursionError)) or is_yaml_error(exc)):
            raise
        raise UsageError(f"{path}: cannot read rules: {excerpt(str(exc), 200)}") from None
    items = data.get("rules", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UsageError(f"{path}: expected 'rules: [...]' or a list of rules")
    return [parse_rule(item, str(path)) for item in items]


def shipped_rule_dir() -> Path:
    return shipped_recipe_dir() / "rules"


def load_rules(registry: Registry | None = None, *, directory: Path | None = None) -> list[Rule]:
    """Shipped rules, then plugin rules (a plugin's bad rule is recorded as a failure and skipped)."""
    rules: dict[str, Rule] = {}
    folder = directory or shipped_rule_dir()
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        for rule in read_rule_file(path):
            rules[rule.id] = rule
    if registry is not None:
        for plugin, returned in registry.call_safely("tunekit_rules"):
            for item in returned if isinstance(returned, (list, tuple)) else [returned]:
                try:
                    found = read_rule_file(Path(item)) if isinstance(item, (str, Path)) else [
                        parse_rule(item, f"plugin {plugin}")]
                except UsageError as exc:
                    registry.record_failure(plugin, f"tunekit_rules(): {exc}")
                    continue
                for rule in found:
                    rules[rule.id] = rule
    return list(rules.values())
