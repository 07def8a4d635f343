"""Every shell command block in README.md and docs/ runs as printed (a docs command that fails is a bug).

A command block is a ``bash``/``sh`` fence, or an unlabelled fence whose lines start with ``$ `` (a command
followed by its output: only the ``$`` lines run). A block that cannot run here says why in an HTML
comment on the line before the fence, ``<!-- not run: needs 8 GPUs -->``, and is skipped with that
reason; ``<!-- run: slow -->`` marks a block that runs only with the slow tests. The commands run in an
empty folder where ``recipes/`` and ``examples/`` point at the repository's, with this venv's ``tunekit``
first on PATH, so relative paths in the docs mean what a reader in a fresh clone gets.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!--\s*(not run|run):\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    where: str
    commands: list[str]
    skip: str | None
    slow: bool


def commands_of(lang: str, body: str) -> list[str]:
    """The commands of a fence: each logical line of a bash block (``\\`` continuations joined, trailing
    ``# comments`` dropped by the shell), the ``$ `` lines of an unlabelled one; [] if neither."""
    if lang in {"bash", "sh", "shell"}:
        joined = re.sub(r"\\\n\s*", "", body)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lang in {"", "console"}:
        return [line[2:].strip() for line in body.splitlines() if line.startswith("$ ")]
    return []


def command_blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            commands = commands_of(match.group(1), match.group(2))
            if not commands:
                continue
            line = text[: match.start()].count("\n") + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            skip = mark.group(2) if mark and mark.group(1) == "not run" else None
            slow = bool(mark and mark.group(1) == "run" and "slow" in mark.group(2))
            found.append(Block(f"{doc.relative_to(ROOT)}:{line}", commands, skip, slow))
    return found


BLOCKS = command_blocks()


def test_the_docs_hold_command_blocks_and_most_run() -> None:
    """The collector finds the blocks (a changed fence style would silently test nothing)."""
    docs = {block.where.split(":")[0] for block in BLOCKS}
    assert {"README.md", "docs/estimator.md", "docs/recommend.md"} <= docs
    assert sum(1 for b in BLOCKS if b.skip is None) >= 6
    assert all(b.skip for b in BLOCKS if any(c.startswith("pip ") for c in b.commands)), \
        "a block that pip-installs changes this environment: mark it <!-- not run: ... -->"


def test_a_marked_block_is_skipped_with_its_reason(tmp_path: Path) -> None:
    doc = "text\n<!-- not run: needs a GPU -->\n```bash\ntunekit apply big.yaml\n```\n"
    match = next(FENCE.finditer(doc))
    before = doc[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
    found = MARK.search(before)
    assert found is not None and found.groups() == ("not run", "needs a GPU")
    assert commands_of("bash", "tunekit a \\\n  --b c   # why\n# only a comment\n") == ["tunekit a --b c   # why"]
    assert commands_of("", "$ tunekit x\noutput line\n") == ["tunekit x"]


def params() -> list[object]:
    out: list[object] = []
    for block in BLOCKS:
        marks = [pytest.mark.slow] if block.slow else []
        if block.skip:
            marks.append(pytest.mark.skip(reason=block.skip))
        out.append(pytest.param(block, marks=marks, id=block.where))
    return out


@pytest.mark.parametrize("block", params())
def test_docs_command_block_runs(block: Block, tmp_path: Path) -> None:
    for name in ("recipes", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for command in block.commands:
        first = shlex.split(command, comments=True)[0]
        assert first in {"tunekit", "pytest", "python"}, f"{block.where}: unexpected program in {command!r}"
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{block.where}: `{command}` exited {done.returncode}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, f"{block.where}: `{command}`\n{done.stderr[-2000:]}"
