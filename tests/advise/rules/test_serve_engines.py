"""Every serve line recommend prints is one its engine accepts (issue 20 item 6): a test per engine x method,
on the engines' own limits (vLLM: AWQ 4-bit, GPTQ 4/8-bit, bitsandbytes NF4 in flight; llama.cpp: GGUF and
16-bit models converted to one, with --rope-scaling flags; transformers: any HF folder, no GGUF)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tunekit.advise.estimate import QUANTS, QuantSpec, Setup
from tunekit.advise.hardware import resolve_hardware
from tunekit.advise.rules import Facts, load_rules, recommend
from tunekit.advise.rules import engines as eng
from tunekit.advise.rules.candidates import Candidate
from tunekit.advise.rules.serve import serve_lines, serve_options
from tunekit.cli.main import cli
from tunekit.core import registry as plugins
from tunekit.core.model_facts import resolve_model
from tunekit.core.registry import Registry


def cand(quant: str | None, bits: float, *, export: str | None = None, context: str | None = None) -> Candidate:
    stages = {"quantizer": {"method": quant}} if quant else {}
    if context:
        stages["context"] = {"method": context, "factor": 4.0}
    spec = QUANTS[f"gguf-{export}"] if export else QuantSpec(quant or "bf16", bits)
    return Candidate(name="c", lever="quantize", method="infer", stages=stages,
                     setup=Setup(method="infer", quant=spec), export=export)


# engine -> (quantizer, stored bits, GGUF export, context) -> accepted
CASES = [
    # vLLM: AWQ 4-bit only, GPTQ 4 or 8, bitsandbytes only as NF4 in flight, fp8, any 16-bit folder
    ("vllm", cand(None, 16), True), ("vllm", cand("awq", 4.16), True), ("vllm", cand("awq", 8.19), False),
    ("vllm", cand("gptq", 4.16), True), ("vllm", cand("gptq", 8.19), True), ("vllm", cand("gptq", 3.16), False),
    ("vllm", cand("nf4", 4.13), True), ("vllm", cand("fp4", 4.13), False), ("vllm", cand("int8", 8.0), False),
    ("vllm", cand("rtn", 16), True), ("vllm", cand(None, 4.89, export="q4_k_m"), False),
    ("vllm", cand(None, 16, context="yarn"), True),
    # llama.cpp: GGUF, or a 16-bit model converted to one; never AWQ/GPTQ/bitsandbytes weights
    ("llama.cpp", cand(None, 4.89, export="q4_k_m"), True), ("llama.cpp", cand(None, 16), True),
    ("llama.cpp", cand("awq", 4.16), False), ("llama.cpp", cand("gptq", 8.19), False),
    ("llama.cpp", cand("nf4", 4.13), False), ("llama.cpp", cand("int8", 8.0), False),
    ("llama.cpp", cand(None, 16, context="dynamic"), True), ("llama.cpp", cand(None, 16, context="longrope"), False),
    # transformers: every HF folder a quantizer writes, not a GGUF
    ("hf", cand("awq", 8.19), True), ("hf", cand("int8", 8.0), True), ("hf", cand("fp4", 4.13), True),
    ("hf", cand(None, 16), True), ("hf", cand(None, 4.89, export="q4_k_m"), False),
]


@pytest.mark.parametrize(("engine", "candidate", "accepted"), CASES,
                         ids=[f"{e}-{c.stages.get('quantizer', {}).get('method') or c.export or 'bf16'}-"
                              f"{round(c.setup.quant.bits)}-{(c.stages.get('context') or {}).get('method', '')}"
                              for e, c, _ in CASES])
def test_engine_accepts(engine: str, candidate: Candidate, accepted: bool) -> None:
    why = eng.problem(engine, candidate)
    assert (why is None) == accepted, why
    if not accepted:
        assert why and len(why.splitlines()) == 1


def test_only_transformers_serves_an_8bit_awq() -> None:
    assert eng.only_hf(cand("awq", 8.19)) and eng.only_hf(cand("int8", 8.0))
    assert not eng.only_hf(cand("awq", 4.16)) and not eng.only_hf(cand(None, 16))


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = plugins.get_registry(refresh=True)
    needed = {("quantizer", "awq"), ("quantizer", "gptq"), ("exporter", "gguf"), ("context", "yarn")}
    missing = sorted(f"{k} {n}" for k, n in needed if n not in reg.of(k))
    if missing:
        pytest.skip(f"built-in plugins not installed: {', '.join(missing)}")
    return reg


def ranked(registry: Registry, model: str, *, engine: str | None = None, goal: str = "serve", **kw: object) -> tuple:
    facts = Facts(hardware=resolve_hardware(gpu="rtx-4090", ram=64), model=resolve_model(model, registry=registry),
                  goal=goal, engine=engine, **kw)  # type: ignore[arg-type]
    return facts, recommend(facts, load_rules(registry), registry, top=12)


@pytest.mark.parametrize("engine", ["vllm", "llama.cpp", "hf"])
def test_engine_narrows_the_ranking_to_what_it_serves(registry: Registry, engine: str) -> None:
    """issue 20 item 6's case: qwen2.5-14b on a 4090 ranked an 8-bit AWQ first for vLLM."""
    facts, result = ranked(registry, "qwen2.5-14b", engine=engine)
    assert result.recommendations
    key = {"vllm": "vllm serve", "llama.cpp": "llama-server", "hf": "transformers serve"}[engine]
    for rec in result.recommendations:
        assert eng.problem(engine, rec.candidate) is None and rec.candidate.memory is not None
        assert rec.candidate.memory.assumptions["engine"] == (engine if not rec.candidate.export else "llama.cpp")
        lines = serve_lines(facts, rec, engine)
        offloaded = engine == "hf" and rec.candidate.offload  # transformers serve has no max_memory
        assert len(lines) == 1 and lines[0].startswith("tunekit generate" if offloaded else key)
        quant, bits = eng.quant_bits(rec.candidate)
        if engine == "vllm" and quant in ("awq", "gptq"):
            assert f"--quantization {quant}" in lines[0] and bits in eng.VLLM_QUANT[quant][1]
    assert any(name == "awq-8.19bit" for name, _ in result.dropped) == (engine != "hf")


