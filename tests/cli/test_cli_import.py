"""The command line never imports the heavy backends, and built-in commands do not load plugins.

Checked with ``python -X importtime``, which lists every module a process imports (inside command
functions too), so a lazy import that turns eager anywhere in the call path fails here. Behaviour
only: timings belong in benchmarks, not in assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "gptqmodel", "accelerate", "deepspeed", "optimum"}
SHIPPED = sorted(p for p in (ROOT / "recipes").glob("*.yaml"))


def imported_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run ``python -X importtime ARGS`` and return every module it imported (full dotted names)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    result = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    modules.discard("imported package")  # the header line
    return modules, result


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_importing_the_cli_imports_no_heavy_backend() -> None:
    modules, result = imported_modules("-c", "import tunekit.cli.main")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tunekit.cli.main" in modules  # the probe works
    assert heavy(modules) == set()


COMMANDS = [
    ["--help"],
    ["plugins"],
    ["plugins", "--all", "--json"],
    ["recipes", "ls"],
    ["validate", *map(str, SHIPPED)],
    ["show", "--resolved", str(SHIPPED[0]) if SHIPPED else "missing"],
    ["check", "--help"],
    ["schema"],
]

#: Runs each command in one process (start-up paid once) and reports, after each, the heavy modules loaded
#: so far: the first command that shows one is the culprit.
PROBE = """
import contextlib, io, json, sys
from tunekit.cli.main import cli
report = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(argv, prog_name="tunekit")
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in set(json.loads(sys.argv[2])))
    report.append({"argv": argv, "code": code, "heavy": heavy, "out": out.getvalue()[:300]})
print(json.dumps(report))
"""


def test_foundation_commands_import_no_heavy_backend() -> None:
    import json

    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(COMMANDS), json.dumps(sorted(HEAVY))],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["argv"] for r in report] == COMMANDS
    for item in report:
        assert item["code"] in (0, None), item
        assert item["heavy"] == [], f"tunekit {' '.join(item['argv'])} imported {item['heavy']}"
    assert "tunekit plugins" in report[1]["out"]  # the commands really ran
    assert report[-1]["out"].startswith("{")


def test_builtin_command_help_loads_no_plugin() -> None:
    """Built-in commands resolve without the entry-point scan that building plugin commands needs."""
    modules, result = imported_modules("-m", "tunekit", "recipes", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tunekit.core.registry" not in modules
    assert not {m for m in modules if m.startswith("tunekit_")}, "a plugin package was imported"


def test_top_level_help_lists_commands_from_plugins() -> None:
    """``--help`` does load plugins: their commands belong in the list (see test_plugins for a fake one)."""
    modules, result = imported_modules("-m", "tunekit", "--help")
    assert result.returncode == 0
    assert "tunekit.core.registry" in modules
    assert "validate" in result.stdout and "plugins" in result.stdout


def test_every_built_in_command_is_mapped_to_the_module_that_defines_it() -> None:
    """``COMMANDS`` (name -> module) is what lets a command start without importing the others."""
    import importlib

    from tunekit.cli.main import COMMANDS, module_commands

    folder = ROOT / "tunekit" / "cli" / "commands"
    modules = {p.stem for p in folder.glob("*_cmd.py")}
    assert set(COMMANDS.values()) == modules
    for module_name in modules:
        defined = {c.name for c in module_commands(importlib.import_module(f"tunekit.cli.commands.{module_name}"))}
        assert defined == {name for name, mod in COMMANDS.items() if mod == module_name}, module_name


def test_a_command_imports_only_its_own_command_module() -> None:
    probe = ("import sys\nfrom tunekit.cli.main import main\n"
             "sys.argv = ['tunekit', 'recommend', '--vram', '24', '--model', 'llama-3.1-8b', '--json']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('tunekit.cli.commands.')), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    loaded = result.stderr.strip().splitlines()[-1]
    assert "recommend_cmd" in loaded  # the probe works
    assert "_cmd" not in loaded.replace("recommend_cmd", ""), loaded


def test_the_click_group_resolves_from_the_package_in_a_fresh_process() -> None:
    """``from tunekit.cli import cli`` (where the group lived before the wings) imports, once, without recursing."""
    probe = ("from tunekit.cli import cli\nimport tunekit.cli.main as m\n"
             "assert cli is m.cli and callable(m.main)\nprint(cli.name)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "cli"


def test_main_freezes_the_collector_as_the_command_ends_and_exits_with_its_code() -> None:
    """``main()`` leaves what the command built to reference counting at exit (no last full collection), and
    the command's exit code and output are unchanged by it."""
    probe = ("import gc, sys\nfrom tunekit.cli.main import main\n"
             "sys.argv = ['tunekit', 'validate', 'no-such-recipe.yaml']\n"
             "try:\n    main()\nexcept SystemExit as exc:\n"
             "    print(gc.get_freeze_count() > 0, exc.code, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stderr.strip().splitlines()[-1] == "True 2", result.stderr[-2000:]
