"""Conditions of a rule, as plain data: ``all``/``any``/``not`` over fact comparisons.

A leaf compares a dotted fact path (``hardware.vram_gb``, ``candidate.bits``) with a value; the
shorthands ``{symptom: X}`` and ``{goal: X}`` cover the common cases, and ``{predicate: NAME}``
is the escape hatch to Python: a built-in name below or ``module:function`` from a plugin.
"""

from __future__ import annotations

import importlib
import operator
import re
from collections.abc import Callable
from typing import Any

from tunekit.core.errors import UsageError

Predicate = Callable[[dict[str, Any]], bool]

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: b in (a or ()),
}
_MISSING = object()


def lookup(facts: dict[str, Any], path: str) -> Any:
    """``facts['a']['b']`` for ``a.b``; a missing key is ``_MISSING`` (every comparison is then false)."""
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _group_size_mismatch(facts: dict[str, Any]) -> bool:
    """A quantizer group size must divide every quantized layer's input width (ARCHITECTURE.md)."""
    group = lookup(facts, "candidate.group_size")
    if not isinstance(group, int) or group <= 0:
        return False
    model = facts.get("model", {})
    widths = (model.get("hidden", 0), model.get("intermediate", 0), model.get("heads", 0) * model.get("head_dim", 0))
    return any(w and w % group for w in widths)


PREDICATES: dict[str, Predicate] = {
    "moe": lambda f: bool(lookup(f, "model.moe") is True),
    "small_model": lambda f: 0 < float(lookup(f, "model.params_b") or 0) < 3,
    "group_size_mismatch": _group_size_mismatch,
    "needs_more_context": lambda f: (lookup(f, "context_target") or 0) > (lookup(f, "model.max_context") or 0),
}


def resolve_predicate(name: str) -> Predicate:
    if name in PREDICATES:
        return PREDICATES[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"rule predicate '{name}' cannot be imported: {exc}") from exc
    raise UsageError(f"unknown rule predicate '{name}' (built-in: {', '.join(PREDICATES)}; or module:function)")


def check(cond: Any) -> None:
    """Raise UsageError when a condition is malformed (run at load time, so bad rules fail early)."""
    if cond is None:
        return
    if not isinstance(cond, dict) or not cond:
        raise UsageError(f"a condition must be a non-empty mapping, got {cond!r}")
    if "all" in cond or "any" in cond:
        items = cond.get("all", cond.get("any"))
        if not isinstance(items, list):
            raise UsageError(f"'all'/'any' need a list, got {items!r}")
        for item in items:
            check(item)
    elif "not" in cond:
        check(cond["not"])
    elif "predicate" in cond:
        resolve_predicate(str(cond["predicate"]))
    elif "fact" in cond:
        op = cond.get("op", "eq")
        if op not in OPS:
            raise UsageError(f"unknown operator '{op}' (known: {', '.join(OPS)})")
    elif not set(cond) <= {"symptom", "goal"}:
        raise UsageError(f"unknown condition keys {sorted(cond)}")


def evaluate(cond: Any, facts: dict[str, Any]) -> bool:
    """Whether ``cond`` holds for ``facts`` (a missing condition always holds)."""
    if cond is None:
        return True
    if "all" in cond:
        return all(evaluate(c, facts) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, facts) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], facts)
    if "predicate" in cond:
        return bool(resolve_predicate(str(cond["predicate"]))(facts))
    if "fact" in cond:
        value = lookup(facts, str(cond["fact"]))
        if value is _MISSING:
            return False
        try:
            return bool(OPS[cond.get("op", "eq")](value, cond.get("value")))
        except TypeError:
            return False
    ok = True
    if "symptom" in cond:
        ok = ok and cond["symptom"] in facts.get("symptoms", ())
    if "goal" in cond:
        goals = cond["goal"] if isinstance(cond["goal"], list) else [cond["goal"]]
        ok = ok and facts.get("goal") in goals
    return ok


