"""The situations of issue 19 that must come out right, on the built-in plugins (torch-free declarations),
through the engine on fixture facts and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from tunekit.advise.hardware import resolve_hardware
from tunekit.advise.rules import Facts, load_rules, recommend
from tunekit.advise.rules import Result as Ranked
from tunekit.advise.rules.models import rank_models
from tunekit.cli.main import cli
from tunekit.core import registry as plugins
from tunekit.core.model_facts import catalog_entries, load_catalog, resolve_model
from tunekit.core.registry import Registry

NEEDED = {("quantizer", "nf4"), ("quantizer", "int8"), ("adapter", "lora"), ("adapter", "vera"),
          ("adapter", "lora-fa"), ("context", "yarn"), ("exporter", "gguf")}


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = plugins.get_registry(refresh=True)
    missing = sorted(f"{k} {n}" for k, n in NEEDED if n not in reg.of(k))
    if missing:
        pytest.skip(f"built-in plugins not installed: {', '.join(missing)}")
    return reg


@pytest.fixture(scope="module")
def rules(registry: Registry) -> list:
    return load_rules(registry)


def run(registry: Registry, rules: list, model: str, *, vram: float | None = 24, gpus: int | None = None,
        cpu_only: bool = False, ram: float = 64, top: int = 5, gpu: str | None = None, **kw: object) -> Ranked:
    """``gpu`` names a card of the table: an "8 GB" card has 8 GiB (8.59 GB), as the situations mean."""
    hardware = resolve_hardware(vram=None if cpu_only or gpu else vram, gpus=gpus, cpu_only=cpu_only, ram=ram,
                                gpu=gpu)
    facts = Facts(hardware=hardware, model=resolve_model(model, registry=registry), **kw)  # type: ignore[arg-type]
    return recommend(facts, rules, registry, top=top)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "80"})


def test_two_80gb_gpus_full_finetune_13b_is_sharded_with_the_per_gpu_figure(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-2-13b", vram=80, gpus=2, goal="finetune", method="full")
    estimates = result.facts["estimates"]
    # the one-GPU figure would be ~210 GB; sharded over two it is half of the states
    assert estimates["full_finetune_per"] == "GPU, sharded" and estimates["full_finetune_8bit_gb"] < 80
    assert estimates["full_finetune_fits"] is True
    assert not any("full fine-tune does not fit" in n for n in result.notes)
    assert not [why for name, why in result.dropped if name == "full"]
    first = result.recommendations[0]
    assert first.candidate.method == "full" and first.fits
    assert first.recipe["distributed"] == {"strategy": "fsdp", "gpus": 2} and "adapter" not in first.recipe
    assert first.candidate.memory is not None and first.candidate.memory.total_gb < 80


def test_native_context_covers_the_need_no_rope_stretch(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-3.1-8b", goal="serve", symptoms=("context-too-short",))
    assert all("context" not in r.candidate.stages for r in result.recommendations)
    assert any("trained on 131072 tokens" in n and "chunk or retrieve" in n for n in result.notes)
    advice = " ".join(n for r in result.recommendations for n in r.next) + " ".join(result.notes)
    assert "switch to" not in advice
    # a Llama-2 (4k) still gets the stretch, and the advice to switch
    short = run(registry, rules, "llama-2-7b", goal="serve", symptoms=("context-too-short",))
    assert any("context" in r.candidate.stages for r in short.recommendations)
    assert any("switch to" in n for n in short.recommendations[0].next)


@pytest.mark.parametrize("how", [{"goal": "serve"}, {"goal": "serve", "symptoms": ("too-slow",)}])
def test_cpu_only_serving_is_llama_cpp_q4_k_m_without_ngl(registry: Registry, rules: list, how: dict) -> None:
    result = run(registry, rules, "llama-3.1-8b", cpu_only=True, ram=32, **how)
    first = result.recommendations[0]
    assert first.candidate.export == "q4_k_m" and first.recipe["output"]["formats"] == ["hf", "gguf:q4_k_m"]
    gpu_kernels = [r.rank for r in result.recommendations if (r.recipe.get("quantizer") or {}).get("method")
                   in ("awq", "gptq")]
    assert all(rank > 1 for rank in gpu_kernels)
    cli = invoke("recommend", "--cpu-only", "--ram", "32", "--model", "llama-3.1-8b", "--goal", "serve")
    assert cli.exit_code == 0, cli.output
    server = next(line for line in cli.output.splitlines() if "llama-server" in line)
    assert "Q4_K_M.gguf" in server and "-ngl" not in server
    assert "vllm serve" not in cli.output


def test_8gb_finetune_8b_is_qlora_at_the_sequence_it_fits(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-3.1-8b", gpu="rtx-4060", goal="finetune")
    first = result.recommendations[0]
    assert first.fits and first.recipe["adapter"]["method"] == "lora"
    assert first.recipe["quantizer"]["method"] == "nf4"
    seq = first.recipe["train"]["seq_len"]
    assert 256 <= seq < 2048 and any(f"seq {seq}" in r for r in first.reasons)
    assert any(f"fits at seq_len {seq} tokens" in r for r in first.reasons)
    assert not any(n.startswith("nothing fits") for n in result.notes)
    # planned on the upper part of the band: what fits is decided on more than the point estimate
    assert first.candidate.memory is not None and first.candidate.memory.total_gb < 8 * 2**30 / 1e9


def test_12gb_doesnt_fit_during_lora_saves_memory_before_changing_method(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-3.2-3b", gpu="rtx-3060", goal="finetune", symptoms=("doesnt-fit",),
                 seq_len=8192, batch=4)
    first = result.recommendations[0]
    assert first.fits and first.candidate.lever == "savings"
    assert first.recipe["adapter"]["method"] == "lora" and "quantizer" not in first.recipe
    assert first.recipe["train"]["optimizer"] == "adamw-8bit" and first.recipe["train"]["gradient_checkpointing"]
    assert first.recipe["train"]["seq_len"] < 8192 and any("was 8192" in r for r in first.reasons)
    # the micro-batch goes before the sequence: the same effective batch through accumulation
    assert first.recipe["train"]["batch_size"] == 1 and first.recipe["train"]["grad_accum"] == 4
    assert first.recipe["train"]["seq_len"] >= 1024


def test_48gb_finetune_70b_is_plain_qlora_with_8bit_optimizer(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-3.1-70b", gpu="rtx-a6000", goal="finetune", top=8)
    first = result.recommendations[0]
    assert first.fits and first.recipe["adapter"]["method"] == "lora"
    assert first.recipe["quantizer"]["method"] == "nf4" and first.recipe["train"]["optimizer"] == "paged-adamw-8bit"
    names = [r.candidate.name for r in result.recommendations]
    for niche in ("vera", "lora-fa"):
        assert all(names.index(first.candidate.name) < i for i, n in enumerate(names) if niche in n)


def test_24gb_serve_70b_offers_the_llama_cpp_split_and_the_largest_model_that_fits(
        registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-3.1-70b", goal="serve", ram=64)
    first = result.recommendations[0]
    assert first.candidate.export == "q4_k_m" and first.candidate.split_layers is not None
    assert 0 < first.candidate.split_layers < 80 and first.candidate.tokens_per_s is not None
    assert 0.5 < first.candidate.tokens_per_s < 10  # RAM-bound: a few tokens/s
    assert any(f"-ngl {first.candidate.split_layers}" in r and "tokens/s" in r for r in first.reasons)
    cli = invoke("recommend", "--vram", "24", "--ram", "64", "--goal", "serve")
    assert cli.exit_code == 0, cli.output
    rows = {str(r["id"]): r for r in catalog_entries()}
    hardware = resolve_hardware(vram=24, ram=64)
    base = Facts(hardware=hardware, model=resolve_model("llama-3.1-8b"), goal="serve")
    picks, _ = rank_models(base, list(load_catalog(registry).models.values()), rows, rules, registry)
    assert picks and picks[0].rec.candidate.split_layers is None  # a model that fits the GPU comes first
    assert picks[0].arch.param_count() > 20e9 and picks[0].arch.name in cli.output


def test_7b_to_16k_beyond_2x_comes_with_warning_and_fine_tune(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-2-7b", goal="long-context", context_target=16384, top=8)
    untuned = [r for r in result.recommendations if "context" in r.recipe and "train" not in r.recipe]
    tuned = [r for r in result.recommendations if "context" in r.recipe and "train" in r.recipe]
    assert untuned and tuned
    assert all(any("past the x2" in reason for reason in r.reasons[:4]) for r in untuned)
    assert tuned[0].recipe["train"]["seq_len"] == 16384 and tuned[0].recipe["context"]["method"] == "yarn"
    # at x2 no warning and no fine-tune is needed
    mild = run(registry, rules, "llama-2-7b", goal="long-context", context_target=8192, top=8)
    assert not any("past the x2" in reason for r in mild.recommendations for reason in r.reasons)


def test_no_model_ranks_models_that_fit_with_recipes(registry: Registry, rules: list) -> None:
    result = invoke("recommend", "--vram", "24", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    models = data["models"]
    assert len(models) == 5 and all(m["recommendation"]["fits"] for m in models)
    assert all(m["recommendation"]["recipe"]["train"]["seq_len"] >= 1024 for m in models)
    assert all(m["why"] and m["traded"] for m in models)
    sizes = {m["model"]: resolve_model(m["model"]).param_count() for m in models}
    assert max(sizes.values()) > 10e9  # a 24 GB card fine-tunes a mid-size model with QLoRA
    code = json.loads(invoke("recommend", "--vram", "24", "--goal", "serve", "--task", "code", "--json").output)
    rows = {str(r["id"]): r for r in catalog_entries()}
    assert any("code" in (rows[m["model"]].get("skills") or []) for m in code["models"][:3])
    # a 32B's Q4_K_M reads ~20 GB a token: ~50 tokens/s on a 4090's 1 TB/s, too slow for 15 ms a token
    fast = json.loads(invoke("recommend", "--gpu", "rtx-4090", "--goal", "serve", "--latency-ms", "15",
                             "--json").output)
    assert fast["models"] and all(1000 / m["tokens_per_s"] <= 15 for m in fast["models"])
    assert any("slower than 15 ms" in x["why"] for x in fast["left_out"])


def test_no_model_text_fits_80_columns_and_model_narrows(registry: Registry, rules: list) -> None:
    result = invoke("recommend", "--vram", "24")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("#  model"))
    rows = [line.split() for line in lines[header + 2:header + 7]]
    models = {str(r["id"]) for r in catalog_entries()}
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"] and all(row[1] in models for row in rows)
    narrowed = invoke("recommend", "--vram", "24", "--model", "llama-3.1-8b")
    assert narrowed.exit_code == 0 and "model: llama-3.1-8b" in narrowed.output


def test_written_recipes_name_the_model_and_the_run_line_names_the_file(
        registry: Registry, rules: list, tmp_path: Path) -> None:
    out = tmp_path / "w"
    result = invoke("recommend", "--vram", "24", "--gpus", "8", "--model", "llama-3.1-70b", "--write", str(out))
    assert result.exit_code == 0, result.output
    first = sorted(out.glob("01-*.yaml"))[0]
    recipe = yaml.safe_load(first.read_text())
    assert recipe["model"]["id"] == "meta-llama/Llama-3.1-70B"
    run_line = next(line for line in result.output.splitlines() if line.startswith("run: "))
    assert f"tunekit launch {first}" in run_line and "-- --output out/" in run_line
    # every row's reason says what the row is
    data = json.loads(invoke("recommend", "--vram", "24", "--model", "llama-3.1-8b", "--top", "8",
                             "--json").output)
    for rec in data["recommendations"]:
        adapter = (rec["recipe"].get("adapter") or {}).get("method")
        if adapter == "vera":
            assert "VeRA" in rec["reasons"][2]


def test_quantized_vllm_line_serves_the_output_folder(registry: Registry, rules: list) -> None:
    result = invoke("recommend", "--vram", "24", "--model", "llama-3.1-8b", "--goal", "serve",
                    "--symptom", "quality-drop-after-quant")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip().startswith("vllm serve")]
    quantized = [line for line in lines if "--quantization gptq" in line or "--quantization awq" in line]
    assert quantized and all(line.startswith("vllm serve out/llama-3.1-8b-") for line in quantized)


def test_memory_in_table_and_notes_agree(registry: Registry, rules: list) -> None:
    result = run(registry, rules, "llama-3.1-8b", goal="finetune")
    for rec in result.recommendations:
        assert rec.candidate.memory is not None
        shown = f"needs ~{rec.candidate.memory.total_gb:.1f} GB"
        assert any(r.startswith(shown) for r in rec.reasons)
    assert not math.isnan(result.facts["estimates"]["full_finetune_gb"])


def test_full_finetune_ranks_first_when_asked_and_sharded_fits(registry: Registry, rules: list,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranking itself, whatever this checkout's recipe validation says about full fine-tuning."""
    import tunekit.advise.rules.engine as engine

    monkeypatch.setattr(engine, "_resolve", lambda data, registry: data)
    result = run(registry, rules, "llama-2-13b", vram=80, gpus=2, ram=256, goal="finetune", method="full")
    first = result.recommendations[0]
    assert first.candidate.method == "full" and first.fits and "adapter" not in first.recipe
    assert first.recipe["distributed"] == {"strategy": "fsdp", "gpus": 2}
    assert first.candidate.memory is not None
    assert any(r.startswith(f"needs ~{first.candidate.memory.total_gb:.1f} GB") for r in first.reasons)
    assert not any("GB per GPU" in r for r in first.reasons if r.startswith("sharded"))
    # one 80 GB GPU: no full fine-tune of a 13B, and the note says so with the one-GPU figure
    single = run(registry, rules, "llama-2-13b", vram=80, goal="finetune", method="full")
    assert single.recommendations[0].candidate.method != "full"
    assert any("full fine-tune does not fit" in n and "per GPU (" in n for n in single.notes)


