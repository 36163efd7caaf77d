"""`llmkit evaluate`: lm-evaluation-harness tasks on a local llmkit model, offline."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES

lm_eval = pytest.importorskip("lm_eval", reason="the eval extra: pip install 'llmkit[eval]'")

SST2_PROMPT = "{sentence}\nQuestion: Is this sentence positive or negative?\nAnswer:"


@pytest.fixture(scope="module")
def local_copies(tmp_path_factory) -> Path:
    """A data root as a user lays one out: wikitext-2/wiki.test.raw (the first articles of
    the real test split) and glue/SST-2/{train,dev}.tsv (the repository's slices)."""
    root = tmp_path_factory.mktemp("data")
    (root / "wikitext-2").mkdir()
    rows = (FIXTURES / "wikitext-2-raw-test-head.raw").read_bytes().split(b"\r\n")[:150]
    (root / "wikitext-2" / "wiki.test.raw").write_bytes(b"\r\n".join(rows) + b"\r\n")
    shutil.copytree(FIXTURES / "glue" / "SST-2", root / "glue" / "SST-2")
    return root


def evaluate(cli, model, tasks, *args):
    return cli("evaluate", "--model", str(model), "--tasks", tasks, *args, "--json")


def test_local_wikitext_word_perplexity_equals_eval_ppl(trained_clm, local_copies, tmp_path, cli):
    out = tmp_path / "eval"
    result, summary = evaluate(
        cli, trained_clm, "wikitext_local", "--local-dir", str(local_copies), "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert f"wikitext_local reads wikitext-2 ({local_copies}/wikitext-2/wiki.test.raw)" in " ".join(
        result.stderr.split()
    )  # the file it scored, named
    ours = summary["tasks"]["wikitext_local"]
    result, ppl = cli(
        "eval-ppl",
        "--model",
        str(trained_clm),
        "--data",
        "wikitext-2",
        "--local-dir",
        str(local_copies),
        "--metrics",
        "word,byte,bpb",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert ppl["documents"] > 1  # articles, split at their headings as the harness's are
    for figure in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours[figure] == pytest.approx(ppl[figure], rel=1e-6)
    saved = json.loads((out / "wikitext_local.json").read_text())
    assert saved["metrics"] == ours and saved["samples"] == ppl["documents"]
    assert saved["lm_eval_version"] == lm_eval.__version__


def harness_choice_log_likelihoods(model, tokenizer, context: str, choices: list[str]):
    """What the harness computes for a multiple-choice request, by hand: the continuation
    " choice" encoded as the end of the whole string, the whole cut from the left to the
    model's positions, the continuation tokens' summed log-probability."""
    positions = model.config.n_positions
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    scores = []
    for choice in choices:
        whole = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
        count = len(whole) - len(context_ids)  # the continuation's tokens
        tokens = whole[-(positions + 1) :]
        with torch.no_grad():
            logits = model(torch.tensor([tokens[:-1]])).logits[0].float()
        log_probs = torch.log_softmax(logits[-count:], dim=-1)
        targets = torch.tensor(tokens[-count:])
        scores.append(log_probs[torch.arange(count), targets].sum().item())
    return scores


def test_local_sst2_accuracy_is_the_zero_shot_choice_by_hand(
    trained_clm, local_copies, tmp_path, cli
):
    from llmkit.models import load_for_inference

    limit = 40
    args = ["--local-dir", str(local_copies), "--limit", str(limit), "-o", str(tmp_path)]
    result, summary = evaluate(cli, trained_clm, "sst2_local", *args)
    assert result.exit_code == 0, result.output
    model, tokenizer, _ = load_for_inference(trained_clm, "fp32")
    rows = (local_copies / "glue" / "SST-2" / "dev.tsv").read_text().splitlines()[1 : limit + 1]
    right = 0
    for row in rows:
        sentence, label = row.rsplit("\t", 1)
        scores = harness_choice_log_likelihoods(
            model, tokenizer, SST2_PROMPT.format(sentence=sentence), ["negative", "positive"]
        )
        right += int(scores.index(max(scores)) == int(label))
    assert summary["tasks"]["sst2_local"]["acc"] == pytest.approx(right / limit, abs=1e-12)
    saved = json.loads((tmp_path / "sst2_local.json").read_text())
    assert saved["samples"] == limit and saved["num_fewshot"] == 0


def test_num_fewshot_and_limit_reach_the_harness(trained_clm, local_copies, tmp_path, cli):
    args = ["--local-dir", str(local_copies), "--num-fewshot", "3", "--limit", "12"]
    result, summary = evaluate(cli, trained_clm, "sst2_local", *args, "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    (record,) = summary["results"]
    assert record["num_fewshot"] == 3 and record["samples"] == 12


def test_a_harness_task_pointed_at_local_files_with_include(
    trained_clm, local_copies, tmp_path, cli
):
    """The README's way for any harness task: a YAML that includes the harness's own task
    and reads local files instead of the hub."""
    harness_sst2 = Path(lm_eval.__file__).parent / "tasks" / "glue" / "sst2" / "default.yaml"
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    dev = local_copies / "glue" / "SST-2" / "dev.tsv"
    (tasks / "sst2_files.yaml").write_text(
        f"include: {harness_sst2}\n"
        "task: sst2_files\n"
        "tag: null\n"
        "dataset_path: csv\n"
        "dataset_name: null\n"
        "dataset_kwargs:\n"
        f"  data_files: {{train: {dev}, validation: {dev}}}\n"
        '  delimiter: "\\t"\n'
    )
    args = ["--local-dir", str(local_copies), "--limit", "20", "-o", str(tmp_path / "eval")]
    result, summary = evaluate(
        cli, trained_clm, "sst2_files,sst2_local", "--include", str(tasks), *args
    )
    assert result.exit_code == 0, result.output
    accuracy = summary["tasks"]
    assert accuracy["sst2_files"]["acc"] == accuracy["sst2_local"]["acc"]


def test_report_shows_the_evaluations_beside_training(trained_clm, local_copies, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(trained_clm, run)
    result, summary = evaluate(
        cli, run, "sst2_local", "--local-dir", str(local_copies), "--limit", "10"
    )
    assert result.exit_code == 0, result.output
    assert (run / "eval" / "sst2_local.json").is_file()
    result, report = cli("report", str(run), "--output", str(tmp_path / "report"), "--json")
    assert result.exit_code == 0, result.output
    row = dict(zip(report["header"], report["rows"][0], strict=True))
    assert row["sst2_local/acc"] == summary["tasks"]["sst2_local"]["acc"]
    assert "train_loss" in row


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "wikitxt_local"], "unknown lm-evaluation-harness task 'wikitxt_local'"),
        (["--tasks", "wikitext_local"], "the hub cannot be reached"),
        (["--tasks", "lambada_openai"], "a task's data is on the Hugging Face Hub"),
        (["--tasks", "sst2_local", "--limit", "0"], "--limit must be above 0"),
        (["--tasks", " , "], "--tasks names no task"),
        (["--tasks", "sst2_local", "--limit", "2.5"], "give a whole number of documents"),
        (["--tasks", "sst2_local", "--local-dir", "nowhere"], "--local-dir nowhere is not a"),
    ],
)
def test_bad_input_is_one_message(trained_clm, tmp_path, monkeypatch, cli, args, message):
    monkeypatch.delenv("LLMKIT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no local copy anywhere
    result, _ = cli("evaluate", "--model", str(trained_clm), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_an_encoder_decoder_is_scored_by_the_harness(trained_clm, local_copies, tmp_path, cli):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(trained_clm)
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2, **ids
    )
    config.decoder_start_token_id = tokenizer.pad_token_id
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    args = ["--local-dir", str(local_copies), "--limit", "6"]
    result, summary = evaluate(cli, tmp_path / "t5", "sst2_local,wikitext_local", *args)
    assert result.exit_code == 0, result.output
    assert 0 <= summary["tasks"]["sst2_local"]["acc"] <= 1
    assert summary["tasks"]["wikitext_local"]["word_perplexity"] > 1
    samples = {r["task"]: r["samples"] for r in summary["results"]}
    assert samples["sst2_local"] == 6 and 1 < samples["wikitext_local"] <= 6


def test_a_masked_lm_is_refused(trained_mlm, cli):
    result, _ = cli("evaluate", "--model", str(trained_mlm), "--tasks", "sst2_local")
    assert result.exit_code == 2 and "masked LM" in result.output


def test_without_the_extra_one_message_says_how_to_install(trained_clm, monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval raises ImportError
    result, _ = cli("evaluate", "--model", str(trained_clm), "--tasks", "wikitext_local")
    assert result.exit_code == 2
    assert "pip install 'llmkit[eval]'" in result.output


def test_wikitext_local_refuses_the_tokenized_copy(trained_clm, tmp_path, cli):
    """A folder holding WikiText's tokenized test.txt (words replaced by <unk>) is other text
    than the raw split the task documents: refused, naming the file it needs."""
    (tmp_path / "wikitext-2").mkdir()
    rows = (FIXTURES / "wikitext-2-raw-test-head.raw").read_text().splitlines()[:40]
    (tmp_path / "wikitext-2" / "test.txt").write_text("\n".join(rows) + "\n")
    result, _ = evaluate(cli, trained_clm, "wikitext_local", "--local-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "wiki.test.raw" in message and "test.txt" in message and "Traceback" not in message
