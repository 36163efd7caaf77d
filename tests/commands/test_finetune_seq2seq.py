"""seq2seq/* end to end: tiny T5 and BART models built from recipes, trained, scored with
ROUGE / sacreBLEU, and used by `llmkit generate`."""

import json
import random
from pathlib import Path

import pytest
import sacrebleu
from helpers import FIXTURES, finetune, json_line, set_args
from rouge_score import rouge_scorer
from typer.testing import CliRunner

from llmkit.cli import app

runner = CliRunner()
TINY = [
    "model.layers=2",
    "model.hidden=64",
    "model.heads=2",
    "model.intermediate=256",
    "task.max_length=128",
    "task.num_beams=1",
    "train.log_every=10",
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def lead_sentences(tmp_path_factory) -> tuple[Path, Path]:
    """Real text: WikiText paragraphs (first 64 words) and their first sentence."""
    pairs = []
    for line in (FIXTURES / "wikitext-2-valid.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("=") or " . " not in line or len(line.split()) < 30:
            continue
        first = line.split(" . ")[0] + " ."
        if len(first.split()) <= 24:
            pairs.append({"document": " ".join(line.split()[:64]), "summary": first})
    folder = tmp_path_factory.mktemp("lead")
    return write_jsonl(folder / "train.jsonl", pairs[:400]), write_jsonl(
        folder / "dev.jsonl", pairs[-24:]
    )


NOUNS = [
    ("dog", "der Hund"),
    ("cat", "die Katze"),
    ("house", "das Haus"),
    ("car", "das Auto"),
    ("tree", "der Baum"),
    ("book", "das Buch"),
    ("garden", "der Garten"),
    ("door", "die Tür"),
    ("city", "die Stadt"),
    ("child", "das Kind"),
]
ADJECTIVES = [
    ("big", "groß"),
    ("small", "klein"),
    ("old", "alt"),
    ("new", "neu"),
    ("red", "rot"),
    ("green", "grün"),
    ("quiet", "ruhig"),
    ("cold", "kalt"),
]


def upper_first(text: str) -> str:
    return text[0].upper() + text[1:]


def sentence_pair(rng):
    (noun, nomen), (adj, adjektiv) = rng.choice(NOUNS), rng.choice(ADJECTIVES)
    if rng.random() < 0.5:
        return {"en": f"the {noun} is {adj} .", "de": f"{upper_first(nomen)} ist {adjektiv} ."}
    (other, anderes) = rng.choice(NOUNS)
    return {
        "en": f"the {noun} and the {other} are {adj} .",
        "de": f"{upper_first(nomen)} und {anderes} sind {adjektiv} .",
    }


@pytest.fixture(scope="module")
def english_german(tmp_path_factory) -> tuple[Path, Path]:
    """Hand-made English → German sentences in WMT's `translation` layout."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("en-de")
    train = [{"translation": sentence_pair(rng)} for _ in range(600)]
    dev = [{"translation": sentence_pair(rng)} for _ in range(30)]
    return write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "dev.jsonl", dev)


def finetuned(recipe, out, *overrides, extra=()):
    """The summary of a fine-tuning run that must succeed."""
    result, summary = finetune(recipe, out, *overrides, extra=extra)
    assert result.exit_code == 0, result.output
    return summary


def losses(run: Path) -> list[float]:
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def predictions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "dev_predictions.jsonl").read_text().splitlines()]


def test_t5_summarization_trains_scores_rouge_and_generates(trained_clm, lead_sentences, tmp_path):
    train, dev = lead_sentences
    run = tmp_path / "t5"
    summary = finetuned(
        "seq2seq-summarization",
        run,
        f"tokenizer.path={trained_clm}",
        f"task.train_file={train}",
        f"task.validation_file={dev}",
        "task.max_target_length=32",
        "train.epochs=3",
        "train.lr=2e-3",
        *TINY,
        "task.max_length=512",  # sources whole, as `generate` reads them below
    )
    assert json.loads((run / "config.json").read_text())["architectures"] == [
        "T5ForConditionalGeneration"
    ]
    assert summary["train_examples"] == 400 and summary["eval_examples"] == 24
    seen = losses(run)
    assert seen[-1] < seen[0] - 1.0
    rows = predictions(run)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    for kind in ("rouge1", "rougeL"):
        expected = sum(
            scorer.score(r["reference"], r["prediction"])[kind].fmeasure for r in rows
        ) / len(rows)
        assert summary[f"eval_{kind}"] == pytest.approx(100 * expected)
    # A model this small learns the summaries' language long before it learns to copy from
    # the source (its ROUGE after 75 steps is 0-3.4 depending on the seed), so learning is
    # asserted on the held-out loss against the same model untrained.
    untrained = finetuned(
        "seq2seq-summarization",
        tmp_path / "untrained",
        f"tokenizer.path={trained_clm}",
        f"task.validation_file={dev}",
        "task.max_target_length=32",
        *TINY,
        extra=["--eval-only"],
    )
    assert summary["eval_loss"] < untrained["eval_loss"] - 0.5
    assert all(r["prediction"] for r in rows)

    # `generate` decodes the run the way its evaluation did
    # (the same batches as evaluation's 16, so that padding cannot tip a near tie)
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"prompt": f"summarize: {r['source']}"} for r in rows])
    result = runner.invoke(
        app, ["generate", "-m", str(run), "--prompts", str(prompts), "--batch-size", "16", "--json"]
    )
    assert result.exit_code == 0, result.output
    completions = json_line(result.stdout)["results"]
    assert [c["completion"].strip() for c in completions] == [r["prediction"] for r in rows]
    assert all(c["completion_tokens"] > 0 for c in completions)
    # shown after an arrow: an encoder-decoder's output answers its prompt, it does not go on
    shown = " ".join(result.stdout.split())
    prompt, completion = (" ".join(completions[0][k].split()) for k in ("prompt", "completion"))
    assert f"{prompt[-20:]} → {completion}" in shown

    refused = runner.invoke(app, ["eval-ppl", "-m", str(run), "--data", "builtin"])
    assert refused.exit_code == 2 and "encoder-decoder" in refused.output


def test_bart_translation_trains_and_scores_bleu(trained_clm, english_german, tmp_path):
    train, dev = english_german
    run = tmp_path / "bart"
    summary = finetuned(
        "seq2seq-translation",
        run,
        f"tokenizer.path={trained_clm}",
        f"task.train_file={train}",
        f"task.validation_file={dev}",
        "task.max_target_length=24",
        "train.epochs=10",
        "train.lr=3e-3",
        *TINY,
    )
    assert json.loads((run / "config.json").read_text())["architectures"] == [
        "BartForConditionalGeneration"
    ]
    seen = losses(run)
    assert seen[-1] < seen[0] / 2
    rows = predictions(run)
    assert rows[0]["reference"].endswith(" .") and rows[0]["source"].startswith("the ")
    bleu = sacrebleu.corpus_bleu([r["prediction"] for r in rows], [[r["reference"] for r in rows]])
    assert summary["eval_bleu"] == pytest.approx(bleu.score)
    # Measured: held-out loss 0.41 after 380 steps (6 s). Greedy decoding from a model this
    # small may still ignore the source (BLEU 4-38 depending on seed and tokenizer), but
    # what it writes is German of the references' shape.
    assert summary["eval_loss"] < 1.0
    assert all(r["prediction"].endswith(" .") for r in rows)
    assert all({"ist", "sind"} & set(r["prediction"].split()) for r in rows)


def test_a_new_encoder_decoder_needs_a_tokenizer(tmp_path, lead_sentences):
    train, dev = lead_sentences
    args = ["finetune", "--recipe", "seq2seq-summarization", "-o", str(tmp_path / "x")]
    args += set_args([f"task.train_file={train}", f"task.validation_file={dev}"])
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "tokenizer.path" in result.output


def test_missing_columns_are_named(trained_clm, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b", "headline": "a"}])
    args = ["finetune", "--recipe", "seq2seq-summarization", "-o", str(tmp_path / "x")]
    args += set_args(
        [f"tokenizer.path={trained_clm}", f"task.train_file={data}", f"task.validation_file={data}"]
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "no column 'document'" in result.output and "headline" in result.output


def test_encoder_decoders_are_not_pretrained(tmp_path):
    result = runner.invoke(
        app,
        [
            "pretrain-clm",
            "--recipe",
            "gpt2-tiny",
            "--set",
            "model.family=t5",
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2 and "encoder-decoder" in result.output


def test_a_hub_dataset_offline_exits_2_naming_the_local_keys(trained_clm, tmp_path):
    args = ["finetune", "--recipe", "seq2seq-summarization", "-o", str(tmp_path / "x")]
    args += set_args([f"tokenizer.path={trained_clm}", "task.dataset=EdinburghNLP/xsum"])
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "cannot be reached (offline)" in result.output and "task.train_file" in result.output
