"""Sweeps, reports and the shipped-recipe commands, on tiny CPU runs."""

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import TINY_MODEL, built_once, set_args
from matplotlib import colors
from matplotlib import image as mpimg
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.commands.pretrain import run_pretrain
from llmkit.commands.recipes import copy_recipe, list_recipes, recipe_file
from llmkit.commands.report import run_report
from llmkit.commands.sweep import grid_points, parse_grid, run_sweep, shell_lines
from llmkit.errors import UserError
from llmkit.recipe import load_recipe
from llmkit.search.runs import Sweep

GRID = ["train.lr=1e-3,3e-3", "model.layers=1,2"]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]  # matplotlib's first five


def tiny(trained_clm):
    # The session's tokenizer spares each point a tokenizer training.
    return [
        *TINY_MODEL,
        f"tokenizer.path={trained_clm}",
        "train.max_steps=6",
        "train.log_every=2",
        "train.eval_every=3",
        "data.validation_fraction=0.005",  # a few dozen held-out blocks: quick evaluations
    ]


def pixels_of(image: np.ndarray, colour: str) -> int:
    """How many pixels of a PNG are (nearly) exactly `colour`."""
    rgb = np.array(colors.to_rgb(colour))
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.02).sum())


@pytest.fixture(scope="session")
def swept(tmp_path_factory, trained_clm):
    def sweep(folder):
        return run_sweep(
            Sweep("pretrain-clm", "gpt2-tiny", tuple(GRID), tuple(tiny(trained_clm)), folder)
        )

    return built_once(tmp_path_factory, "swept", sweep)


def test_a_two_by_two_sweep_makes_four_runs_and_a_report_of_the_varied_keys(swept):
    folder, summary = swept
    assert summary["ran"] == 4 and summary["failed"] == [] and summary["skipped"] == 0
    # each point's outcome carries the value of the metric that ranks them, from its run
    assert summary["metric"] == "eval_loss"
    for outcome in summary["outcomes"]:
        metrics = json.loads((folder / outcome["point"] / "metrics.json").read_text())
        assert outcome["value"] == metrics["eval_loss"]
    names = sorted(p.name for p in folder.iterdir() if (p / "metrics.json").is_file())
    assert names == [
        "lr=1e-3__layers=1",
        "lr=1e-3__layers=2",
        "lr=3e-3__layers=1",
        "lr=3e-3__layers=2",
    ]
    report = summary["report"]
    assert report["varied"] == ["model.layers", "train.lr"]  # and nothing else differs
    assert report["header"][:3] == ["run", "model.layers", "train.lr"]
    assert {row[1] for row in report["rows"]} == {1, 2}
    assert {row[2] for row in report["rows"]} == {1e-3, 3e-3}
    assert "eval_loss" in report["header"] and "tokens_per_second" in report["header"]
    assert (folder / "report" / "report.md").read_text().count("| lr=") == 4
    card = (folder / names[0] / "README.md").read_text()  # the model card says how to redo it
    assert f"llmkit pretrain-clm --recipe {folder / names[0] / 'recipe.yaml'}" in card


@pytest.mark.parametrize("plot", ["loss_by_step.png", "loss_by_tokens.png"])
def test_the_plots_are_images_with_one_line_per_run(swept, plot):
    folder, _ = swept
    image = mpimg.imread(folder / "report" / plot)  # fails unless it is a real PNG
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    drawn = [pixels_of(image, colour) for colour in PALETTE]
    assert all(count > 100 for count in drawn[:4]), drawn  # the four runs' colours
    assert drawn[4] < 20, drawn  # no fifth line


