"""The apply pipeline on a tiny Llama: stage order through the hook, atomic output, --force, dry run."""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tunekit import hookimpl
from tunekit.cli.main import cli
from tunekit.core.errors import OutputExistsError, TunekitError
from tunekit.core.registry import load_registry
from tunekit.run.pipeline import apply_recipe
from tunekit.run.plan import STAGES

RECIPE = {
    "name": "tiny-test",
    "context": {"method": "linear", "factor": 2.0},
    "pruner": {"method": "magnitude", "sparsity": 0.3},
    "sampler": {"method": "sampling", "preset": "deterministic", "max_new_tokens": 8},
    "eval": {"seq_len": 64, "max_tokens": 256},
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunekit.testing import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_tiny_model(folder, max_position_embeddings=128)
    return folder


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def observer_registry(fail_at: str | None = None, error: type[BaseException] = RuntimeError,
                      seen: list[str] | None = None) -> Any:
    """The installed plugins plus an observer that records each stage and may fail at one."""
    module = types.ModuleType("tunekit_test_observer")

    @hookimpl(wrapper=True)
    def tunekit_run_stage(stage: str, plugin: Any, model: Any, ctx: Any) -> Any:
        if seen is not None:
            seen.append(stage)
        if stage == fail_at:
            raise error(f"boom at {stage}")
        return (yield)

    module.tunekit_run_stage = tunekit_run_stage  # type: ignore[attr-defined]
    return load_registry(extra_modules=[module])


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tunekit-" in p.name)


def test_apply_writes_a_loadable_output(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, GenerationConfig

    seen: list[str] = []
    out = tmp_path / "out"
    result = apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True, registry=observer_registry(seen=seen))
    assert seen == ["load", "evaluate", "context", "prune", "evaluate", "sampler", "export"]
    assert all(stage in STAGES for stage in seen)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "tunekit-recipe.yaml",
            "metrics.json", "README.md"} <= names
    assert leftovers(tmp_path) == []
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics, default=str))
    ev = metrics["evaluate"]
    assert ev["perplexity_before"] > 1 and ev["perplexity_after"] > 1
    assert ev["perplexity_before"] != ev["perplexity_after"]
    assert metrics["prune"]["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert {"load", "context", "prune", "evaluate_before", "evaluate_after", "export"} <= set(metrics["timings_s"])
    assert metrics["run"]["peak_memory_mb"] > 0
    assert any("healing fine-tune" in w for w in metrics["warnings"])
    card = (out / "README.md").read_text()
    assert "perplexity before" in card and "healing fine-tune" in card
    saved_recipe = yaml.safe_load((out / "tunekit-recipe.yaml").read_text())
    assert saved_recipe["pruner"]["sparsity"] == 0.3 and saved_recipe["context"]["method"] == "linear"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.rope_parameters["rope_type"] == "linear"
    assert model.config.max_position_embeddings == 256
    zeros = float((model.model.layers[0].mlp.up_proj.weight == 0).float().mean())
    assert zeros == pytest.approx(0.3, abs=0.01)
    assert GenerationConfig.from_pretrained(out).max_new_tokens == 8


def test_refusal_leaves_the_first_output_byte_identical(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True, overrides=["pruner.sparsity=0.2"])
    before = digest(out)
    with pytest.raises(OutputExistsError):
        apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True)
    runner = CliRunner()
    done = runner.invoke(cli, ["apply", str(recipe_file), "--model", str(tiny_dir), "--output", str(out), "-q"])
    assert done.exit_code == 2, done.output
    assert "--force" in done.output
    assert digest(out) == before


def test_force_replaces_atomically(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True, overrides=["pruner.sparsity=0.2"])
    (out / "stale.txt").write_text("from the first run")
    apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True, force=True)
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "metrics.json").read_text())["prune"]["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_midway_leaves_no_output(tiny_dir: Path, recipe_file: Path, tmp_path: Path,
                                         error: type[BaseException]) -> None:
    out = tmp_path / "out"
    with pytest.raises(error):
        apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True,
                     registry=observer_registry(fail_at="prune", error=error))
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_failure_with_force_keeps_the_earlier_output(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True)
    before = digest(out)
    with pytest.raises(KeyboardInterrupt):
        apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True, force=True,
                     registry=observer_registry(fail_at="export", error=KeyboardInterrupt))
    assert digest(out) == before
    assert leftovers(tmp_path) == []


