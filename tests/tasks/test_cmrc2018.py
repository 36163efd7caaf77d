"""CMRC 2018 (CLUE's Chinese reading comprehension) as a task of the qa kind: SQuAD's layout,
CMRC's own scoring (characters, punctuation stripped, the longest common run)."""

import json

import pytest
from helpers import FIXTURES, finetune

from llmkit.metrics import QaMetric, cmrc_tokens
from llmkit.recipe import load_recipe
from llmkit.tasks.qa.data import split_source
from llmkit.tasks.splits import load_splits

CMRC = FIXTURES / "clue" / "cmrc2018_public"


def scores(predictions, references):
    metric = QaMetric(config_name="cmrc2018", keep_in_memory=True)
    return metric.compute(predictions=predictions, references=references)


def test_mixed_segmentation_splits_characters_and_keeps_latin_words():
    assert cmrc_tokens("我们用 PyTorch 训练BERT模型，2026年！") == [
        "我", "们", "用", "pytorch", "训", "练", "bert", "模", "型", "2026", "年",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("prediction", "truths", "exact", "f1"),
    [
        ("六千三百公里。", ["六千三百公里"], 1.0, 1.0),  # punctuation stripped
        ("约六千三百公里", ["六千三百公里"], 0.0, 12 / 13),  # P 6/7, R 6/6
        ("BERT模型，2026年", ["bert 模型"], 0.0, 0.75),  # P 3/5 (bert 模 型), R 3/3
        # the longest common run, not shared characters: 北京 (2 of 4 each way)
        ("上海北京", ["北京上海"], 0.0, 0.5),
        ("四个多小时", ["四个小时", "四个多小时。"], 1.0, 1.0),  # the best reference counts
        ("公里", ["三百五十"], 0.0, 0.0),
    ],
)
def test_cmrc_scores_equal_a_hand_computation(prediction, truths, exact, f1):
    result = scores([prediction], [truths])
    assert result["exact_match"] == pytest.approx(100 * exact)
    assert result["f1"] == pytest.approx(100 * f1)


def test_squad_scoring_differs_where_cmrcs_must():
    squad = QaMetric(config_name="squad", keep_in_memory=True)
    # SQuAD splits at spaces: a Chinese answer is one "word", so one extra character is 0 F1
    assert squad.compute(predictions=["约六千三百公里"], references=[["六千三百公里"]])["f1"] == 0
    assert scores(["约六千三百公里"], [["六千三百公里"]])["f1"] > 90


def test_cmrc_reads_from_clues_layout():
    recipe = load_recipe("qa-cmrc2018", [f"task.data_dir={CMRC.parent}"])
    splits = load_splits(split_source(recipe.task), eval_only=False)
    assert len(splits.train) == 14 and len(splits.dev) == 7
    first = splits.dev[0]
    assert first["id"] == "DEV_0_QUERY_0" and first["answers"]["text"] == ["一千三百多公里"]
    start = first["answers"]["answer_start"][0]
    assert first["context"][start : start + 7] == "一千三百多公里"


def test_a_chinese_bert_fine_tunes_on_cmrc2018(chinese_mlm, tmp_path):
    out = tmp_path / "cmrc"
    result, summary = finetune(
        "qa-cmrc2018",
        out,
        f"model.path={chinese_mlm}",
        f"task.data_dir={CMRC.parent}",
        "task.max_length=64",
        "task.doc_stride=16",
        "train.epochs=2",
        "train.batch_size=8",
    )
    assert result.exit_code == 0, result.output
    predicted = json.loads((out / "dev_predictions.json").read_text(encoding="utf-8"))
    dev = json.loads((CMRC / "dev.json").read_text(encoding="utf-8"))
    questions = [q for a in dev["data"] for p in a["paragraphs"] for q in p["qas"]]
    assert sorted(predicted) == sorted(q["id"] for q in questions)
    expected = scores(
        [predicted[q["id"]] for q in questions],
        [[answer["text"] for answer in q["answers"]] for q in questions],
    )
    assert summary["eval_f1"] == pytest.approx(expected["f1"])
    assert summary["eval_exact_match"] == pytest.approx(expected["exact_match"])
    assert summary["eval_examples"] == 7