def test_nothing_fits_note_matches_the_table_and_commands_name_the_written_file(
        registry: Registry, rules: list, tmp_path: Path) -> None:
    """One figure: the note's `needs ~` is the leanest row's table figure, its `planned` the reason's; the
    multi-GPU lines name the file --write wrote, which exists."""
    result = run(registry, rules, "llama-3.1-8b", vram=8, goal="finetune")
    assert result.no_fit is not None and not any(r.fits for r in result.recommendations)
    lean = min(result.recommendations, key=lambda r: r.candidate.memory.total_gb)  # type: ignore[union-attr]
    assert lean.candidate.memory is not None
    note = next(n for n in result.notes if n.startswith("nothing fits"))
    assert f"needs ~{lean.candidate.memory.total_gb:.1f} GB" in note and "upper part of the band" in note
    assert any(f"(~{result.no_fit['planned_gb']:.1f} GB)" in r for r in lean.reasons)
    out = tmp_path / "w"
    cli = invoke("recommend", "--vram", "8", "--model", "llama-3.1-8b", "--write", str(out))
    assert cli.exit_code == 0, cli.output
    lines = [line.strip() for line in cli.output.splitlines() if line.strip().startswith(("tunekit launch",
                                                                                        "accelerate launch"))]
    assert lines
    for line in lines:
        named = next(word for word in line.split() if word.endswith(".yaml"))
        assert Path(named).is_file() and Path(named).parent == out
    data = json.loads(invoke("recommend", "--vram", "8", "--model", "llama-3.1-8b", "--write", str(tmp_path / "j"),
                             "--json").output)
    assert Path(data["facts"]["diagnosis"]["no_fit"]["recipe"]).is_file()


