"""Fuzz harness: thousands of hostile recipes, ``--set`` strings and CLI numbers; never a traceback.

Fixed seed, so a failure reproduces; each case must end in success or one of tunekit's own errors,
whose message is one short line (naming the file, for recipes). Runs in well under a minute.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import TunekitError
from tunekit.core.recipe import apply_overrides, load_recipe, resolve_stages, validate_data
from tunekit.core.registry import Registry, get_registry

SEED = 20261130
BASE: dict[str, Any] = {
    "name": "fuzz", "model": {"id": "m", "dtype": "auto"}, "quantizer": {"method": "rtn", "bits": 4},
    "adapter": {"method": "lora", "r": 8}, "context": {"method": "yarn", "factor": 2.0},
    "pruner": {"method": "magnitude", "sparsity": 0.5}, "sampler": {"method": "sampling", "temperature": 0.7},
    "train": {"data": "d.jsonl", "epochs": 1, "lr": 1e-4, "seq_len": 64, "batch_size": 1},
    "eval": {"seq_len": 64, "max_tokens": 256}, "output": {"dir": "out", "formats": ["hf", "gguf:q4_k_m"]},
    "distributed": {"strategy": "none", "gpus": 1}, "extends": None,
}
KEYS = [(section, key) for section, value in BASE.items() if isinstance(value, dict) for key in value]
SCALARS: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, -(2**70), 0.5, -0.0, 1e308, float("nan"), float("inf"), "", "x",
    "rtn", "nope", "a" * 5000, "\x00", "../../etc/passwd", "/", "~", "💥", "!!bool maybe", [], {}, [1, "a"],
    {"method": "rtn"}, {"a": {"b": {"c": None}}}, ["gguf"] * 20, {"gguf": {"type": "zz"}}, b"bytes",
]
TEXT_SNIPPETS = [
    "!!bool maybe", "!!int abc", "!!float x", "!!python/object:os.system ls", "&a [*a]", "*undefined",
    "{", "[", "? [1]: 2", "- - -", "\t", "%YAML 9.9", "---\n---", "!!binary '%%'", "<<: *nope",
    "!!timestamp 2024-99-99", "[[[[[[[[[[[[[[[[[[[[[[[[", "\xff", "key: value: other", "!!set {a, b}",
]
NUMBERS = ["0", "-1", "1", "nan", "inf", "-inf", "1e9", "1e-300", "1e400", "2", "0.5", "abc", "", " 8 ",
           "24", "1_000", "0x10", "9" * 40, "-0", "1e308", "8.0", "True", "24GB"]
OPTIONS = {
    "recommend": ["--vram", "--ram", "--gpus", "--seq-len", "--batch", "--context", "--top", "--margin"],
    "estimate": ["--bits", "--rank", "--seq-len", "--batch", "--kv-bits", "--gpus", "--vram"],
}


def _mutate(rng: random.Random) -> Any:
    """The base recipe with a few values, keys or sections replaced by hostile ones."""
    doc: Any = copy.deepcopy({k: v for k, v in BASE.items() if v is not None})
    for _ in range(rng.randint(1, 4)):
        if not isinstance(doc, dict):
            break
        roll = rng.random()
        section, key = rng.choice(KEYS)
        value = copy.deepcopy(rng.choice(SCALARS))
        if roll < 0.55 and isinstance(doc.get(section), dict):
            doc[section][key] = value
        elif roll < 0.7:
            doc[section] = value
        elif roll < 0.8:
            doc[rng.choice([section, "extends", "x" * 300, "name"])] = value
        elif roll < 0.9:
            doc.pop(section, None)
        else:
            doc = value if rng.random() < 0.3 else doc
    return doc


def _as_text(doc: Any, rng: random.Random) -> str:
    if rng.random() < 0.1:  # block style now and then; JSON (flow-style YAML) is far faster to write
        text = yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    else:
        text = json.dumps(doc, indent=1, ensure_ascii=False, default=repr)
    if rng.random() < 0.35:  # splice raw YAML trouble into the text
        lines = text.splitlines() or [""]
        at = rng.randrange(len(lines))
        snippet = rng.choice(TEXT_SNIPPETS)
        lines[at] = rng.choice([lines[at] + " " + snippet, snippet, lines[at].split(":")[0] + ": " + snippet])
        text = "\n".join(lines)
    return text


def _check_clean(exc: TunekitError, must_name: str | None = None) -> None:
    message = str(exc)
    assert "\n" not in message and len(message) < 700, message[:2000]
    if must_name is not None:
        assert must_name in message, message


@pytest.fixture(scope="module")
def registry() -> Registry:
    return get_registry()


def test_fuzzed_recipe_documents(tmp_path: Path, registry: Registry) -> None:
    rng = random.Random(SEED)
    (tmp_path / "parent.yaml").write_text("name: parent\nmodel: {id: m}\n")
    outcomes = {"ok": 0, "error": 0}
    for index in range(2500):
        path = tmp_path / f"r{index}.yaml"
        text = _as_text(_mutate(rng), rng)
        if rng.random() < 0.05:
            text = "extends: [parent.yaml, parent.yaml]\n" + text
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_recipe(path, registry=registry)
        except TunekitError as exc:
            _check_clean(exc, must_name=str(path))
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 1000, outcomes  # the fuzz reaches both sides


def test_fuzzed_set_strings(registry: Registry) -> None:
    rng = random.Random(SEED + 1)
    base = {k: v for k, v in BASE.items() if v is not None and k not in {"train", "adapter"}}
    for _ in range(2500):
        section, key = rng.choice(KEYS)
        path = rng.choice([f"{section}.{key}", section, f"{section}.{key}.deeper", "name", ".", "a..b", "x" * 300,
                           f"{section}.{'y' * rng.randint(0, 40)}"])
        value = rng.choice([*map(str, SCALARS[:20]), *TEXT_SNIPPETS, *NUMBERS, "[1, 2", "{a: 1}", "null"])
        overrides = [rng.choice([f"{path}={value}", f"{path}{value}", value])]
        try:
            data = apply_overrides(base, overrides)
            resolve_stages(validate_data(data, source="--set"), registry, source="--set")
        except TunekitError as exc:
            _check_clean(exc)


def test_fuzzed_cli_numbers() -> None:
    rng = random.Random(SEED + 2)
    runner = CliRunner()
    codes: dict[int, int] = {}
    for _ in range(250):
        command = rng.choice(sorted(OPTIONS))
        option = rng.choice(OPTIONS[command])
        number = rng.choice(NUMBERS) if rng.random() < 0.8 else str(rng.uniform(-1e6, 1e6))
        args = [command, "--params", "1B", option, number, "--json"]
        if command == "recommend":
            args += ["--top", "1"] if option != "--top" else []
        elif rng.random() < 0.3:
            args += ["--vram", "24", "--max-seq-len"] if option != "--vram" else ["--max-batch"]
        result = runner.invoke(cli, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
        assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output, (args, result.output)
        if result.exit_code == 0:
            assert "nan" not in result.output.lower() and "-inf" not in result.output, (args, result.output)
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
    assert codes.get(0, 0) > 20 and codes.get(2, 0) > 50, codes
