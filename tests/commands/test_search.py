"""`llmkit sweep` as a search (Optuna): spaces checked before anything runs, a study that
prunes and reports, continues after a kill, runs trials in parallel, and averages seeds."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from helpers import TINY_MODEL, set_args
from transformers import TrainerControl, TrainerState, TrainingArguments

from llmkit.errors import UserError
from llmkit.search.space import parse_space
from llmkit.search.study import PRUNED_FILE, good_share, load_search, make_pruner
from llmkit.search.trial import TrialReporter

TINY_SEARCH = [*TINY_MODEL, "model.layers=1", "train.max_steps=6", "train.eval_every=2"]
# 33 held-out blocks: enough to rank the trials, and each of a trial's evaluations is quick
TINY_SEARCH += ["train.batch_size=8", "data.validation_fraction=0.005"]


def sweep_args(folder, trained_clm, *args):
    overrides = [*TINY_SEARCH, f"tokenizer.path={trained_clm}"]
    line = ["sweep", "pretrain-clm", "-r", "gpt2-tiny", "-o", str(folder)]
    return [*line, *set_args(overrides), *args]  # the test's own --set last: it wins


def study_of(folder):
    return optuna.load_study(storage=f"sqlite:///{folder / 'study.db'}", study_name="sweep")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("train.lr=loguniform:0:1", "loguniform needs LOW above 0"),
        ("train.lr=loguniform:1e-2:1e-4", "must be below HIGH"),
        ("model.layers=choice:", "choice needs at least one value"),
        ("model.layers=int:1.5:4", "whole numbers"),
        ("train.lr=logunifrom:1e-4:1e-2", "did you mean 'loguniform'"),
        ("train.lr=uniform:1e-4", "takes LOW:HIGH"),
        ("train.lr", "is not KEY=KIND:ARGS"),
        ("train.lr=uniform:a:1", "'a' is not a number"),
    ],
)
def test_bad_spaces_are_errors(spec, expected):
    with pytest.raises(UserError, match=expected):
        parse_space(spec)


def test_spaces_parse():
    assert parse_space("train.lr=loguniform:1e-5:1e-2").low == 1e-5
    assert parse_space("model.layers=int:2:6").grid_values() == [2, 3, 4, 5, 6]
    assert parse_space("train.schedule=choice:cosine, linear").choices == ("cosine", "linear")
    with pytest.raises(UserError, match="--search grid needs values to list"):
        parse_space("train.lr=uniform:0:1").grid_values()


def test_tpe_models_the_best_quarter_of_the_trials():
    # a dozen trials: the best 3 (Optuna's default tenth would be the single best one)
    assert [good_share(n) for n in (1, 4, 12, 40)] == [1, 1, 3, 10]
    assert good_share(1000) == 25


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--space", "train.lrr=uniform:0.001:0.002"], "unknown recipe key 'train.lrr'"),
        (["--space", "train.lr=uniform:-1:0.002"], "recipe key 'train.lr'"),
        (["--space", "train.lr=uniform:0.001:0.002", "--search", "bayes"], "--search bayes"),
        (["--space", "train.lr=uniform:0.001:0.002", "--search", "grid"], "needs values to list"),
        (
            [
                "--space",
                "train.lr=uniform:0.001:0.002",
                "--prune",
                "median",
                "--set",
                "train.eval_every=null",
            ],
            "--prune compares",
        ),
    ],
)
def test_a_search_is_checked_before_any_trial_runs(trained_clm, tmp_path, cli, args, expected):
    result, _ = cli(*sweep_args(tmp_path / "s", trained_clm, *args))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_the_reporter_prunes_a_trial_behind_the_median(tmp_path):
    """A trial's process reports each evaluation; behind the median of the finished trials at
    the same step, training stops and the run is marked."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="sweep", pruner=make_pruner("median"))
    for value in (1.0, 1.2):
        trial = study.ask()
        trial.report(value, 2)
        study.tell(trial, value)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    for value, pruned in ((0.9, False), (3.0, True)):  # ahead of the median, then behind it
        trial = study.ask()
        reporter = TrialReporter(storage, trial._trial_id, "eval_loss", "median")
        control = TrainerControl()
        reporter.on_evaluate(
            args, TrainerState(global_step=2), control, metrics={"eval_loss": value}
        )
        assert control.should_training_stop == pruned
        assert (tmp_path / PRUNED_FILE).is_file() == pruned
    assert json.loads((tmp_path / PRUNED_FILE).read_text()) == {"step": 2, "eval_loss": 3.0}