def test_shortened_sequences_fit_on_the_upper_band_and_rank_below_the_asked_length(
        registry: Registry, rules: list) -> None:
    """A candidate shortened to fit is shortened as `fits` decides (upper band), and the shorter sequence is a
    trade: an 8-bit base at 256 tokens does not outrank a 4-bit base at the asked 2048."""
    from tunekit.advise.rules import fitting

    result = run(registry, rules, "qwen2.5-14b", vram=24, goal="finetune", top=8)
    first = result.recommendations[0]
    assert first.recipe["quantizer"]["method"] == "nf4" and first.recipe["train"]["seq_len"] == 2048
    facts = Facts(hardware=resolve_hardware(vram=24, ram=64), model=resolve_model("qwen2.5-14b"), goal="finetune")
    shortened = [r for r in result.recommendations if any(x.startswith("fits at seq_len") for x in r.reasons)]
    assert shortened and all(fitting.fits(facts, r.candidate) for r in shortened)


def test_a_latency_target_picks_a_faster_recipe_of_a_model_before_dropping_it(registry: Registry) -> None:
    """``--latency-ms`` constrains each model's recipes: on a 24 GB card, 7-8B models whose 16-bit weights
    decode too slowly for 20 ms a token are offered quantized, not left out for a 2B."""
    data = json.loads(invoke("recommend", "--vram", "24", "--goal", "serve", "--latency-ms", "20", "--json").output)
    picks = data["models"]
    assert picks and all(1000 / m["tokens_per_s"] <= 20 for m in picks)
    assert any(resolve_model(m["model"]).param_count() > 7e9 for m in picks)
    assert all(m["recommendation"]["memory"]["assumptions"]["bits_per_weight"] < 16 for m in picks
               if resolve_model(m["model"]).param_count() > 7e9)


