"""Cold start of ``tunekit recommend`` with no model (ranks the catalog) against one model and ``import torch``.

Run: ``python bench/recommend_models.py``. Writes ``bench/results/recommend-models-cpu.json``. Each
command runs in a fresh process, ``RUNS`` times, interleaved so a busy machine slows all three alike;
the minimum is the figure (the least disturbed run), the median beside it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 5
OUT = Path(__file__).parent / "results" / "recommend-models-cpu.json"


def main() -> None:
    exe = str(Path(sys.executable).parent / "tunekit")
    commands = {
        "recommend --vram 24 (no model: ranks the catalog)": [exe, "recommend", "--vram", "24", "--json"],
        "recommend --vram 24 --goal serve (no model)": [exe, "recommend", "--vram", "24", "--goal", "serve", "--json"],
        "recommend --vram 24 --model llama-3.1-8b": [exe, "recommend", "--vram", "24", "--model", "llama-3.1-8b",
                                                     "--json"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    result = {name: {"min_s": round(min(t), 3), "median_s": round(statistics.median(t), 3)}
              for name, t in times.items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"runs": RUNS, "results": result}, indent=2) + "\n", encoding="utf-8")
    for name, row in result.items():
        print(f"{row['min_s']:7.3f} s min  {row['median_s']:7.3f} s median  {name}")


if __name__ == "__main__":
    main()