def test_without_an_engine_vllm_servable_ranks_first_and_no_line_is_refused(registry: Registry) -> None:
    facts, result = ranked(registry, "qwen2.5-14b")
    first = result.recommendations[0]
    assert not eng.only_hf(first.candidate)
    for rec in result.recommendations:
        opts = serve_options(facts, rec)
        for engine, key in (("vllm", "vllm"), ("llama.cpp", "llama_cpp"), ("hf", "hf")):
            assert (opts[key] is None) == (engine in opts["not_served"])
            assert (opts[key] is None) == (eng.problem(engine, rec.candidate) is not None)


@pytest.mark.parametrize("method", ["linear", "dynamic", "yarn", "llama3"])
def test_llama_server_lines_carry_the_rope_flags(registry: Registry, method: str) -> None:
    if method not in registry.of("context"):
        pytest.skip(f"context plugin {method} not installed")
    facts, result = ranked(registry, "llama-2-7b", goal="long-context", context_target=8192)
    recs = [r for r in result.recommendations if (r.recipe.get("context") or {}).get("method") == method
            and "train" not in r.recipe and "quantizer" not in r.recipe]
    assert recs, [r.candidate.name for r in result.recommendations]
    line = serve_options(facts, recs[0])["llama_cpp"]
    assert line is not None and "--rope-scale 2" in line
    rope = eng.LLAMA_CPP_ROPE[method]
    assert f"--rope-scaling {rope}" in line and (("--yarn-orig-ctx 4096" in line) == (rope == "yarn"))


def test_cli_engine_option_prints_that_engines_lines() -> None:
    runner = CliRunner()
    for engine, key, absent in (("vllm", "vllm serve", "llama-server"), ("llama.cpp", "llama-server", "vllm serve"),
                                ("hf", "transformers serve", "vllm serve")):
        result = runner.invoke(cli, ["recommend", "--gpu", "rtx-4090", "--model", "qwen2.5-14b", "--goal", "serve",
                                     "--engine", engine], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert key in result.output and absent not in result.output
    bad = runner.invoke(cli, ["recommend", "--vram", "24", "--engine", "tgi"])
    assert bad.exit_code == 2