def test_one_model_latency_drops_the_recipes_that_decode_too_slowly(registry: Registry) -> None:
    args = ["recommend", "--gpu", "rtx-4090", "--model", "llama-3.1-8b", "--goal", "serve", "--json"]
    free = json.loads(invoke(*args).output)
    fast = json.loads(invoke(*args, "--latency-ms", "10").output)
    assert fast["facts"]["latency_ms"] == 10
    slow = free["recommendations"][0]["recipe"]["name"]
    assert slow.endswith("-bf16") and fast["recommendations"]
    assert slow not in {r["recipe"]["name"] for r in fast["recommendations"]}
    dropped = fast["facts"]["diagnosis"]["dropped"]
    assert any("slower than 10 ms" in str(d) and "bf16" in str(d) for d in dropped)
    # no recipe of a 32B reads its weights in 15 ms on a 4090: say so and name the fastest, never offer a
    # recipe that does not fit as a "near miss"
    none = json.loads(invoke(*args[:4], "qwen2.5-32b", *args[5:], "--latency-ms", "15").output)
    assert none["recommendations"] == []
    assert any("no recipe that fits decodes within 15 ms/token" in n and "the fastest" in n
               for n in none["facts"]["diagnosis"]["notes"])


def test_a_mixture_of_experts_decodes_at_its_active_experts_bytes(registry: Registry, rules: list) -> None:
    """Decode reads the experts a token is routed to, not all of them: Qwen3-30B-A3B (3.3B active) decodes
    several times faster than its 30B of weights would suggest."""
    from tunekit.advise.rules.speed import decode_speed

    moe = resolve_model("qwen3-30b-a3b")
    facts = Facts(hardware=resolve_hardware(gpu="a100-80gb"), model=moe, goal="serve")
    rec = recommend(facts, rules, registry, top=1).recommendations[0]
    speed = decode_speed(facts, rec.candidate)
    assert rec.candidate.memory is not None and speed is not None
    all_weights = 1 / ((rec.candidate.memory.breakdown["weights"] + rec.candidate.memory.breakdown["kv_cache"])
                       / (2039 * 1e9))
    assert speed > 3 * all_weights


