"""The plugin manager: loads the ``tunekit`` entry points, never lets a broken plugin take the CLI down.

Built-in plugins are entry points of the ``tunekit`` distribution itself, so they take exactly the
path a third party's plugin takes. Every failure (import error, a hook that raises, a hook that
returns something other than plugin classes, a duplicate name, an invalid ``Params``) is recorded
with the distribution, version and error, shown by ``tunekit plugins --all``, and skipped.
``TUNEKIT_STRICT_PLUGINS=1`` re-raises instead, for plugin developers.

Built-in names win: tunekit's own entry points load first and their classes register first, so a
third-party entry point or method that reuses a built-in name is the one skipped and reported (with
its distribution), whatever the names sort like. A name offered by several distributions is
remembered in :attr:`Registry.contested` so ``validate`` can say which one a recipe gets.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import Any

import pluggy
from pydantic import BaseModel

from tunekit.core import hookspecs
from tunekit.core.errors import PluginError, UnknownPluginError, did_you_mean, excerpt
from tunekit.core.hookspecs import DISABLE_ENV, ENTRY_POINT_GROUP
from tunekit.core.kind_specs import KIND_HOOKS
from tunekit.core.kinds import BASES, Plugin

STRICT_ENV = "TUNEKIT_STRICT_PLUGINS"
#: The distribution whose entry points are tunekit's built-in plugins.
BUILTIN_DISTRIBUTION = "tunekit"
SLOW_IMPORT_S = 2.0
"""A plugin whose import takes longer than this slows every command; the user is told which one."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass
class PluginFailure:
    """A plugin that was skipped, and why."""

    plugin: str
    distribution: str
    version: str
    error: str


@dataclass
class PluginSource:
    """Where a loaded plugin module came from (for ``tunekit plugins``)."""

    plugin: str
    distribution: str
    version: str


