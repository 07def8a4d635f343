"""Small hostile inputs stay cheap and end in one clean line: alias bombs, extends graphs, long names, tags."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import RecipeError
from tunekit.core.recipe import MAX_NODES, apply_overrides, compose, load_recipe

GOOD = "name: r\nmodel: {id: m}\nquantizer: {method: rtn}\n"


def _bomb(levels: int = 9) -> str:
    """The classic billion-laughs shape: each level is nine references to the one before."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _one_error_line(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(GOOD + _bomb() + "description: *a9\n")
    started = time.perf_counter()
    line = _one_error_line(["validate", str(path)])
    assert time.perf_counter() - started < 5
    assert str(path) in line and "too large once YAML aliases expand" in line
    assert len(line) < 400


def test_alias_repeated_in_output_formats_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "formats.yaml"
    path.write_text(GOOD + "x: &f [gguf, gguf, gguf, gguf, gguf, gguf, gguf, gguf]\n"
                    "y: &g [*f, *f, *f, *f, *f, *f, *f, *f]\noutput: {formats: *g}\n")
    line = _one_error_line(["validate", str(path)])
    assert "output.formats" in line


def test_bomb_through_set_is_refused() -> None:
    with pytest.raises(RecipeError, match="too large"):
        apply_overrides({}, ["description=" + _bomb().replace("\n", ", ").join("{}")])


def test_extends_graph_reads_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """21 files, each extending the next twice: 2**21 compositions without memoising, 21 with."""
    for i in range(21):
        (tmp_path / f"f{i}.yaml").write_text(f"extends: [f{i + 1}.yaml, f{i + 1}.yaml]\ndescription: d{i}\n")
    (tmp_path / "f21.yaml").write_text(GOOD)
    import tunekit.core.recipe as recipe_mod

    reads: list[Path] = []
    real = recipe_mod.read_document
    monkeypatch.setattr(recipe_mod, "read_document", lambda p: reads.append(p) or real(p))
    started = time.perf_counter()
    data = compose(tmp_path / "f0.yaml")
    assert time.perf_counter() - started < 5
    assert len(reads) == 22 and data["description"] == "d0"
    assert load_recipe(tmp_path / "f0.yaml").recipe.name == "r"


def test_huge_value_in_an_error_is_cut_to_an_excerpt(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(GOOD.replace("{method: rtn}", "{method: rtn, bits: " + "x" * 100_000 + "}"))
    line = _one_error_line(["validate", str(path)])
    assert "quantizer.bits" in line and len(line) < 400


def test_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "description: '" + "x" * 1_100_000 + "'\n")
    assert "larger than" in _one_error_line(["validate", str(path)])


def test_many_keys_past_the_node_bound(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text(GOOD + "extra:\n" + "".join(f"  k{i}: {i}\n" for i in range(MAX_NODES)))
    assert "too large" in _one_error_line(["validate", str(path)])


@pytest.mark.parametrize("text", ["quantizer: {method: rtn, bits: !!bool maybe}", "name: !!int abc",
                                  "name: !!float x", "name: !!python/object:os.system x",
                                  "name: !!timestamp 2024-99-99"])
def test_meaningless_tag_in_a_file_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text(GOOD + text + "\n")
    line = _one_error_line(["validate", str(path)])
    assert str(path) in line and "invalid YAML" in line


def test_meaningless_tag_in_set_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(GOOD)
    line = _one_error_line(["validate", str(path), "--set", "quantizer.bits=!!bool maybe"])
    assert "quantizer.bits" in line


@pytest.mark.parametrize("where", ["argument", "extends"])
def test_name_over_255_characters_is_one_line(tmp_path: Path, where: str) -> None:
    long_name = "a" * 300 + ".yaml"
    if where == "argument":
        line = _one_error_line(["validate", long_name])
    else:
        path = tmp_path / "r.yaml"
        path.write_text(f"extends: {long_name}\n" + GOOD)
        line = _one_error_line(["validate", str(path)])
        assert "extends[0]" in line
    assert "not found" in line and len(line) < 400
