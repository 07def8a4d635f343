"""``tunekit report`` / ``recommend --html``: the page's structure (always), and the page as Chromium
draws it (where /usr/bin/chromium is installed: ``apt-get install -y chromium``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tunekit.cli.html_report import output_report, recommend_report
from tunekit.cli.main import cli
from tunekit.cli.svg_charts import COLORS, LIMIT_COLOR

TINY_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
               "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 512, "max_position_embeddings": 512, "rope_theta": 10000.0, "tie_word_embeddings": False}
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class Elements(HTMLParser):
    """Every start tag with its attributes, for structural assertions (a parser, not regexes)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def of(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


def parse(html: str) -> Elements:
    found = Elements()
    found.feed(html)
    return found


def fake_run(folder: Path) -> Path:
    """An output folder as a LoRA fine-tune writes it (the file formats tunekit apply writes)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    recipe = {"name": "tiny-lora", "adapter": {"kind": "adapter", "method": "lora", "r": 8},
              "train": {"seq_len": 128, "batch_size": 2, "max_steps": 4},
              "distributed": {"strategy": "none", "world_size": 1}}
    (folder / "tunekit-recipe.yaml").write_text(yaml.safe_dump(recipe))
    metrics = {"evaluate": {"perplexity_before": 20.0, "perplexity_after": 15.0},
               "run": {"peak_memory_mb": 900.0, "seconds": 12.5}, "export": {"output_mb": 3.2},
               "train": {"loss_curve": [[1, 3.0], [2, 2.5], [3, 2.2], [4, 2.0]], "eval_curve": [[2, 2.8], [4, 2.4]]}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_output_page_has_the_memory_bar_loss_curve_and_numbers(tmp_path: Path) -> None:
    html = output_report(fake_run(tmp_path / "run"), vram_gb=0.05)
    doc = parse(html)
    fills = {r["fill"] for r in doc.of("rect")}
    assert {COLORS["weights"], COLORS["activations"], COLORS["optimizer"]} <= fills
    assert [line["stroke"] for line in doc.of("line") if line.get("stroke-dasharray")] == [LIMIT_COLOR]
    assert len([p for p in doc.of("polyline") if p.get("class") == "series"]) == 2  # train and eval loss
    assert "15.000 (-25.0%)" in html and "900 MB" in html and "lora" in html
    # self-contained: nothing to fetch
    assert not [a for _, a in doc.tags if "src" in a or ("href" in a)]
    assert "@import" not in html and "url(" not in html


def test_bar_segments_are_proportional_to_the_estimate(tmp_path: Path) -> None:
    from tunekit.cli.html_report import estimate_for_output

    folder = fake_run(tmp_path / "run")
    breakdown, note = estimate_for_output(folder, yaml.safe_load((folder / "tunekit-recipe.yaml").read_text()))
    assert "lora" in note and breakdown["weights"] > 0 and breakdown["optimizer"] > 0
    doc = parse(output_report(folder))
    widths = {r["fill"]: float(r["width"]) for r in doc.of("rect")}
    total_width, total = sum(widths.values()), sum(breakdown.values())
    # each segment's share of the bar is its share of memory
    for name in ("weights", "cuda_context", "allocator", "activations"):
        assert widths[COLORS[name]] / total_width == pytest.approx(breakdown[name] / total, abs=0.002)
    assert not [line for line in doc.of("line") if line.get("stroke-dasharray")]  # no VRAM given: no limit


def test_not_an_output_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no metrics.json" in result.output and len(result.output.splitlines()) == 1


def test_report_command_writes_the_page(tmp_path: Path) -> None:
    folder = fake_run(tmp_path / "run")
    result = CliRunner().invoke(cli, ["report", str(folder), "--vram", "24", "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert parse((tmp_path / "r.html").read_text()).of("svg")


def recommend_html(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    page = tmp_path / "rec.html"
    args = ["recommend", "--vram", "24", "--model", "llama-3.1-8b", "--goal", "finetune", "--top", "3"]
    result = CliRunner().invoke(cli, [*args, "--html", str(page)])
    assert result.exit_code == 0, result.output
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
    return page.read_text(), data


def test_recommend_page_ranks_candidates_with_bars_on_one_scale(tmp_path: Path) -> None:
    html, data = recommend_html(tmp_path)
    assert recommend_report(data) == html
    doc = parse(html)
    bars = [s for s in doc.of("svg") if s.get("class") == "bar"]
    recs = data["recommendations"]
    assert len(bars) == len(recs) >= 2
    for rec in recs:
        assert f"{rec['rank']}. {rec['recipe']['name']}" in html
    # one scale: the 24 GB limit line sits at the same x in every bar
    limits = {line["x1"] for line in doc.of("line") if line.get("stroke-dasharray")}
    assert len(limits) == 1


def _png_colors(png: Path) -> set[tuple[int, int, int]]:
    from PIL import Image

    with Image.open(png) as image:
        return {c[:3] for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16)


def screenshot(html_file: Path, png: Path) -> None:
    assert CHROMIUM is not None
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,1600", f"--screenshot={png}", html_file.as_uri()],
                   check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_chromium_draws_the_memory_bars_and_the_loss_curve(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(output_report(fake_run(tmp_path / "run"), vram_gb=0.05))
    png = tmp_path / "report.png"
    screenshot(page, png)
    colors = _png_colors(png)
    for name in ("weights", "activations", "optimizer"):
        assert _rgb(COLORS[name]) in colors, f"the {name} segment is not on the rendered page"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_chromium_draws_the_recommend_bars(tmp_path: Path) -> None:
    html, _ = recommend_html(tmp_path)
    page = tmp_path / "rec.html"
    page.write_text(html)
    png = tmp_path / "rec.png"
    screenshot(page, png)
    assert {_rgb(COLORS["weights"]), _rgb(COLORS["activations"])} <= _png_colors(png)