@dataclass
class Registry:
    """Loaded plugins per kind, and everything that failed on the way.

    Other modules read plugins through :meth:`of`/:meth:`get` and report problems through
    :meth:`record_failure`; only this module fills the tables, so the built-in-first precedence and the
    strict mode hold for every caller.
    """

    pm: pluggy.PluginManager
    _classes: dict[str, dict[str, type[Plugin]]] = field(default_factory=lambda: {k: {} for k in KIND_HOOKS})
    owners: dict[tuple[str, str], PluginSource] = field(default_factory=dict)
    sources: dict[str, PluginSource] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    #: (kind, name) -> every other source that offered the name and was skipped.
    contested: dict[tuple[str, str], list[PluginSource]] = field(default_factory=dict)
    #: True when built from the installed entry points alone: only then may its commands be cached.
    from_entry_points_only: bool = False

    def of(self, kind: str) -> Mapping[str, type[Plugin]]:
        """``name -> class`` of every loaded plugin of ``kind`` (read-only; empty when none is installed)."""
        if kind not in self._classes:
            raise ValueError(f"unknown plugin kind {kind!r} (kinds: {', '.join(KIND_HOOKS)})")
        return MappingProxyType(self._classes[kind])

    def get(self, kind: str, name: str) -> type[Plugin]:
        """The class registered for ``name`` in ``kind``, or a clear error listing what exists."""
        try:
            return self._classes[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._classes.get(kind, {}))) or "none installed"
            hint = did_you_mean(name, self._classes.get(kind, {}))
            raise UnknownPluginError(f"unknown {kind} {excerpt(name)}{hint} (available: {known})") from None

    def owner(self, kind: str, name: str) -> PluginSource:
        """The distribution (and its entry point) that registered ``name`` in ``kind``."""
        self.get(kind, name)  # the same error as get() for a name that is not registered
        return self.owners[(kind, name)]

    def all(self) -> list[type[Plugin]]:
        return [cls for kind in KIND_HOOKS for cls in self._classes[kind].values()]

    def call_safely(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook on its own, isolating the ones that raise."""
        results = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            argnames = impl.argnames
            try:
                value = impl.function(*[kwargs[name] for name in argnames])
            except Exception as exc:  # a plugin's bug must not break tunekit
                self.record_failure(impl.plugin_name, f"{hook_name}() raised {type(exc).__name__}: {exc}", exc)
                continue
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    def provenance(self, kind: str, name: str) -> str | None:
        """Which distribution ``name`` comes from, when other distributions offered it too (else None)."""
        skipped = self.contested.get((kind, name))
        if not skipped:
            return None
        owner = self.owners[(kind, name)]
        others = ", ".join(sorted({f"{s.distribution} {s.version}".strip() for s in skipped}))
        return f"{kind} '{name}' comes from {owner.distribution} {owner.version} (also offered by {others}: skipped)"

    def record_failure(self, plugin: str, error: str, exc: BaseException | None = None,
                       source: PluginSource | None = None) -> None:
        """Record that ``plugin`` offered something unusable (shown by ``tunekit plugins --all``).

        Under ``TUNEKIT_STRICT_PLUGINS=1`` it raises instead, so a plugin developer sees the error at once.
        """
        source = source or self.sources.get(plugin, PluginSource(plugin, "?", "?"))
        self.failures.append(PluginFailure(plugin, source.distribution, source.version, error))
        if strict_mode():
            raise PluginError(f"plugin '{plugin}' ({source.distribution} {source.version}): {error}") from exc


def strict_mode() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes"}


def disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _validate_class(kind: str, obj: Any, built_in: bool = False) -> str | None:
    """Why ``obj`` is not a usable plugin class of ``kind``, or None when it is.

    A third party's ``Params()`` is built here, so defaults that do not validate are reported at load; a
    built-in's is checked by its contract test instead (``tests/plugins/test_contracts.py``): building it
    here would compile every plugin's pydantic schema on every command (~2 ms each), used or not."""
    base = BASES[kind]
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return f"returned {obj!r}, which is not a subclass of tunekit.core.kinds.{base.__name__}"
    if not isinstance(obj.name, str) or not _NAME_RE.match(obj.name):
        return f"{obj.__name__}.name must be a lowercase identifier, got {obj.name!r}"
    params = obj.__dict__.get("Params", obj.Params)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        return f"{obj.__name__}.Params must be a pydantic model"
    if params.model_config.get("extra") != "forbid":
        return f"{obj.__name__}.Params must forbid extra keys (subclass tunekit.core.kinds.PluginParams)"
    if built_in:
        return None
    try:
        params()
    except Exception as exc:
        return f"{obj.__name__}.Params() has no valid defaults: {exc}"
    return None


def _is_builtin(source: PluginSource) -> bool:
    return source.distribution == BUILTIN_DISTRIBUTION


def _warn_if_slow(source: PluginSource, seconds: float) -> None:
    """Name a plugin whose import delays every tunekit command, and the switch that turns it off."""
    if seconds > SLOW_IMPORT_S:
        sys.stderr.write(f"warning: plugin '{source.plugin}' ({source.distribution} {source.version}) took "
                         f"{seconds:.1f} s to import, which every tunekit command waits for; "
                         f"{DISABLE_ENV}={source.plugin} skips it\n")


def _iter_entry_points() -> list[tuple[metadata.EntryPoint, tuple[str, str]]]:
    """tunekit's entry points with their distribution's (name, version), tunekit's own first (they win every
    name clash), then the rest by name. Each distribution's metadata is parsed once (an email-format parse:
    asking ``ep.dist.name`` per entry point cost ~20 ms a command)."""
    facts: dict[int, tuple[str, str]] = {}

    def of(ep: metadata.EntryPoint) -> tuple[str, str]:
        dist = ep.dist
        if dist is None:
            return ("?", "?")
        if id(dist) not in facts:
            if isinstance(dist, metadata.Distribution):
                meta = dist.metadata
                facts[id(dist)] = (meta["Name"] or "?", meta["Version"] or "?")
            else:  # a stand-in with the attributes (tests)
                facts[id(dist)] = (getattr(dist, "name", "?"), getattr(dist, "version", "?"))
        return facts[id(dist)]

    found = [(ep, of(ep)) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(found, key=lambda item: (item[1][0] != BUILTIN_DISTRIBUTION, item[0].name))


def load_registry(*, entry_points: bool = True, extra_modules: list[Any] | None = None) -> Registry:
    """Build a fresh registry from the installed entry points (and optional in-process modules)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm, from_entry_points_only=entry_points and not extra_modules)
    blocked = disabled_names()
    for ep, (distribution, version) in _iter_entry_points() if entry_points else []:
        source = PluginSource(ep.name, distribution, version)
        if ep.name in registry.sources:  # the first (built-in) owner keeps the name; the newcomer is reported
            first = registry.sources[ep.name]
            registry.record_failure(ep.name, f"another entry point already uses this name ({first.distribution} "
                           f"{first.version}); {ep.value} not loaded", source=source)
            continue
        registry.sources[ep.name] = source
        if ep.name in blocked:
            pm.set_blocked(ep.name)
            continue
        try:
            started = time.perf_counter()
            module = ep.load()
            _warn_if_slow(source, time.perf_counter() - started)
            pm.register(module, name=ep.name)
        except (Exception, SystemExit) as exc:  # SystemExit: a plugin calling sys.exit() at import
            registry.record_failure(ep.name, f"failed to load {ep.value}: {type(exc).__name__}: {exc}", exc)
    for module in extra_modules or []:
        name = getattr(module, "__name__", repr(module))
        registry.sources.setdefault(name, PluginSource(name, "(in-process)", ""))
        try:
            pm.register(module, name=name)
        except Exception as exc:
            registry.record_failure(name, f"failed to register: {type(exc).__name__}: {exc}", exc)
    _check_unknown_hooks(registry)
    _collect_classes(registry)
    return registry


def _check_unknown_hooks(registry: Registry) -> None:
    """Report every implementation of a hook tunekit does not define (a misspelled ``tunekit_*``).

    ``pm.check_pending()`` raises on the first one only and does not say which plugin; this walks
    every hook so each culprit is recorded under its own name, and unregisters nothing: the
    plugin's correctly spelled hooks keep working.
    """
    pm = registry.pm
    for hook_name in sorted(vars(pm.hook)):
        caller = getattr(pm.hook, hook_name)
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            known = ", ".join(sorted(n for n in vars(pm.hook) if getattr(pm.hook, n).has_spec()))
            registry.record_failure(impl.plugin_name, f"unknown hook {hook_name}() (tunekit's hooks: {known})")


def _collect_classes(registry: Registry) -> None:
    """Register each returned class; built-in plugins' classes first, so a clash skips the newcomer."""
    def builtin_first(item: tuple[str, Any]) -> tuple[bool, str]:
        source = registry.sources.get(item[0])
        return (not (source and _is_builtin(source)), item[0])

    for kind, hook_name in KIND_HOOKS.items():
        for plugin_name, returned in sorted(registry.call_safely(hook_name), key=builtin_first):
            items = returned if isinstance(returned, (list, tuple)) else [returned]
            source = registry.sources.get(plugin_name)
            for obj in items:
                problem = _validate_class(kind, obj, built_in=bool(source and _is_builtin(source)))
                if problem:
                    registry.record_failure(plugin_name, f"{hook_name}(): {problem}")
                    continue
                existing = registry._classes[kind].get(obj.name)
                if existing is not None:
                    first = registry.owners[(kind, obj.name)]
                    newcomer = registry.sources.get(plugin_name, PluginSource(plugin_name, "?", "?"))
                    registry.contested.setdefault((kind, obj.name), []).append(newcomer)
                    registry.record_failure(
                        plugin_name,
                        f"{kind} name '{obj.name}' is already registered by plugin '{first.plugin}' "
                        f"({first.distribution}); {obj.__module__}.{obj.__qualname__} skipped",
                    )
                    continue
                registry._classes[kind][obj.name] = obj
                registry.owners[(kind, obj.name)] = registry.sources.get(
                    plugin_name, PluginSource(plugin_name, "?", "?")
                )


def builtin_names(registry: Registry) -> set[str]:
    """Names a third-party plugin may not take: tunekit's entry points and its plugins' method names."""
    names = {name for name, source in registry.sources.items() if _is_builtin(source)}
    names.update(name for (_kind, name), source in registry.owners.items() if _is_builtin(source))
    return names


_cached: Registry | None = None


def get_registry(*, refresh: bool = False) -> Registry:
    """The process-wide registry, loaded once."""
    global _cached
    if _cached is None or refresh:
        _cached = load_registry()
    return _cached