def test_a_quantizer_that_saves_no_memory_is_never_recommended(registry: Registry) -> None:
    """RTN's fake-quant keeps rounded weights in 16 bits (a quality measurement): as-is reads the same bytes."""
    for goal in ("serve", "finetune", "compress"):
        data = json.loads(invoke("recommend", "--vram", "24", "--model", "llama-3.1-8b", "--goal", goal, "--top",
                                 "20", "--json").output)
        assert all((r["recipe"].get("quantizer") or {}).get("method") != "rtn" for r in data["recommendations"])


def test_cpu_only_fine_tuning_offers_models_a_cpu_trains_in_a_day(registry: Registry) -> None:
    """No GPU: a 24B QLoRA fits 32 GB of RAM but would train for days; the ranking offers models a LoRA of
    which takes at most a day per million tokens (6 FLOPs per parameter per token), 16-bit (bitsandbytes'
    CPU fallback dequantizes every matmul), and says the hours it trades."""
    from tunekit.advise.rules.speed import CPU_TRAIN_HOURS_LIMIT, cpu_train_hours

    data = json.loads(invoke("recommend", "--cpu-only", "--ram", "32", "--json").output)
    picks = data["models"]
    assert picks and all(cpu_train_hours(resolve_model(m["model"])) <= CPU_TRAIN_HOURS_LIMIT for m in picks)
    assert all(m["recommendation"]["memory"]["assumptions"]["bits_per_weight"] >= 16 for m in picks)
    assert all(any("h per 1M tokens" in t for t in m["traded"]) for m in picks)
    why = dict((x["model"], x["why"]) for x in data["left_out"])
    assert "per million training tokens" in why["mistral-small-24b"]
    one = invoke("recommend", "--cpu-only", "--ram", "32", "--model", "qwen3-4b")
    assert "[train-on-cpu]" in one.output and "h per million" in one.output


