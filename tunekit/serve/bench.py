"""``tunekit bench``: what serving a tuned output costs, measured the way a user would run it.

For each output (a Hugging Face folder, a GGUF file, or a folder holding one) it measures time to
first token, prompt and generation tokens/s, peak memory, perplexity on held-out text and file size.
Each output runs in its own subprocess (``python -m tunekit.serve.bench``) so peak RSS belongs to that
output alone and two runs side by side do not share caches. Torch-free at import; the backends import
torch/transformers or llama_cpp inside the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunekit.core.errors import TunekitError, UsageError
from tunekit.run.measure import peak_rss_bytes

BACKENDS = ("transformers", "llamacpp")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def find_gguf(path: Path) -> Path | None:
    """The GGUF to run for ``path``: the file itself, or the single (largest) ``.gguf`` in a folder."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    found = sorted(path.glob("*.gguf"), key=lambda p: p.stat().st_size, reverse=True) if path.is_dir() else []
    return found[0] if found else None


def default_backend(path: Path) -> str:
    """llama.cpp for GGUF outputs, transformers for Hugging Face folders."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return "llamacpp"
    if path.is_dir() and (path / "config.json").is_file():
        return "transformers"
    if find_gguf(path) is not None:
        return "llamacpp"
    if path.is_dir() and (path / "adapter_config.json").is_file():
        return "transformers"  # an adapter output: its base + the adapter
    raise UsageError(f"{path}: not a Hugging Face model folder, an adapter folder nor a GGUF file")


def weights_size(path: Path, backend: str) -> int:
    """Bytes of the weights the backend loads (the GGUF, or the folder's weight files)."""
    path = Path(path)
    if backend == "llamacpp":
        gguf = find_gguf(path)
        return gguf.stat().st_size if gguf else 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def prompt_ids(all_ids: list[int], n: int) -> list[int]:
    """The first ``n`` token ids of the text, repeated if it is shorter."""
    if not all_ids:
        raise UsageError("the benchmark text produced no tokens")
    out = list(all_ids)
    while len(out) < n:
        out += all_ids
    return out[:n]


def bench_one(path: Path, *, backend: str | None = None, prompt_tokens: int = 128, new_tokens: int = 32,
              text: str | None = None, seq_len: int = 256, eval_tokens: int = 4096,
              threads: int = 2, kv_cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure one output in this process (``bench`` runs this in a fresh subprocess per output).

    ``kv_cache`` (generation-config keys, :func:`tunekit.core.kv_cache.parse_spec`) replaces the cache the
    output's generation_config.json names; transformers backend only.
    """
    path = Path(path)
    backend = backend or default_backend(path)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    source = text if text is not None else _fallback_text()
    start = time.perf_counter()
    options: dict[str, Any] = {}
    if backend == "llamacpp":
        if kv_cache:
            raise UsageError("--kv-cache is for the transformers backend (llama.cpp's own is --cache-type-k/v)")
        from tunekit.serve.bench_backends import run_llamacpp as run
    else:
        from tunekit.serve.bench_backends import run_transformers as run
        options["kv_cache"] = kv_cache
    result = run(path, source=source, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                 seq_len=seq_len, eval_tokens=eval_tokens, threads=threads, **options)
    result.update({
        "output": str(path),
        "backend": backend,
        "file_bytes": weights_size(path, backend),
        "peak_rss_bytes": peak_rss_bytes(),
        "wall_s": round(time.perf_counter() - start, 2),
    })
    return result


def _fallback_text() -> str:
    """Held-out English text shipped with tunekit, used when ``--text`` is not given."""
    from tunekit.core.texts import shipped_eval_path

    path = shipped_eval_path()
    if not path.is_file():
        raise UsageError("no held-out text shipped: pass --text FILE")
    return path.read_text(encoding="utf-8")


def bench(paths: list[Path], **options: Any) -> list[dict[str, Any]]:
    """Run :func:`bench_one` for each output in its own subprocess and collect the results."""
    results = []
    for path in paths:
        cmd = [sys.executable, "-m", "tunekit.serve.bench", json.dumps({"path": str(path), **options})]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise TunekitError(f"bench of {path} failed: {' | '.join(tail)}")
        payload = json.loads(lines[-1])
        if "error" in payload:
            raise TunekitError(f"bench of {path}: {payload['error']}")
        results.append(payload)
    return results


COLUMNS = (
    ("backend", "backend", None),
    ("file size (MB)", "file_bytes", 1e6),
    ("peak RSS (MB)", "peak_rss_bytes", 1e6),
    ("TTFT (s)", "ttft_s", None),
    ("prompt tok/s", "prompt_tokens_per_s", None),
    ("gen tok/s", "gen_tokens_per_s", None),
    ("KV cache (MB)", "kv_cache_bytes", 1e6),
    ("perplexity", "perplexity", None),
)


def rows(results: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(label, one cell per output) for the side-by-side table, with the ratio when there are two."""
    out = []
    for label, key, scale in COLUMNS:
        cells = []
        for r in results:
            value = r.get(key)
            if isinstance(value, (int, float)) and scale:
                value = round(value / scale, 1)
            elif isinstance(value, float):
                value = round(value, 3)  # measured numbers, not 14 decimals of float noise
            cells.append("-" if value is None else str(value))
        if len(results) == 2 and key != "backend":
            a, b = results[0].get(key), results[1].get(key)
            ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and a
            cells.append(f"x{b / a:.2f}" if ok else "-")  # type: ignore[operator]
        out.append((label, cells))
    return out


def _worker() -> None:
    options = json.loads(sys.argv[1])
    path = Path(options.pop("path"))
    try:
        result = bench_one(path, **options)
    except TunekitError as exc:
        result = {"error": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    _worker()
