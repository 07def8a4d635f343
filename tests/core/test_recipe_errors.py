"""Malformed recipes through the CLI: each exits 2 with one line naming the file, the key path and
what was expected. Stage plugins are in-process fakes (``recipe_fakes``), so this file does not
depend on the built-in plugins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from recipe_fakes import fake_registry

import tunekit.core.registry as plugins_mod
from tunekit.cli.main import cli

LORA = "adapter: {method: fake-lora}\n"

#: (id, file name, text, key path or None for file-level errors, expected message fragment)
CASES: list[tuple[str, str, str, str | None, str]] = [
    ("rank-below-bound", "x.yaml", "adapter: {method: fake-lora, r: 0}", "adapter.r",
     "Input should be greater than or equal to 1 (got 0)"),
    ("rank-not-int", "x.yaml", "adapter: {method: fake-lora, r: many}", "adapter.r",
     "Input should be a valid integer"),
    ("plugin-param-typo", "x.yaml", "adapter: {method: fake-lora, rank: 8}", "adapter.rank",
     "unknown key (not allowed here)"),
    ("stage-without-method", "x.yaml", "adapter: {r: 8}", "adapter", "needs 'method: NAME'"),
    ("stage-not-mapping", "x.yaml", "adapter: [lora]", "adapter", "expected a mapping like {method: NAME, ...}"),
    ("stage-method-not-string", "x.yaml", "quantizer: {method: 4}", "quantizer", "needs 'method: NAME'"),
    ("unknown-method", "x.yaml", "adapter: {method: lorax}", "adapter.method",
     "unknown adapter 'lorax' (available: fake-lora)"),
    ("quantizer-bits-too-high", "x.yaml", "quantizer: {method: fq, bits: 16}", "quantizer.bits",
     "Input should be less than or equal to 8"),
    ("context-literal", "x.yaml", "context: {method: fake-rope, type: ntk}", "context.type",
     "Input should be 'linear' or 'yarn'"),
    ("pruner-sparsity-one", "x.yaml", "pruner: {method: fake-prune, sparsity: 1.0}", "pruner.sparsity",
     "Input should be less than 1"),
    ("sampler-top-p-zero", "x.yaml", "sampler: {top_p: 0}", "sampler.top_p", "Input should be greater than 0"),
    ("list-item-type", "x.yaml", "adapter: {method: fake-lora, target: [q_proj, 3]}", "adapter.target[1]",
     "Input should be a valid string"),
    ("train-lr-zero", "x.yaml", LORA + "train: {lr: 0}", "train.lr", "Input should be greater than 0"),
    ("train-seq-len", "x.yaml", LORA + "train: {seq_len: 4}", "train.seq_len",
     "Input should be greater than or equal to 8"),
    ("train-scheduler", "x.yaml", LORA + "train: {scheduler: step}", "train.scheduler",
     "Input should be 'constant', 'linear' or 'cosine'"),
    ("train-typo", "x.yaml", LORA + "train: {warmup: 10}", "train.warmup", "unknown key (not allowed here)"),
    ("train-not-mapping", "x.yaml", LORA + "train: fast", "train", "valid dictionary"),
    ("model-dtype", "x.yaml", "model: {dtype: int4}", "model.dtype", "Input should be 'auto', 'float32'"),
    ("model-string", "x.yaml", "model: models/tiny", "model", "valid dictionary"),
    ("eval-task", "x.yaml", "eval: {tasks: [bleu, meteor]}", "eval.tasks[1]", "Input should be 'rouge' or 'bleu'"),
    ("eval-max-tokens", "x.yaml", "eval: {max_tokens: 1}", "eval.max_tokens", "greater than or equal to 16"),
    ("output-formats-string", "x.yaml", "output: {formats: hf}", "output.formats", "Input should be a valid list"),
    ("distributed-strategy", "x.yaml", LORA + "train: {}\ndistributed: {strategy: mpi}", "distributed.strategy",
     "Input should be 'none', 'ddp', 'fsdp', 'zero2' or 'zero3'"),
    ("distributed-gpus", "x.yaml", "distributed: {gpus: 0}", "distributed.gpus", "greater than or equal to 1"),
    ("distributed-option-mismatch", "x.yaml", LORA + "train: {}\ndistributed: {strategy: ddp, offload_params: true}",
     "distributed", "offload_params needs sharded parameters"),
    ("top-level-typo", "x.yaml", "adaptor: {method: fake-lora}", "adaptor", "unknown key (not allowed here)"),
    ("name-not-string", "x.yaml", "name: [a, b]", "name", "Input should be a valid string"),
    ("extends-not-names", "x.yaml", "extends: 3", "extends", "expected a recipe name or a list of names"),
    ("extends-missing", "x.yaml", "extends: [missing.yaml]", "extends[0]", "recipe 'missing.yaml' not found"),
    ("full-finetune-of-quantized", "x.yaml", "quantizer: {method: fq}\ntrain: {max_steps: 3}", "quantizer",
     "full fine-tuning updates the weights themselves"),
    ("trainable-with-adapter", "x.yaml", LORA + "train: {trainable: [norm]}", "train.trainable",
     "train.trainable picks weights for full fine-tuning"),
    ("trainable-bad-regex", "x.yaml", "train: {trainable: ['layers.(']}", "train.trainable",
     "is not a regular expression"),
    ("adapter-on-untrainable-quantizer", "x.yaml", LORA + "quantizer: {method: fq-packed}", "adapter",
     "an adapter cannot be trained on a 'fq-packed' base"),
    ("gguf-and-quantizer", "x.yaml", "model: {path: m, gguf_file: m.gguf}\nquantizer: {method: fq}",
     "model.gguf_file", "a GGUF model is already quantized"),
    ("distributed-without-train", "x.yaml", "distributed: {strategy: ddp}", "distributed.strategy",
     "a distributed strategy only applies to training"),
    ("two-errors-counted", "x.yaml", "adapter: {method: fake-lora, r: 0, alpha: 0}", "adapter.r", "(and 1 more error)"),
    ("toml-bad-bound", "x.toml", '[adapter]\nmethod = "fake-lora"\nr = -2\n', "adapter.r",
     "greater than or equal to 1"),
    # file-level problems: the file is named, and the line where YAML knows it
    ("yaml-syntax", "x.yaml", "adapter: {method: fake-lora", None, "invalid YAML (line 2, column 1)"),
    ("yaml-tab-indent", "x.yaml", "train:\n\tlr: 1", None, "invalid YAML (line 2"),
    ("top-level-list", "x.yaml", "- adapter\n- quantizer", None,
     "a recipe must be a mapping at the top level, got list"),
    ("top-level-scalar", "x.yaml", "just words", None, "a recipe must be a mapping at the top level, got str"),
    ("top-level-int-key", "x.yaml", "1: one", None, "top-level keys must be strings, got 1"),
    ("toml-syntax", "x.toml", "name = ", None, "invalid TOML"),
    ("not-utf8", "x.yaml", "\udcff", None, "cannot read"),
]


@pytest.fixture(autouse=True)
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's registry holds only the in-process fake plugins."""
    monkeypatch.setattr(plugins_mod, "_cached", fake_registry())
    yield