def test_a_rerun_sweep_skips_finished_points_and_runs_what_is_left(swept, trained_clm, tmp_path):
    folder = Path(shutil.copytree(swept[0], tmp_path / "sweep"))
    (folder / "lr=3e-3__layers=2" / "metrics.json").unlink()  # as if killed before the end
    grid = ("train.lr=1e-3,3e-3,5e-3", "model.layers=2")
    summary = run_sweep(Sweep("pretrain-clm", "gpt2-tiny", grid, tuple(tiny(trained_clm)), folder))
    statuses = {o["point"]: o["status"] for o in summary["outcomes"]}
    assert statuses["lr=1e-3__layers=2"].startswith("skipped")  # finished
    assert statuses["lr=3e-3__layers=2"] == "ran"  # continued
    assert statuses["lr=5e-3__layers=2"] == "ran"  # new
    assert summary["report"]["runs"] == 3


def test_a_failed_point_is_reported_and_the_sweep_goes_on(tmp_path, trained_clm):
    # Positions shorter than the blocks: the second point fails when it builds its model.
    overrides = (*tiny(trained_clm), "model.layers=1")
    summary = run_sweep(
        Sweep("pretrain-clm", "gpt2-tiny", ("model.max_positions=64,16",), overrides, tmp_path)
    )
    assert summary["failed"] == ["max_positions=16"] and summary["ran"] == 1
    failed = next(o for o in summary["outcomes"] if o["status"] == "failed")
    assert failed["exit_code"] == 2
    assert summary["report"]["runs"] == 1


def test_print_gives_one_runnable_line_per_point(tmp_path, trained_clm):
    lines = shell_lines(Sweep("pretrain-clm", "gpt2-tiny", tuple(GRID), output_dir=tmp_path))
    assert len(lines) == 4
    first = shlex.split(lines[0])
    assert first[:4] == ["llmkit", "pretrain-clm", "--recipe", "gpt2-tiny"]
    assert "train.lr=1e-3" in first and "model.layers=1" in first
    assert first[first.index("--output-dir") + 1] == str(tmp_path / "lr=1e-3__layers=1")
    result = CliRunner().invoke(
        app, ["sweep", "pretrain-clm", "-r", "gpt2-tiny", "--grid", GRID[0], "--print"]
    )
    assert result.exit_code == 0 and result.output.count("llmkit pretrain-clm") == 2


def test_random_draws_distinct_points_of_the_grid_reproducibly():
    grid = parse_grid(["a.b=1,2,3", "c.d=x,y,z"])
    drawn = grid_points(grid, sample=4, seed=7)
    assert len(drawn) == len(set(drawn)) == 4
    assert drawn == grid_points(grid, sample=4, seed=7)
    assert len(grid_points(grid)) == 9


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["train.lr"], "is not KEY=V1,V2"),
        (["train.lr=1e-3", "train.lr=2e-3"], "names train.lr twice"),
        ([], "at least one --grid"),
    ],
)
def test_bad_grids_are_user_errors(specs, message):
    with pytest.raises(UserError, match=message):
        parse_grid(specs)


def test_a_command_sweep_cannot_run_is_one_message(tmp_path):
    args = ["sweep", "generate", "-r", "gpt2-tiny", "--grid", "train.lr=1e-3,2e-3"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path)])
    assert result.exit_code == 2 and "sweep runs one of pretrain-clm" in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_bad_key_stops_the_sweep_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match="train.lrr"):
        run_sweep(Sweep("pretrain-clm", "gpt2-tiny", ("train.lrr=1,2",), output_dir=tmp_path))
    assert not any(tmp_path.iterdir())


def test_report_refuses_a_folder_that_is_not_a_finished_run(tmp_path):
    with pytest.raises(UserError, match="not a finished llmkit run"):
        run_report([tmp_path])