def test_dry_run_loads_nothing_and_writes_nothing(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[str] = []
    result = apply_recipe(recipe_file, model=tiny_dir, output=out, dry_run=True, quiet=True,
                          registry=observer_registry(seen=seen))
    assert result.dry_run and result.output is None and seen == []
    assert [s["stage"] for s in result.plan["stages"]] == ["load", "context", "prune", "evaluate", "sampler", "export"]
    assert not out.exists() and not any(tmp_path.glob(".out*"))
    done = CliRunner().invoke(cli, ["apply", str(recipe_file), "--model", str(tiny_dir), "--output", str(out),
                                    "--dry-run", "--log-json"])
    assert done.exit_code == 0, done.output
    plan = json.loads(done.output.splitlines()[0])
    assert plan["event"] == "plan" and plan["stages"][1]["method"] == "linear"


def test_errors_before_loading(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["apply", str(recipe_file), "--model", str(tmp_path / "nope"), "-o",
                                  str(tmp_path / "o")])
    assert missing.exit_code == 2 and "not found" in missing.output
    bad = runner.invoke(cli, ["apply", str(recipe_file), "--model", str(tiny_dir), "-o", str(tmp_path / "o"),
                              "--set", "pruner.sparsity=1.5"])
    assert bad.exit_code == 2 and "sparsity" in bad.output
    with pytest.raises(TunekitError, match="--output"):
        apply_recipe(recipe_file, model=tiny_dir, quiet=True)


def test_log_json_emits_stage_events(tiny_dir: Path, recipe_file: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.run import pipeline

    load = pipeline.HOST_STAGES["load"]

    def noisy_load(plugin: Any, model: Any, ctx: Any) -> Any:
        print("a backend's import banner")  # GPTQModel prints one when PEFT imports it
        return load(plugin, model, ctx)

    monkeypatch.setitem(pipeline.HOST_STAGES, "load", noisy_load)
    done = CliRunner().invoke(cli, ["apply", str(recipe_file), "--model", str(tiny_dir), "-o", str(tmp_path / "o"),
                                    "--log-json", "--set", "eval.perplexity=false"])
    assert done.exit_code == 0, done.output
    # stdout carries the JSON lines and nothing else; the banner went to stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert "banner" in done.stderr
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "done"
    assert [e["stage"] for e in events if e["event"] == "stage_end"] == ["load", "context", "prune", "sampler",
                                                                         "export"]


def test_a_recipe_reproduces_its_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    """The adapter's random initial weights come from the recipe's seed, so one recipe gives one result."""
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(yaml.safe_dump({"adapter": {"method": "lora", "r": 4}, "eval": {"perplexity": False}}))
    outputs = [tmp_path / name for name in ("a", "b")]
    for out in outputs:
        apply_recipe(recipe, model=tiny_dir, output=out, quiet=True)
    weights = [digest(out) for out in outputs]
    adapter_files = [name for name in weights[0] if name.endswith(".safetensors")]
    assert adapter_files and all(weights[0][f] == weights[1][f] for f in adapter_files)


def test_qlora_merge_folds_the_adapter_into_the_16bit_base(tiny_dir: Path, tmp_path: Path) -> None:
    """`output.merge` on an NF4 base: the merged model is a plain fp model built from the unquantized base
    with the run's context extension re-applied, and it computes what base + adapter compute."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    recipe = tmp_path / "qlora.yaml"
    recipe.write_text(yaml.safe_dump({
        "context": {"method": "linear", "factor": 2.0},
        "quantizer": {"method": "nf4", "compute_dtype": "float32"},
        "adapter": {"method": "lora", "r": 4, "targets": "all-linear"},
        "train": {"data": "calibration_austen_emma.txt", "seq_len": 64, "batch_size": 2, "max_steps": 3,
                  "lr": 1e-2, "eval_split": 0.0, "max_samples": 12},
        "eval": {"perplexity": False}, "output": {"formats": ["adapter"], "merge": True},
    }))
    out = tmp_path / "out"
    apply_recipe(recipe, model=tiny_dir, output=out, quiet=True)
    merged_dir = out / "merged"
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["rope_parameters"]["rope_type"] == "linear"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    assert not torch.equal(merged.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    extended = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32,
                                                    rope_parameters=config["rope_parameters"],
                                                    max_position_embeddings=config["max_position_embeddings"])
    with_adapter = PeftModel.from_pretrained(extended, out)
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 64]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)


def test_a_swallowed_ctrl_c_still_stops_the_run(tiny_dir: Path, recipe_file: Path, tmp_path: Path) -> None:
    """Some libraries guard imports with a bare `except:`; a Ctrl-C landing there must not be lost."""
    import signal

    from tunekit.run import interrupts

    module = types.ModuleType("tunekit_test_swallow")

    @hookimpl(wrapper=True)
    def tunekit_run_stage(stage: str, plugin: Any, model: Any, ctx: Any) -> Any:
        if stage == "context":
            try:
                interrupts.handler(signal.SIGINT, None)  # what the installed handler does on Ctrl-C
            except BaseException:  # a library swallowing it
                pass
        return (yield)

    module.tunekit_run_stage = tunekit_run_stage  # type: ignore[attr-defined]
    out = tmp_path / "out"
    try:
        with pytest.raises(KeyboardInterrupt):
            apply_recipe(recipe_file, model=tiny_dir, output=out, quiet=True,
                         registry=load_registry(extra_modules=[module]))
    finally:
        interrupts.clear()
    assert not out.exists() and leftovers(tmp_path) == []