def write_case(tmp_path: Path, file_name: str, text: str) -> Path:
    path = tmp_path / file_name
    if text == "\udcff":
        path.write_bytes(b"name: \xff\xfe\n")
    else:
        path.write_text(text + "\n")
    return path


def test_there_are_at_least_twenty_keyed_cases() -> None:
    assert len({case[0] for case in CASES}) == len(CASES)
    assert sum(1 for case in CASES if case[3]) >= 20


@pytest.mark.parametrize(("file_name", "text", "key", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_exits_2_naming_file_and_key(
    tmp_path: Path, file_name: str, text: str, key: str | None, message: str
) -> None:
    path = write_case(tmp_path, file_name, text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    prefix = f"error: {path}: {key}: " if key else f"error: {path}: "
    assert lines[0].startswith(prefix), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["show"], ["show", "--resolved"]])
def test_show_reports_the_same_error_with_exit_2(tmp_path: Path, command: list[str]) -> None:
    path = write_case(tmp_path, "x.yaml", "adapter: {method: fake-lora, r: 0}")
    result = CliRunner().invoke(cli, [*command, str(path)])
    assert result.exit_code == 2
    assert f"{path}: adapter.r: Input should be greater than or equal to 1" in result.output


def test_validate_checks_every_file_and_fails_if_any_is_bad(tmp_path: Path) -> None:
    good = write_case(tmp_path, "good.yaml", LORA)
    bad = write_case(tmp_path, "bad.yaml", "adapter: {method: fake-lora, r: 0}")
    result = CliRunner().invoke(cli, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert f"ok: {good}" in result.output
    assert f"error: {bad}: adapter.r:" in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml' not found" in result.output


def test_bad_set_exits_2_naming_the_option(tmp_path: Path) -> None:
    good = write_case(tmp_path, "good.yaml", LORA)
    result = CliRunner().invoke(cli, ["validate", str(good), "--set", "adapter..r=3"])
    assert result.exit_code == 2
    assert "error: --set: adapter..r: empty key segment" in result.output


@pytest.mark.parametrize(("text", "overrides", "key", "hint"), [
    ("train: {pakcing: false}", [], "train.pakcing", "(did you mean 'packing'?)"),
    ("trian: {lr: 0.001}", [], "trian", "(did you mean 'train'?)"),
    ("eval: {perplexty: false}", [], "eval.perplexty", "(did you mean 'perplexity'?)"),
    (LORA, ["adapter.alhpa=8"], "adapter.alhpa", "(did you mean 'alpha'?)"),
    (LORA, ["train.sed_len=64"], "train.sed_len", "(did you mean 'seq_len' or 'scheduler'?)"),
])
def test_unknown_key_names_the_nearest_allowed_one(
    tmp_path: Path, text: str, overrides: list[str], key: str, hint: str
) -> None:
    """A typo in the file or in ``--set`` is named with the key it most likely meant (recipe sections and
    the plugin's own Params)."""
    path = write_case(tmp_path, "x.yaml", text)
    args = ["validate", str(path)] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"error: {path}: {key}: unknown key (not allowed here) {hint}" in result.output


def test_unknown_key_without_a_near_name_gets_no_guess(tmp_path: Path) -> None:
    path = write_case(tmp_path, "x.yaml", "train: {zzzz: 1}")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "unknown key (not allowed here)\n" in result.output
    assert "did you mean" not in result.output


@pytest.mark.parametrize(("text", "key", "hint"), [
    ("adapter: {method: fake-lroa}", "adapter.method", "unknown adapter 'fake-lroa' (did you mean 'fake-lora'?)"),
    ("output: {formats: [hff]}", "output.formats[0]", "unknown export format 'hff' (did you mean 'hf'?)"),
])
def test_unknown_method_or_format_names_the_nearest(tmp_path: Path, text: str, key: str, hint: str) -> None:
    path = write_case(tmp_path, "x.yaml", text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"error: {path}: {key}: {hint} (available: " in result.output