def test_recipes_ls_show_and_a_copy_that_runs(tmp_path):
    listing = list_recipes()
    listed = listing["recipes"]
    assert "gpt2-tiny" in listed and "accelerate/fsdp" in listed
    assert listed["gpt2-tiny"].startswith("A tiny GPT-2")
    # each description is the opening comment whole, never cut at the end of its first line
    assert all(text.endswith((".", ").")) for text in listed.values()), listed
    assert listed["bert-base"].endswith("with a 30,522-entry uncased WordPiece.")
    # and every task the registry knows, with a recipe that runs it
    assert listing["tasks"]["qa/squad"].startswith("qa-squad")
    assert listing["tasks"]["glue/sst2"].startswith("glue-sst2, glue-sst2-lora")
    template, how = listing["tasks"]["glue/qqp"].split(" ", 1)
    assert template.startswith("glue-") and how.startswith("--set task.name=glue/qqp")
    runner = CliRunner()
    ls = runner.invoke(app, ["recipes", "ls"])
    assert ls.exit_code == 0 and "ner/conll" in ls.output and "gpt2-tiny" in ls.output
    assert yaml.safe_load(recipe_file("gpt2-tiny").read_text())["model"]["family"] == "gpt2"
    copied = copy_recipe("gpt2-tiny", tmp_path)
    assert copied == tmp_path / "gpt2-tiny.yaml"
    with pytest.raises(UserError, match="already exists"):
        copy_recipe("gpt2-tiny", tmp_path)
    recipe = load_recipe(str(copied), [*TINY_MODEL, "train.max_steps=3", "train.eval_every=3"])
    summary = run_pretrain(recipe, "clm", output_dir=tmp_path / "run")
    assert summary["steps"] == 3
    shown = runner.invoke(app, ["recipes", "show", "gpt2-tiny"])
    assert shown.exit_code == 0 and "family: gpt2" in shown.output
    missing = runner.invoke(app, ["recipes", "show", "gpt2-tiyn"])
    assert missing.exit_code == 2 and "did you mean" in missing.output.lower()


def test_help_shows_the_search_spaces_as_typed():
    """rich reads `:A:` as an emoji code; the help must show the text itself."""
    shown = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"}).output
    assert "loguniform:LOW:HIGH" in shown and "\U0001f170" not in shown


def test_report_writes_where_dash_o_says(swept, tmp_path):
    folder, _ = swept
    runs = [str(p) for p in sorted(folder.glob("lr=*"))]
    result = CliRunner().invoke(app, ["report", *runs, "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.md").is_file()


def test_report_tells_same_named_runs_apart_and_cuts_no_column(swept, tmp_path):
    folder, _ = swept
    first, second = sorted(folder.glob("lr=*"))[:2]
    for parent, run in (("a", first), ("b", second)):
        shutil.copytree(run, tmp_path / parent / "run")
    runs = [str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    result = CliRunner().invoke(app, ["report", *runs, "-o", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row[0] for row in summary["rows"]] == ["a/run", "b/run"]
    assert "a/run" in (tmp_path / "r" / "report.md").read_text()
    # the table (on stderr with --json) is as wide as its columns: no header cut short
    assert all(column in result.stderr for column in summary["header"]), result.stderr
    assert "…" not in result.stderr


def test_every_command_help_shows_an_example():
    from llmkit.commands import VERBS

    runner = CliRunner()
    for verb in VERBS:
        result = runner.invoke(app, [*verb.name.split(), "--help"])
        assert result.exit_code == 0 and "Example" in result.output, verb.name
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


def test_cli_sweep_exits_1_when_a_point_failed(tmp_path, trained_clm):
    args = ["sweep", "pretrain-clm", "-r", "gpt2-tiny", "-o", str(tmp_path)]
    args += ["--grid", "model.max_positions=16"]
    args += set_args([*tiny(trained_clm), "model.layers=1"])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "1 of 1 points failed" in result.output


@pytest.mark.skipif(shutil.which("jq") is None, reason="examples/sweep.sh uses jq")
def test_the_shell_sweep_example_runs_and_reports(tmp_path, trained_clm):
    script = Path(__file__).resolve().parents[2] / "examples" / "sweep.sh"
    args = [*TINY_MODEL, f"tokenizer.path={trained_clm}", "data.validation_fraction=0.005"]
    args = shlex.join(set_args(args))
    env = {**os.environ, "STEPS": "4", "OUT": str(tmp_path / "sweep"), "ARGS": args, "LAYERS": "1"}
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 2 and all(json.loads(row)["steps"] == 4 for row in rows)
    assert (tmp_path / "sweep" / "report" / "loss_by_step.png").is_file()
