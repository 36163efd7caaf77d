"""`llmkit serve` with the runs that do not generate, live on 127.0.0.1: each task endpoint
answers what the command line gives for the same input — fill-mask as `llmkit generate`, a
GLUE classifier as its run's dev predictions, QA (a LoRA run, served merged) as
`llmkit answer`, NER as its run's dev predictions."""

import csv

import pytest
from helpers import FIXTURES, set_args
from live import LiveServer


def rounded(records: list[dict]) -> list[dict]:
    """Scores to 5 decimals: the server and the command compute them in different batches."""
    return [{k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in records]


def served(model, checks):
    live = LiveServer(model)
    try:
        checks(live)
    finally:
        live.stop()


def test_fill_mask_equals_generate(trained_mlm, cli):
    text = "The game was [MASK] in Japan ."
    _, generated = cli("generate", "-m", str(trained_mlm), "-p", text, "--top-k", "3", "--json")

    def checks(live):
        answer = live.post("/v1/fill-mask", {"text": text, "top_k": 3}).json()
        assert rounded(answer["fills"]) == rounded(generated["results"][0]["fills"])
        missing = live.post("/v1/fill-mask", {"text": "no mask here"})
        assert missing.status_code == 400 and "[MASK]" in missing.json()["error"]["message"]
        other = live.post("/v1/completions", {"prompt": "The"})
        assert other.status_code == 404 and "/v1/fill-mask" in other.json()["error"]["message"]

    served(trained_mlm, checks)


def test_chinese_fills_come_back_as_chinese_is_written(chinese_mlm, cli):
    text = "春天来了，公园里的[MASK]开得很美。"
    _, generated = cli("generate", "-m", str(chinese_mlm), "-p", text, "--json")

    def checks(live):
        fills = live.post("/v1/fill-mask", {"text": text}).json()["fills"]
        assert rounded(fills) == rounded(generated["results"][0]["fills"])
        for fill in fills:  # no space put between CJK characters
            assert fill["sequence"] == text.replace("[MASK]", fill["token"])

    served(chinese_mlm, checks)


def glue_run(cli, base, out, recipe: str, folder: str, steps: int) -> list[dict]:
    """A GLUE run fine-tuned from `base` on the fixture `folder`: the dev rows it predicted."""
    overrides = [f"model.path={base}", f"task.data_dir={FIXTURES / 'glue' / folder}"]
    overrides += [f"train.max_steps={steps}", "train.lr=1e-3"]
    result, _ = cli("finetune", "-r", recipe, "-o", str(out), *set_args(overrides))
    assert result.exit_code == 0, result.output
    with (FIXTURES / "glue" / folder / "dev.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_classify_equals_the_runs_dev_predictions(trained_mlm, tmp_path, cli):
    out = tmp_path / "sst2"
    sentences = [
        row["sentence"] for row in glue_run(cli, trained_mlm, out, "glue-sst2", "SST-2", 30)
    ]
    with (out / "dev_predictions.tsv").open() as f:
        predicted = [row["prediction"] for row in csv.DictReader(f, delimiter="\t")]

    def checks(live):
        answer = live.post("/v1/classify", {"text": sentences}).json()
        labels = [r["label"] for r in answer["results"]]
        assert labels == predicted and len(set(labels)) >= 1
        for result in answer["results"]:
            scores = [label["score"] for label in result["labels"]]
            assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1)

    served(out, checks)


def test_answer_of_a_lora_run_equals_llmkit_answer(qa_lora_run, cli):
    out = qa_lora_run
    question, context = "Who wrote it?", "The book was written by Ann Lee in 1990 ."
    _, expected = cli(
        "answer", "-m", str(out), "-q", question, "-c", context, "--top-k", "3", "--json"
    )

    def checks(live):
        answer = live.post("/v1/answer", {"question": question, "context": context, "top_k": 3})
        assert rounded(answer.json()["answers"]) == rounded(expected["answers"])
        empty = live.post("/v1/answer", {"question": " ", "context": context})
        assert empty.status_code == 400 and "question is empty" in empty.json()["error"]["message"]

    served(out, checks)


def test_entities_equal_the_runs_dev_predictions(trained_mlm, tmp_path, cli):
    conll = FIXTURES / "conll"
    out = tmp_path / "ner"
    overrides = [f"model.path={trained_mlm}", f"task.train_file={conll / 'train.txt'}"]
    overrides += [
        f"task.validation_file={conll / 'valid.txt'}",
        "train.max_steps=40",
        "train.lr=2e-3",
    ]
    result, _ = cli("finetune", "-r", "ner-conll", "-o", str(out), *set_args(overrides))
    assert result.exit_code == 0, result.output
    sentences = [s for s in (out / "dev_predictions.conll").read_text().split("\n\n") if s.strip()]
    cases = []
    for sentence in sentences[:20]:
        rows = [line.split(" ") for line in sentence.splitlines()]  # word, gold, predicted
        words, tags = [r[0] for r in rows], [r[2] for r in rows]
        cases.append((" ".join(words), words, tags))

    def checks(live):
        for text, words, tags in cases:
            found = live.post("/v1/entities", {"text": text}).json()["entities"]
            # the entities, tagged back onto the words, are the run's predicted tags (an I-
            # that continues no entity of its type starts one, as seqeval reads it)
            starts = [len(" ".join(words[:i])) + (i > 0) for i in range(len(words))]
            rebuilt = ["O"] * len(words)
            for entity in found:
                first = starts.index(entity["start"])
                last = max(i for i, s in enumerate(starts) if s < entity["end"])
                assert text[entity["start"] : entity["end"]] == entity["text"]
                rebuilt[first] = f"B-{entity['label']}"
                for i in range(first + 1, last + 1):
                    rebuilt[i] = f"I-{entity['label']}"
            normal = [
                "B-" + t[2:] if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]) else t
                for i, t in enumerate(tags)
            ]
            assert rebuilt == normal, (text, found, tags)

    served(out, checks)


def test_a_regression_run_gives_the_score_of_its_dev_predictions(trained_mlm, tmp_path, cli):
    out = tmp_path / "stsb"
    rows = glue_run(cli, trained_mlm, out, "glue-stsb", "STS-B", 20)[:16]
    with (out / "dev_predictions.tsv").open() as f:
        predicted = [float(row["prediction"]) for row in csv.DictReader(f, delimiter="\t")][:16]

    def checks(live):
        body = {"text": [r["sentence1"] for r in rows], "text_pair": [r["sentence2"] for r in rows]}
        scores = [r["score"] for r in live.post("/v1/classify", body).json()["results"]]
        assert scores == pytest.approx(predicted, abs=6e-4)  # the file keeps 3 decimals
        assert len(set(scores)) > 1

    served(out, checks)
