"""Issue 14's run-safety items: what --force may replace, locks, crashed swaps, paths inside the output,
checkpoints resume can trust, trust_remote_code, recipe-relative input files, slow plugin imports."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import OutputBusyError, OutputExistsError, TunekitError, UsageError
from tunekit.core.output_paths import inside
from tunekit.run.output import OLD_MARK, STAMP, TMP_MARK, AtomicOutput
from tunekit.run.pipeline import apply_recipe

RECIPE = {"name": "safety", "eval": {"perplexity": False}}


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    """A folder that passes the pre-load checks; the refusals under test happen before any weight loads."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def write_recipe(folder: Path, data: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data or RECIPE))
    return path


def contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- 1. --force replaces only what tunekit wrote ----------------------------------------------


@pytest.mark.parametrize("where", ["", ".", "parent", "home", "root", "recipe-folder", "unstamped"])
def test_force_refuses_folders_tunekit_did_not_write(where: str, tmp_path: Path, fake_model: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "project" / "src"
    recipe = write_recipe(tmp_path / "project" / "recipes")
    (work / "keep.py").parent.mkdir(parents=True)
    (work / "keep.py").write_text("print('mine')\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    unstamped = tmp_path / "someone-elses"
    (unstamped / "notes.txt").parent.mkdir()
    (unstamped / "notes.txt").write_text("precious")
    output = {"": "", ".": ".", "parent": str(tmp_path / "project"), "home": "~", "root": "/",
              "recipe-folder": str(recipe.parent), "unstamped": str(unstamped)}[where]
    before = contents(tmp_path)
    result = CliRunner().invoke(cli, ["apply", str(recipe), "--model", str(fake_model), "--output", output,
                                      "--force"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and ("refuses to replace" in result.output or "empty" in result.output)
    assert contents(tmp_path) == before


def test_every_output_carries_the_stamp_and_force_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with AtomicOutput(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / STAMP).is_file()
    with AtomicOutput(out, force=True) as tmp:
        (tmp / "a.txt").write_text("second")
    assert (out / "a.txt").read_text() == "second" and (out / STAMP).is_file()


# -- 5. locks and a crashed --force swap -------------------------------------------------------


def test_a_second_run_to_the_same_output_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = AtomicOutput(out)
    with first as tmp:
        (tmp / "a.txt").write_text("first")
        with pytest.raises(OutputBusyError, match="in use by another tunekit run"), AtomicOutput(out):
            pass
        assert tmp.is_dir()  # the refused run did not take the live run's temporary folder for stale
    with AtomicOutput(out, force=True):  # the lock went with the first run
        pass


def test_an_orphaned_old_output_is_restored_not_deleted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with AtomicOutput(out) as tmp:
        (tmp / "model.txt").write_text("the earlier result")
    # a crash between "old output aside" and "new output in" (the pid is dead, or in another namespace)
    old = tmp_path / f".out{OLD_MARK}999999999-deadbeef"
    out.rename(old)
    (tmp_path / f".out{TMP_MARK}999999999-cafe").mkdir()
    with pytest.raises(OutputExistsError), AtomicOutput(out):
        pass
    assert (out / "model.txt").read_text() == "the earlier result"
    assert not old.exists() and not list(tmp_path.glob(f".out{TMP_MARK}*"))


# -- 3. files stay inside the output ----------------------------------------------------------


@pytest.mark.parametrize("name", ["../x.gguf", "/tmp/x.gguf", "a/../../x.gguf", "~/x.gguf"])
def test_paths_outside_the_output_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="output file"):
        inside(tmp_path, name)
    recipe = write_recipe(tmp_path / "r", {"name": "g", "output": {"formats": [{"gguf": {"filename": name}}]}})
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 2 and "filename" in result.output and "output folder" in result.output
    assert inside(tmp_path, "sub/x.gguf") == tmp_path / "sub" / "x.gguf"


# -- 4. checkpoints ----------------------------------------------------------------------------


def test_resume_falls_back_past_a_checkpoint_whose_save_was_interrupted(tmp_path: Path) -> None:
    from test_training import run
    from train_helpers import write_text_jsonl

    from tunekit.run.checkpoints import COMPLETE

    data = write_text_jsonl(tmp_path / "t.jsonl")
    run(tmp_path / "a", data, save_steps=3)
    folder = tmp_path / "a" / "checkpoints"
    assert (folder / "checkpoint-3" / COMPLETE).is_file() and (folder / "checkpoint-6" / COMPLETE).is_file()
    (folder / "checkpoint-6" / COMPLETE).unlink()  # killed while checkpoint-6 was written
    for part in (folder / "checkpoint-6").glob("*.pt"):
        part.unlink()
    resumed = run(tmp_path / "a", data, resume=True, save_steps=3, max_steps=7).metrics["train"]
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["steps"] == 7
    limited = run(tmp_path / "b", data, save_steps=2, save_total_limit=1)
    assert [p.name for p in (tmp_path / "b" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-6"]
    assert limited.metrics["train"]["steps"] == 6


def test_a_fresh_run_does_not_silently_take_over_an_interrupted_runs_checkpoints(
        tmp_path: Path, fake_model: Path) -> None:
    recipe = write_recipe(tmp_path / "r", {"name": "t", "adapter": {"method": "lora"},
                                           "train": {"data": "austen_instruct.jsonl", "save_steps": 2}})
    (tmp_path / ".out.checkpoints" / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"interrupted run.*--resume.*--force"):
        apply_recipe(recipe, model=fake_model, output=tmp_path / "out", dry_run=True, quiet=True)
    for flags in ({"resume": True}, {"force": True}):
        apply_recipe(recipe, model=fake_model, output=tmp_path / "out", dry_run=True, quiet=True, **flags)
    assert (tmp_path / ".out.checkpoints" / "checkpoint-4").is_dir()  # a dry run deletes nothing


# -- 7. trust_remote_code ----------------------------------------------------------------------


def test_a_model_that_ships_code_is_refused_without_a_prompt(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    ran = tmp_path / "code-ran"
    (folder / "evil_model.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil-arch", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoConfig": "evil_model.EvilConfig", "AutoModelForCausalLM": "evil_model.EvilForCausalLM",
                     "AutoTokenizer": ["evil_model.EvilTokenizer", None]}}))
    asked: list[str] = []

    def answer_yes(prompt: str = "") -> str:
        asked.append(prompt)
        return "y"

    monkeypatch.setattr(builtins, "input", answer_yes)
    recipe = write_recipe(tmp_path / "r")
    with pytest.raises(TunekitError, match="trust_remote_code"):
        apply_recipe(recipe, model=folder, output=tmp_path / "out", quiet=True)
    with pytest.raises(TunekitError, match="trust_remote_code"):
        apply_recipe(recipe, model=folder, output=tmp_path / "out", dry_run=True, quiet=True)
    assert asked == [] and not ran.exists() and not (tmp_path / "out").exists()


def test_the_load_itself_passes_trust_remote_code_explicitly(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the up-front check (a config without auto_map), transformers still never gets None."""
    import transformers

    from tunekit.core.context import StageContext
    from tunekit.core.recipe_model import Recipe
    from tunekit.run.load import stage_load

    seen: list[object] = []

    def record(path: str, **kwargs: object) -> object:
        seen.append(kwargs.get("trust_remote_code", "absent"))
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record)
    ctx = StageContext(recipe=Recipe.model_validate({"model": {"trust_remote_code": True}}), model_path=tmp_path)
    with pytest.raises(TunekitError):
        stage_load(None, None, ctx)
    ctx.recipe = Recipe.model_validate({})
    with pytest.raises(TunekitError):
        stage_load(None, None, ctx)
    assert seen == [True, False]


# -- 10. input files against the recipe's folder, checked before loading -----------------------


def test_recipe_paths_are_read_from_the_recipe_folder(tmp_path: Path, fake_model: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.core.recipe import load_recipe

    folder = tmp_path / "project"
    recipe = write_recipe(folder, {"name": "t", "adapter": {"method": "lora"}, "train": {"data": "data/t.txt"},
                                   "eval": {"data": "held-out.txt"}})
    (folder / "data").mkdir()
    (folder / "data" / "t.txt").write_text("some text\n")
    (folder / "held-out.txt").write_text("other text\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_recipe(recipe).recipe
    assert loaded.train is not None and loaded.train.data == str(folder / "data" / "t.txt")
    assert loaded.eval.data == str(folder / "held-out.txt")
    apply_recipe(recipe, model=fake_model, output=tmp_path / "out", dry_run=True, quiet=True)
    shipped = load_recipe(recipe, overrides=["train.data=austen_instruct.jsonl"]).recipe
    assert shipped.train is not None and shipped.train.data == "austen_instruct.jsonl"


@pytest.mark.parametrize("key", ["train.data", "eval.data", "eval.references"])
def test_dry_run_checks_every_input_file(key: str, tmp_path: Path, fake_model: Path) -> None:
    section, field = key.split(".")
    data: dict = {"name": "t", "adapter": {"method": "lora"}, "train": {"data": "austen_instruct.jsonl"}}
    data.setdefault(section, {})[field] = "missing.jsonl"
    recipe = write_recipe(tmp_path / "r", data)
    result = CliRunner().invoke(cli, ["apply", str(recipe), "--model", str(fake_model), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert key in result.output and str(tmp_path / "r" / "missing.jsonl") in result.output


def test_a_slow_plugin_import_is_named_with_the_switch_that_skips_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import fake_plugins

    from tunekit.core import registry as plugins

    slow = fake_plugins.FakePlugin("slowpoke", "tk_fake_slow", "tunekit-slow", "0.1",
                                   "import time\ntime.sleep(0.3)\n")
    fake_plugins.install(monkeypatch, tmp_path, [slow])
    monkeypatch.setattr(plugins, "SLOW_IMPORT_S", 0.2)
    plugins.load_registry()
    err = capsys.readouterr().err
    assert "plugin 'slowpoke' (tunekit-slow 0.1)" in err and "TUNEKIT_DISABLE_PLUGINS=slowpoke" in err
