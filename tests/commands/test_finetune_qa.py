"""qa/squad end to end: fine-tune on real SQuAD questions, score with the official
definitions, and answer through `llmkit answer` with the same windows."""

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest
from helpers import built_once, json_line, set_args
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.tasks.qa.data import read_squad_json

runner = CliRunner()
SQUAD = Path(__file__).parents[1] / "fixtures" / "squad"


def official_scores(dataset_file: Path, predictions: dict[str, str]) -> tuple[float, float]:
    """SQuAD v1.1's evaluate-v1.1.py, written out again from its definition."""

    def normal(text):
        text = "".join(c for c in text.lower() if c not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())

    def f1(prediction, truth):
        p, t = normal(prediction).split(), normal(truth).split()
        same = sum((Counter(p) & Counter(t)).values())
        return 0.0 if same == 0 else 2 * same / (len(p) + len(t))

    exact = total = count = 0.0
    for article in json.loads(dataset_file.read_text())["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                truths = [a["text"] for a in qa["answers"]]
                exact += max(normal(predictions[qa["id"]]) == normal(t) for t in truths)
                total += max(f1(predictions[qa["id"]], t) for t in truths)
                count += 1
    return 100 * exact / count, 100 * total / count


@pytest.fixture(scope="session")
def squad_run(trained_mlm, tmp_path_factory):
    def finetune(out):
        args = ["finetune", "--recipe", "qa-squad", "-o", str(out), "--json"]
        args += set_args(
            [
                f"model.path={trained_mlm}",
                f"task.train_file={SQUAD / 'train.json'}",
                f"task.validation_file={SQUAD / 'dev.json'}",
                "task.max_train_examples=400",
                "task.doc_stride=16",
                "train.epochs=2",
                "train.batch_size=16",
                "train.lr=1e-3",
                "train.log_every=10",
            ]
        )
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return json_line(result.stdout)

    return built_once(tmp_path_factory, "squad-run", finetune)


def test_squad_fine_tuning_learns_and_reports_the_official_scores(squad_run):
    out, summary = squad_run
    assert summary["task"] == "qa/squad" and summary["train_examples"] == 400
    assert summary["eval_examples"] == 108 and summary["eval_windows"] > 108
    losses = [
        e["loss"]
        for e in json.loads((out / "trainer_state.json").read_text())["log_history"]
        if "loss" in e
    ]
    assert losses[-1] < 0.6 * losses[0]
    predictions = json.loads((out / "dev_predictions.json").read_text())
    assert len(predictions) == 108
    exact, f1 = official_scores(SQUAD / "dev.json", predictions)
    assert summary["eval_exact_match"] == pytest.approx(exact)
    assert summary["eval_f1"] == pytest.approx(f1)
    # every prediction is a piece of its own context
    contexts = {row["id"]: row["context"] for row in read_squad_json(SQUAD / "dev.json")}
    assert all(answer in contexts[key] for key, answer in predictions.items())
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "BertForQuestionAnswering"
    ]


def test_answer_gives_the_answer_evaluation_gave(squad_run):
    out, _ = squad_run
    predictions = json.loads((out / "dev_predictions.json").read_text())
    for row in read_squad_json(SQUAD / "dev.json").select(range(3)):
        result = runner.invoke(
            app,
            ["answer", "-m", str(out), "-q", row["question"], "-c", row["context"], "--json"],
        )
        assert result.exit_code == 0, result.output
        assert json_line(result.stdout)["answer"] == predictions[row["id"]]


def test_answer_windows_default_to_the_runs_and_flags_override_them(squad_run):
    out, _ = squad_run
    row = read_squad_json(SQUAD / "dev.json")[0]
    ask = ["answer", "-m", str(out), "-q", row["question"], "-c", row["context"], "--json"]
    default = runner.invoke(app, ask)
    finer = runner.invoke(app, [*ask, "--doc-stride", "8", "--max-length", "48"])
    assert default.exit_code == finer.exit_code == 0, default.output + finer.output
    default, finer = (json_line(r.stdout) for r in (default, finer))
    assert (default["window_tokens"], default["doc_stride"]) == (64, 16)  # the run's recipe
    assert (finer["window_tokens"], finer["doc_stride"]) == (48, 8)
    assert finer["windows"] > default["windows"]


def test_answer_top_k_from_a_context_file(squad_run, tmp_path):
    out, _ = squad_run
    context = tmp_path / "context.txt"
    context.write_text(read_squad_json(SQUAD / "dev.json")[0]["context"])
    result = runner.invoke(
        app,
        [
            "answer",
            "-m",
            str(out),
            "-q",
            "Where did it start?",
            "--context-file",
            str(context),
            "--top-k",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    answers = json_line(result.stdout)["answers"]
    assert len(answers) == 3
    assert answers[0]["score"] >= answers[1]["score"] >= answers[2]["score"]
    assert all(context.read_text()[a["start"] : a["end"]] == a["answer"] for a in answers)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-q", "Who?"], "either with --context or with --context-file"),
        (["-q", "Who?", "--context-file", "missing.txt"], "does not exist"),
        (["-q", "  ", "-c", "text"], "question is empty"),
        (["-q", "Who?", "-c", "text", "--max-length", "4"], "--max-length must be at least 8"),
    ],
)
def test_answer_input_errors_exit_2(squad_run, args, message):
    out, _ = squad_run
    result = runner.invoke(app, ["answer", "-m", str(out), *args])
    assert result.exit_code == 2 and message in result.output


def test_answer_with_a_model_that_is_not_qa_exits_2(trained_mlm):
    result = runner.invoke(app, ["answer", "-m", str(trained_mlm), "-q", "Who?", "-c", "Me."])
    assert result.exit_code == 2 and "not an extractive QA model" in result.output


def test_a_stride_too_long_for_the_model_exits_2(trained_mlm, tmp_path):
    args = ["finetune", "--recipe", "qa-squad", "-o", str(tmp_path / "x")]
    args += set_args(
        [
            f"model.path={trained_mlm}",
            f"task.train_file={SQUAD / 'train.json'}",
            f"task.validation_file={SQUAD / 'dev.json'}",
        ]
    )
    result = runner.invoke(app, args)  # the recipe's stride 128 against 64 positions
    assert result.exit_code == 2 and "task.doc_stride" in result.output
    assert not (tmp_path / "x").exists()


def test_a_missing_validation_split_is_named(trained_mlm, tmp_path):
    args = ["finetune", "--recipe", "qa-squad", "-o", str(tmp_path / "x")]
    args += set_args(
        [
            f"model.path={trained_mlm}",
            f"task.train_file={SQUAD / 'train.json'}",
            "task.doc_stride=16",
        ]
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert (
        "no validation data for qa/squad" in result.output
        and "task.validation_file" in result.output
    )
