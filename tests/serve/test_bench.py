"""``tunekit bench``: the shared perplexity windows, backend choice, the side-by-side table, and a real
run of the transformers backend on a tiny model folder (in its own subprocess, as the CLI does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import UsageError
from tunekit.serve.bench import bench_one, default_backend, find_gguf, prompt_ids, rows


def test_backend_follows_the_output(tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "m-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert default_backend(tmp_path / "hf") == "transformers"
    assert default_backend(tmp_path / "g") == "llamacpp"
    assert find_gguf(tmp_path / "g") == tmp_path / "g" / "m-Q4_K_M.gguf"
    with pytest.raises(UsageError, match="not a Hugging Face model folder"):
        default_backend(tmp_path)
    assert prompt_ids([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]


def test_rows_show_both_outputs_and_the_ratio() -> None:
    a = {"backend": "transformers", "file_bytes": 200e6, "gen_tokens_per_s": 10.0, "perplexity": 40.0}
    b = {"backend": "llamacpp", "file_bytes": 100e6, "gen_tokens_per_s": 30.0, "perplexity": 41.0}
    table = dict(rows([a, b]))
    assert table["file size (MB)"] == ["200.0", "100.0", "x0.50"]
    assert table["gen tok/s"] == ["10.0", "30.0", "x3.00"]
    assert table["backend"] == ["transformers", "llamacpp"]


def test_cli_prints_the_side_by_side_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tunekit.cli.commands.bench_cmd as bench_cmd

    seen = {}

    def fake_bench(paths: list[Path], **options: object) -> list[dict[str, object]]:
        seen.update(options, paths=paths)
        return [{"output": str(p), "backend": "llamacpp", "file_bytes": 1e8 * (i + 1), "perplexity": 40.0 + i}
                for i, p in enumerate(paths)]

    monkeypatch.setattr(bench_cmd, "bench", fake_bench)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = CliRunner().invoke(cli, ["bench", str(tmp_path / "a"), str(tmp_path / "b"), "--backend", "llamacpp",
                                      "--prompt-tokens", "64", "--new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "x2.00" in result.output and "41.0" in result.output
    assert seen["backend"] == "llamacpp" and seen["prompt_tokens"] == 64 and seen["new_tokens"] == 8
    result = CliRunner().invoke(cli, ["bench", str(tmp_path / "a"), "--json"])
    assert json.loads(result.output)[0]["perplexity"] == 40.0


@pytest.mark.slow
def test_bench_measures_a_tiny_model_folder(tmp_path: Path) -> None:
    from tunekit.testing import save_tiny_model

    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 40
    save_tiny_model(tmp_path / "tiny", hidden_size=128, intermediate_size=256)
    # in-process (the CLI runs exactly this in a subprocess per output; importing torch twice costs minutes here)
    measured = bench_one(tmp_path / "tiny", text=text, prompt_tokens=16, new_tokens=4, seq_len=64)
    assert measured["backend"] == "transformers" and measured["new_tokens"] == 4
    assert 1 < measured["perplexity"] < 1000 and measured["ttft_s"] > 0 and measured["gen_tokens_per_s"] > 0
    assert measured["peak_rss_bytes"] > 100e6 and measured["file_bytes"] > 1e6


def test_without_text_the_shipped_held_out_text_is_used() -> None:
    from tunekit.core.texts import shipped_eval_path
    from tunekit.serve.bench import _fallback_text

    assert _fallback_text() == shipped_eval_path().read_text(encoding="utf-8") and "Persuasion" in _fallback_text()


def test_bench_opens_an_adapter_output_as_base_plus_adapter(tmp_path: Path) -> None:
    """The LoRA recipes write adapters by default; bench loads the base the adapter names, then the adapter."""
    import torch
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunekit.run.pipeline import apply_recipe
    from tunekit.serve.bench_backends import transformers_perplexity
    from tunekit.testing import build_tokenizer, save_tiny_model

    base_dir = tmp_path / "base"
    save_tiny_model(base_dir, max_position_embeddings=128)
    tokenizer = build_tokenizer()
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(yaml.safe_dump({
        "adapter": {"method": "lora", "r": 4},
        "train": {"data": "calibration_austen_emma.txt", "seq_len": 64, "batch_size": 2, "max_steps": 2,
                  "lr": 1e-2, "eval_split": 0.0, "max_samples": 8},
        "eval": {"perplexity": False}, "output": {"formats": ["adapter"]}}))
    out = tmp_path / "out"
    apply_recipe(recipe, model=base_dir, output=out, quiet=True)
    assert not (out / "config.json").exists() and default_backend(out) == "transformers"
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 8
    measured = bench_one(out, text=text, prompt_tokens=16, new_tokens=2, seq_len=64, eval_tokens=128)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                             out).eval()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:128]
    assert measured["perplexity"] == pytest.approx(transformers_perplexity(with_adapter, ids, 64)["perplexity"])
    base_only = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    assert measured["perplexity"] != pytest.approx(transformers_perplexity(base_only, ids, 64)["perplexity"])


def test_bench_table_rounds_perplexity() -> None:
    table = dict(rows([{"backend": "transformers", "perplexity": 12.345678901234567}]))
    assert table["perplexity"] == ["12.346"]


def test_checks_side_by_side_from_metrics_json(tmp_path: Path) -> None:
    """``--checks`` reads what apply recorded (three outputs, one without checks) and measures nothing."""
    def output(name: str, check: dict[str, object] | None) -> Path:
        folder = tmp_path / name
        folder.mkdir()  # no weights at all: nothing is loaded
        (folder / "metrics.json").write_text(json.dumps({"load": {}, **({"check": check} if check else {})}))
        return folder

    def kl(value: float, verdict: str) -> dict[str, object]:
        return {"kl_divergence": value, "top1_agreement": 0.9, "perplexity": {"base": 40.0, "tuned": 41.5},
                "verdict": verdict, "why": []}

    rtn8 = output("rtn8", {"kl_divergence": kl(0.0019, "ok"), "eos": {"template_ok": True, "verdict": "ok"}})
    rtn3 = output("rtn3", {"kl_divergence": kl(1.936, "fail"), "eos": {"template_ok": False, "verdict": "fail"}})
    plain = output("plain", None)
    result = CliRunner().invoke(cli, ["bench", "--checks", str(rtn8), str(rtn3), str(plain)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    def row(label: str) -> list[str]:
        line = next(line for line in lines if line.strip("│ ").startswith(label))
        return [cell.strip() for cell in line.strip("│").split("│")[1:]]

    assert row("kl_divergence") == ["ok", "fail", "-"] and row("eos") == ["ok", "fail", "-"]
    assert row("KL (nats/token)") == ["0.0019", "1.936", "-"] and row("template ok") == ["True", "False", "-"]
    data = json.loads(CliRunner().invoke(cli, ["bench", "--checks", "--json", str(rtn8), str(plain)]).output)
    assert data[str(rtn8)]["kl_divergence"]["kl_divergence"] == 0.0019 and data[str(plain)] == {}
    missing = CliRunner().invoke(cli, ["bench", "--checks", str(plain)])
    assert missing.exit_code == 2 and missing.output.strip().startswith("error: ") and "eval.check" in missing.output


def test_check_rows_put_plugin_checks_after_the_built_in_ones() -> None:
    from tunekit.serve.bench_checks import check_rows

    table = check_rows([{"mine": {"verdict": "warn"}, "eos": {"verdict": "ok", "eos_share": {"tuned": 0.5}}},
                        {"eos": {"verdict": "fail"}}])
    assert [label for label, _ in table] == ["eos", "mine", "EOS share (tuned)"]
    assert dict(table)["mine"] == ["warn", "-"] and dict(table)["EOS share (tuned)"] == ["0.5", "-"]