def may_hold(cond: Any, facts: dict[str, Any], unknown: tuple[str, ...] = ("candidate.",),
             known: frozenset[str] = frozenset()) -> bool:
    """Whether ``cond`` could hold once the facts under the ``unknown`` paths (but the ``known`` ones) are
    known: what reads them (or a plugin's predicate, which may) counts as possibly true, the rest is
    evaluated. Never False where ``evaluate`` with those facts filled in would be True (bounds rely on it)."""
    if cond is None:
        return True
    if "all" in cond:
        return all(may_hold(c, facts, unknown, known) for c in cond["all"])
    if "any" in cond:
        return any(may_hold(c, facts, unknown, known) for c in cond["any"])
    if any(path == "*" or (path.startswith(unknown) and path not in known) for path in reads(cond)):
        return True
    return evaluate(cond, facts)


def must_hold(cond: Any, facts: dict[str, Any], unknown: tuple[str, ...] = ("candidate.",),
              known: frozenset[str] = frozenset()) -> bool:
    """Whether ``cond`` holds whatever the facts under ``unknown`` (but the ``known`` ones) turn out to be."""
    return cond is not None and not may_hold({"not": cond}, facts, unknown, known)


#: The fact paths each built-in predicate reads
PREDICATE_READS = {"moe": ("model.moe",), "small_model": ("model.params_b",),
                   "group_size_mismatch": ("candidate.group_size", "model."),
                   "needs_more_context": ("context_target", "model.max_context")}


_READS: dict[int, tuple[Any, list[str]]] = {}  # id -> (the condition, kept alive so the id stays its, paths)


def reads(cond: Any) -> list[str]:
    """The fact paths a condition reads ("*" for a plugin's predicate: it may read anything); rules are
    loaded once and asked per candidate, so each condition's answer is kept."""
    known = _READS.get(id(cond))
    if known is not None and known[0] is cond:
        return known[1]
    paths = _read_paths(cond)
    _READS[id(cond)] = (cond, paths)
    return paths


def _read_paths(cond: Any) -> list[str]:
    if isinstance(cond, list):
        return [path for item in cond for path in _read_paths(item)]
    if not isinstance(cond, dict):
        return []
    paths = [str(cond["fact"])] if "fact" in cond else []
    if "predicate" in cond:
        paths += PREDICATE_READS.get(str(cond["predicate"]), ("*",))
    paths += ["symptoms"] if "symptom" in cond else []
    paths += ["goal"] if "goal" in cond else []
    return paths + [path for key in ("all", "any", "not") if key in cond for path in _read_paths(cond[key])]


def mentions_candidate(cond: Any) -> bool:
    """Whether a condition reads ``candidate.*`` facts (then it is evaluated once per candidate)."""
    if isinstance(cond, dict):
        if str(cond.get("fact", "")).startswith("candidate."):
            return True
        if cond.get("predicate") == "group_size_mismatch":
            return True
        return any(mentions_candidate(v) for v in cond.values() if isinstance(v, (dict, list)))
    if isinstance(cond, list):
        return any(mentions_candidate(v) for v in cond)
    return False


def mentions_symptom(cond: Any) -> bool:
    """Whether a condition tests a symptom (such rules' levers replace the goal's)."""
    if isinstance(cond, dict):
        if "symptom" in cond or str(cond.get("fact", "")) == "symptoms":
            return True
        return any(mentions_symptom(v) for v in cond.values() if isinstance(v, (dict, list)))
    if isinstance(cond, list):
        return any(mentions_symptom(v) for v in cond)
    return False


_FIELD = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")


def fill(text: str, facts: dict[str, Any]) -> str:
    """Put fact values into a rule's text: ``{estimates.full_finetune_gb}`` -> ``128.5``."""

    def value(match: re.Match[str]) -> str:
        found = lookup(facts, match.group(1))
        return match.group(0) if found is _MISSING else str(found)

    return _FIELD.sub(value, text)
