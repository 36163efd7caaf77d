"""CLUENER2020 (CLUE's Chinese NER) as a task of the ner kind: CLUE's JSON lines become
character words with B-/I- tags, scored by entity F1."""

import json

import pytest
from helpers import FIXTURES, finetune

from llmkit.errors import UserError
from llmkit.metrics import EntityMetric
from llmkit.tasks.ner.data import read_cluener

CLUENER = FIXTURES / "clue" / "cluener_public"


def test_entities_become_character_tags(tmp_path):
    first = read_cluener(CLUENER / "train.json")[0]
    assert "".join(first["tokens"]) == "张伟在华为公司担任工程师，每天坐地铁去深圳上班。"
    assert first["tags"][:8] == [
        "B-name", "I-name", "O", "B-company", "I-company", "I-company", "I-company", "O",
    ]  # fmt: skip
    # whitespace is no word: an entity with a space inside stays one entity
    path = tmp_path / "dev.json"
    label = {"name": {"Mark Rowswell": [[2, 14]]}}
    path.write_text(json.dumps({"text": "演员Mark Rowswell来了", "label": label}) + "\n")
    row = read_cluener(path)[0]
    assert row["tokens"][2:6] == ["M", "a", "r", "k"] and " " not in row["tokens"]
    assert row["tags"][2:14] == ["B-name"] + ["I-name"] * 11 and row["tags"][14] == "O"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"text": "张伟来了"}, "has no 'label' field"),
        ({"text": "张伟来了", "label": {"person": {"张伟": [[0, 1]]}}}, "'person' is outside"),
        ({"text": "张伟来了", "label": {"name": {"张伟": [[1, 2]]}}}, "is not at characters 1..2"),
        ({"label": {}}, "has no 'text' field"),
    ],
)
def test_bad_rows_are_user_errors(tmp_path, row, expected):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=expected):
        read_cluener(path)


def test_an_empty_file_is_a_user_error(tmp_path):
    (tmp_path / "train.json").write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        read_cluener(tmp_path / "train.json")


def test_a_chinese_bert_fine_tunes_on_cluener(chinese_mlm, tmp_path):
    out = tmp_path / "cluener"
    result, summary = finetune(
        "ner-cluener",
        out,
        f"model.path={chinese_mlm}",
        f"task.data_dir={CLUENER.parent}",
        "train.epochs=5",
        "train.batch_size=8",
        "train.lr=1e-3",
        "train.log_every=1",
    )
    assert result.exit_code == 0, result.output
    sentences = (out / "dev_predictions.conll").read_text(encoding="utf-8").split("\n\n")
    gold, guess = [], []
    for sentence in filter(None, (s.strip() for s in sentences)):
        columns = [line.split(" ") for line in sentence.splitlines()]
        gold.append([c[1] for c in columns])
        guess.append([c[2] for c in columns])
    assert len(gold) == summary["eval_examples"] == 8
    scores = EntityMetric(keep_in_memory=True).compute(predictions=guess, references=gold)
    assert summary["eval_f1"] == pytest.approx(scores["f1"])
    assert summary["eval_entities"] == sum(t.startswith("B-") for s in gold for t in s) == 16
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert sum(losses[-3:]) < sum(losses[:3])