def test_serving_at_an_asked_context_keeps_it(registry: Registry) -> None:
    """``--goal serve --context N`` serves at N (never shortened to fit), up to the model's native window; past
    it the model is served natively with a note pointing at --goal long-context, and the model ranking leaves
    out models that cannot read N."""
    args = ["recommend", "--gpu", "rtx-3090", "--goal", "serve", "--context", "32768", "--json"]
    one = json.loads(invoke(*args, "--model", "llama-3.1-8b").output)
    assert one["recommendations"] and all(r["memory"]["assumptions"]["seq_len"] == 32768
                                          for r in one["recommendations"])
    short = json.loads(invoke(*args, "--model", "llama-2-7b").output)
    assert all(r["memory"]["assumptions"]["seq_len"] == 4096 for r in short["recommendations"])
    assert any(n.startswith("[serve-within-native-context]") for n in short["facts"]["diagnosis"]["notes"])
    ranked = json.loads(invoke(*args).output)
    assert ranked["models"] and all(resolve_model(m["model"]).max_context >= 32768 for m in ranked["models"])
    why = dict((x["model"], x["why"]) for x in ranked["left_out"])
    assert "fewer than --context 32768" in why["llama-2-7b"]


def test_a_sampler_symptom_never_answers_with_a_bigger_gpu(registry: Registry) -> None:
    """An 8B that is "too random" on a 12 GB card is being served somehow: the decoding controls come on a
    quantized base that fits (the 16-bit one does not), with the settings said, and no "nothing fits" note."""
    data = json.loads(invoke("recommend", "--gpu", "rtx-3060", "--model", "llama-3.1-8b", "--goal", "serve",
                             "--symptom", "too-random", "--json").output)
    recs = data["recommendations"]
    assert recs and all(r["fits"] for r in recs) and recs[0]["recipe"]["sampler"]["temperature"] == 0.3
    assert all(r["memory"]["assumptions"]["bits_per_weight"] < 16 for r in recs)
    assert any("temperature 0.3" in reason for reason in recs[0]["reasons"])
    assert not any(n.startswith("nothing fits") for n in data["facts"]["diagnosis"]["notes"])


