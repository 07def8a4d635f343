"""The commands plugins add, remembered so ``tunekit --help`` need not import every plugin.

Listing the commands means calling ``tunekit_commands`` on every plugin, which imports each plugin
package and pydantic with it: about 0.2 s of the 0.45 s that ``tunekit --help`` took. The list only
changes when the installed plugins change, so it is cached under ``$TUNEKIT_CACHE`` (default
``~/.cache/tunekit``), keyed by a fingerprint of what could change it: the interpreter's prefix,
tunekit's version, ``TUNEKIT_DISABLE_PLUGINS``, and for every ``tunekit`` entry point its name, target,
distribution, version and the size and mtime of the ``.py`` files next to its module (so an edit in an
editable install is seen without a version bump). A command defined elsewhere in an editable install
and changed without a version bump is the one case it misses: ``TUNEKIT_COMMAND_CACHE=off`` turns the
cache off, or any other value names the file to use.

The cache only describes commands for the listing; running a plugin command always loads the plugin.
Nothing heavier than ``importlib.metadata`` is imported here (no pydantic, no plugin).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from tunekit.core.fixtures import cache_dir
from tunekit.core.hookspecs import DISABLE_ENV, ENTRY_POINT_GROUP

ENV = "TUNEKIT_COMMAND_CACHE"
_FORMAT = 1

#: What is kept of each command: enough for click to write its line in ``--help``.
CommandInfo = dict[str, Any]


def cache_file() -> Path | None:
    """Where the listing is kept, or None when ``TUNEKIT_COMMAND_CACHE=off``."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in {"off", "0", "no", "false"}:
        return None
    if setting:
        return Path(setting)
    try:
        base = cache_dir()
    except RuntimeError:  # no home directory to be found: run without the cache
        return None
    prefix = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return base / f"plugin-commands-{prefix}.json"


def _source_stamp(module: str) -> str:
    """Size and mtime of the ``.py`` files in the folder of ``module``, found without importing it.

    ``find_spec`` of a top-level name only searches ``sys.path``; a dotted module is resolved by path
    under its top-level package, so no plugin code runs.
    """
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return "unfindable"
    if spec is None:
        return "missing"
    if spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location, *rest.split(".")) if rest else Path(location)
            folder = candidate if candidate.is_dir() else candidate.parent
            if folder.is_dir():
                return _stamp_files(folder.glob("*.py"))
        return "no-source"
    if spec.origin and Path(spec.origin).is_file():
        return _stamp_files([Path(spec.origin)])
    return "no-source"


def _stamp_files(paths: Iterable[Path]) -> str:
    parts = []
    for path in sorted(paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return ",".join(parts)


def fingerprint() -> str:
    """A digest of everything that can change which commands the installed plugins add."""
    from tunekit import __version__

    digest = hashlib.sha256()
    digest.update(f"{_FORMAT}|{sys.prefix}|{__version__}|{os.environ.get(DISABLE_ENV, '')}\n".encode())
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist
        dist_part = f"{dist.name}=={dist.version}" if dist is not None else "?"
        digest.update(f"{ep.name}|{ep.value}|{dist_part}|{_source_stamp(ep.module)}\n".encode())
    return digest.hexdigest()


def load(key: str) -> dict[str, CommandInfo] | None:
    """The cached commands for ``key`` (a :func:`fingerprint`), or None when unknown or unreadable."""
    path = cache_file()
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != key:
        return None
    commands = data.get("commands")
    if not isinstance(commands, dict) or not all(_well_formed(v) for v in commands.values()):
        return None
    return commands


def _well_formed(info: Any) -> bool:
    """Each field of the shape :func:`describe` writes: a hand-edited or corrupt entry (``"help": 5``)
    would otherwise break every ``--help`` until the file is deleted; such a file is ignored instead."""
    if not isinstance(info, dict):
        return False
    texts_ok = all(info.get(k) is None or isinstance(info.get(k), str) for k in ("help", "short_help"))
    return texts_ok and isinstance(info.get("hidden", False), bool) \
        and isinstance(info.get("deprecated", False), (bool, str))


def save(key: str, commands: dict[str, CommandInfo]) -> None:
    """Write the listing atomically; a read-only or full disk only costs the next ``--help`` its speed."""
    path = cache_file()
    if path is None or load(key) == commands:  # running a plugin command loads plugins too: no rewrite
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"fingerprint": key, "commands": commands}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def describe(command: Any) -> CommandInfo:
    """The parts of a click command its ``--help`` line is made from."""
    deprecated = command.deprecated if isinstance(command.deprecated, str) else bool(command.deprecated)
    return {"help": command.help, "short_help": command.short_help, "hidden": bool(command.hidden),
            "deprecated": deprecated}