@pytest.mark.slow
def test_a_grid_search_prunes_the_hopeless_trial_and_reports_the_best(trained_clm, tmp_path, cli):
    folder = tmp_path / "s"
    args = ["--search", "grid", "--grid", "train.lr=0.003,0.002,1e-07", "--prune", "median"]
    result, summary = cli(*sweep_args(folder, trained_clm, *args, "--json"))
    assert result.exit_code == 0, result.output
    assert [o["status"] for o in summary["outcomes"]] == ["ran", "ran", "pruned"]
    pruned = folder / "trial-002"
    assert (pruned / PRUNED_FILE).is_file()
    metrics = json.loads((pruned / "metrics.json").read_text())
    assert metrics["steps"] < 6 and "eval_loss" in metrics  # stopped early, evaluation kept
    best = summary["best"]
    run = json.loads((folder / best["trial"] / "metrics.json").read_text())
    assert best["eval_loss"] == run["eval_loss"]
    finished = [json.loads((folder / f"trial-00{i}" / "metrics.json").read_text()) for i in (0, 1)]
    assert run["eval_loss"] == min(m["eval_loss"] for m in finished)
    assert "--set train.lr=" in best["command"]
    report = summary["report"]
    assert {row[1] for row in report["rows"]} == {"finished", "pruned"}
    assert any(p.endswith("history.png") for p in report["plots"])
    assert any(p.endswith("metric_by_train_lr.png") for p in report["plots"])


@pytest.mark.slow
def test_a_killed_search_continues_the_same_study(trained_clm, tmp_path):
    folder = tmp_path / "s"
    line = sweep_args(folder, trained_clm, "--space", "train.lr=loguniform:1e-4:3e-3")
    line += ["--trials", "2", "--seed", "1"]
    command = [sys.executable, "-m", "llmkit", *line]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (folder / "trial-001" / "recipe.yaml").is_file():  # the second trial has started
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = (folder / "trial-000" / "metrics.json").stat().st_mtime_ns
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    study = study_of(folder)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1  # the killed one
    assert (folder / "trial-000" / "metrics.json").stat().st_mtime_ns == first  # not run again
    runs = sorted(folder.glob("trial-*"))
    assert len(runs) == 2 and all((run / "metrics.json").is_file() for run in runs)
    killed = next(t for t in study.trials if t.state.name == "FAIL")
    again = [
        t
        for t in study.trials
        if t.user_attrs.get("run_dir") == "trial-001" and t.state.name == "COMPLETE"
    ]
    assert len(again) == 1 and again[0].params == killed.params  # re-run with its parameters


@pytest.mark.slow
def test_parallel_trials_run_at_once_in_their_own_folders(trained_clm, tmp_path, cli):
    folder = tmp_path / "s"
    args = ["--space", "train.lr=loguniform:1e-4:3e-3", "--trials", "2", "--parallel", "2"]
    result, summary = cli(*sweep_args(folder, trained_clm, *args, "--json"))
    assert result.exit_code == 0, result.output
    # The study's clock: a trial starts when the driver hands it to a slot and ends when its
    # process has finished. (The run folders' file times said the same less reliably: a
    # process spends most of its 2-second life importing before it writes recipe.yaml.)
    a, b = load_search(folder).trials
    assert a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
    assert {a.user_attrs["run_dir"], b.user_attrs["run_dir"]} == {"trial-000", "trial-001"}
    assert summary["ran"] == 2 and summary["search"] == "tpe"
    # The study's best trial is the run directory whose metrics.json has the best eval_loss.
    losses = {
        n: json.loads((folder / n / "metrics.json").read_text())["eval_loss"]
        for n in ("trial-000", "trial-001")
    }
    best = summary["best"]
    assert best["trial"] == min(losses, key=losses.get)
    assert best["eval_loss"] == losses[best["trial"]]


@pytest.mark.slow
def test_seeds_rank_each_point_by_its_mean(trained_clm, tmp_path, cli):
    folder = tmp_path / "s"
    args = ["--grid", "train.lr=0.002", "--seeds", "2"]
    result, summary = cli(*sweep_args(folder, trained_clm, *args, "--json"))
    assert result.exit_code == 0, result.output
    losses = [
        json.loads((folder / "trial-000" / f"seed-{i}" / "metrics.json").read_text())["eval_loss"]
        for i in (0, 1)
    ]
    assert losses[0] != losses[1]  # the seeds differ
    (outcome,) = summary["outcomes"]
    assert outcome["value"] == pytest.approx(sum(losses) / 2)
    assert outcome["std"] > 0
    header, (row,) = summary["report"]["header"], summary["report"]["rows"]
    assert header[-1] == "± std" and row[-1] == pytest.approx(outcome["std"])
