"""ner/conll end to end on the hand-made CoNLL fixture (CoNLL-2003 itself cannot be shipped)."""

import json
from pathlib import Path

import pytest
from helpers import finetune
from seqeval.metrics import f1_score
from typer.testing import CliRunner

runner = CliRunner()
CONLL = Path(__file__).parents[1] / "fixtures" / "conll"


def data(*extra):
    return [
        f"task.train_file={CONLL / 'train.txt'}",
        f"task.validation_file={CONLL / 'valid.txt'}",
        *extra,
    ]


def test_ner_learns_entities_and_reports_seqeval_f1(trained_mlm, tmp_path):
    # Measured: entity F1 0.65 after 75 steps (0.6 s); the untrained head scores ~0.
    result, summary = finetune(
        "ner-conll",
        tmp_path / "ner",
        f"model.path={trained_mlm}",
        *data("train.epochs=3", "train.batch_size=16", "train.lr=2e-3"),
    )
    assert result.exit_code == 0, result.output
    assert summary["task"] == "ner/conll" and summary["eval_examples"] == 80
    assert summary["eval_f1"] > 0.4
    config = json.loads((tmp_path / "ner" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"]["0"] == "O" and len(config["id2label"]) == 9
    # the written predictions give the same F1 through seqeval
    sentences = (tmp_path / "ner" / "dev_predictions.conll").read_text().strip().split("\n\n")
    gold = [[line.split()[1] for line in s.splitlines()] for s in sentences]
    guess = [[line.split()[2] for line in s.splitlines()] for s in sentences]
    assert len(gold) == 80
    assert summary["eval_f1"] == pytest.approx(f1_score(gold, guess))

    # evaluating the fine-tuned model again gives the same scores
    again, evaluated = finetune(
        "ner-conll",
        tmp_path / "eval",
        f"model.path={tmp_path / 'ner'}",
        *data(),
        extra=["--eval-only"],
    )
    assert again.exit_code == 0, again.output
    assert evaluated["eval_f1"] == pytest.approx(summary["eval_f1"])

    untrained, baseline = finetune(
        "ner-conll", tmp_path / "base", f"model.path={trained_mlm}", *data(), extra=["--eval-only"]
    )
    assert untrained.exit_code == 0, untrained.output
    assert baseline["eval_f1"] < summary["eval_f1"] - 0.3


def test_unknown_tags_in_the_evaluation_data_exit_2(trained_mlm, tmp_path):
    odd = tmp_path / "valid.txt"
    odd.write_text("Ada B-PERSON\nwrote O\n")
    result, _ = finetune(
        "ner-conll",
        tmp_path / "x",
        f"model.path={trained_mlm}",
        f"task.train_file={CONLL / 'train.txt'}",
        f"task.validation_file={odd}",
    )
    assert result.exit_code == 2 and "B-PERSON" in result.output