def test_a_full_fine_tune_too_big_to_shard_moves_its_optimizer_to_ram(registry: Registry, tmp_path: Path) -> None:
    """8 x H100, full fine-tune of a 70B: FSDP with a paged 8-bit optimizer misses 80 GB; ZeRO-3 with the
    optimizer state and step in CPU RAM (ZeRO-Offload) fits when the RAM holds 12 bytes/param, and the
    written recipe validates and launches as printed. Without that RAM it is not offered."""
    args = ["recommend", "--gpu", "h100", "--gpus", "8", "--model", "llama-3.1-70b", "--method", "full"]
    out = tmp_path / "w"
    roomy = invoke(*args, "--ram", "2000", "--write", str(out))
    assert roomy.exit_code == 0, roomy.output
    first = yaml.safe_load(sorted(out.glob("01-*.yaml"))[0].read_text())
    assert "adapter" not in first and first["distributed"] == {"strategy": "zero3", "gpus": 8,
                                                               "offload_optimizer": True}
    assert "optimizer" not in first["train"]  # DeepSpeed's CPU AdamW: the recipe check refuses another
    assert "tunekit launch" in roomy.output and "--strategy zero3" in roomy.output
    assert "goal-finetune-full-too-big" not in roomy.output
    assert invoke("validate", str(sorted(out.glob("01-*.yaml"))[0])).exit_code == 0
    small = json.loads(invoke(*args, "--ram", "64", "--json").output)
    assert all(r["recipe"].get("adapter") for r in small["recommendations"])


def test_an_8_bit_kv_cache_comes_before_a_shorter_context(registry: Registry) -> None:
    """A long context's KV cache is halved (llama.cpp q8_0, vLLM fp8 where the GPU has FP8) before the context
    is cut or the recipe called unfit, and the printed command carries the flag the memory figure assumed."""
    gguf = invoke("recommend", "--gpu", "rtx-3060", "--model", "llama-3.1-8b", "--goal", "serve", "--context",
                  "32768", "--json")
    first = json.loads(gguf.output)["recommendations"][0]
    assert first["fits"] and first["memory"]["assumptions"]["seq_len"] == 32768
    assert any(r.startswith("8-bit KV cache (-ctk q8_0 -ctv q8_0) to fit") for r in first["reasons"])
    printed = invoke("recommend", "--gpu", "rtx-3060", "--model", "llama-3.1-8b", "--goal", "serve", "--context",
                     "32768").output
    assert "-c 32768 -ngl 33 -fa on -ctk q8_0 -ctv q8_0" in printed
    long = invoke("recommend", "--gpu", "rtx-4090", "--model", "llama-3.1-8b", "--goal", "long-context",
                  "--context", "200000", "--json")
    first = json.loads(long.output)["recommendations"][0]
    assert first["fits"] and first["memory"]["assumptions"]["kv_bits"] == 8
    assert "--kv-cache-dtype fp8" in invoke("recommend", "--gpu", "rtx-4090", "--model", "llama-3.1-8b", "--goal",
                                            "long-context", "--context", "200000").output
    ampere = json.loads(invoke("recommend", "--gpu", "rtx-3090", "--model", "llama-3.1-8b", "--goal",
                               "long-context", "--context", "200000", "--json").output)
    assert all(r["memory"]["assumptions"]["kv_bits"] == 16 for r in ampere["recommendations"])  # no FP8


def test_a_cpu_serves_gguf_k_quants_across_models(registry: Registry) -> None:
    """No GPU, 16 GB of RAM: every model the ranking offers is served by llama.cpp (Q4_K_M, or Q3_K_M where 4
    bits do not fit), never by GPU kernels' CPU fallback (AWQ/GPTQ through GPTQModel's torch kernel)."""
    data = json.loads(invoke("recommend", "--cpu-only", "--ram", "16", "--goal", "serve", "--json").output)
    names = [m["recommendation"]["recipe"]["name"] for m in data["models"]]
    assert names and all("gguf-q4_k_m" in n or "gguf-q3_k_m" in n for n in names), names
    assert any("gguf-q3_k_m" in n for n in names)  # a 14B whose Q4_K_M does not fit is offered at 3 bits
    one = json.loads(invoke("recommend", "--cpu-only", "--ram", "16", "--goal", "long-context", "--model",
                            "phi-3-medium", "--json").output)
    assert one["recommendations"][0]["recipe"]["name"].endswith("gguf-q3_k_m")
