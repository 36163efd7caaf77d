import json

import pytest

from llmkit.data.documents import count_words


def test_json_summary_and_output_file(trained_clm, tmp_path, cli):
    out = tmp_path / "results" / "ppl.json"
    result, summary = cli(
        "eval-ppl",
        "--model",
        str(trained_clm),
        "--data",
        "builtin",
        "--max-length",
        "64",
        "--output",
        str(out),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert summary == json.loads(out.read_text())
    assert summary["stride"] == 32 and summary["objective"] == "clm"
    assert 1 < summary["token_perplexity"] < 1000 and summary["tokens_per_second"] > 0
    # builtin holds one speech per record: each is a document; nothing is detokenized.
    assert summary["documents"] == 7222 and summary["detokenized"] is False


def test_each_record_of_a_structured_source_is_a_document(trained_clm, tmp_path, cli):
    records = tmp_path / "docs.jsonl"
    records.write_text(
        "".join(
            json.dumps({"text": t, "id": i}) + "\n"
            for i, t in enumerate(
                ["The game was released .", "It sold well in Japan .", "A third one ."]
            )
        )
    )
    result, summary = cli("eval-ppl", "--model", str(trained_clm), "--data", str(records), "--json")
    assert result.exit_code == 0, result.output
    assert summary["documents"] == 3 and summary["words"] == 5 + 6 + 4


def test_the_text_column_of_a_glue_task(trained_clm, shared_data, monkeypatch, cli):
    monkeypatch.setenv("LLMKIT_DATA_DIR", str(shared_data("glue").parent))
    args = ["--model", str(trained_clm), "--data", "glue/sst2", "--split", "validation"]
    result, summary = cli("eval-ppl", *args, "--json")
    assert result.exit_code == 0, result.output
    assert summary["documents"] == 872


def test_a_masked_lm_gets_pseudo_perplexity(trained_mlm, tmp_path, cli):
    text = tmp_path / "t.txt"
    text.write_text("The game was released in Japan .\n")
    result, summary = cli("eval-ppl", "--model", str(trained_mlm), "--data", str(text), "--json")
    assert result.exit_code == 0, result.output
    assert summary["objective"] == "mlm" and summary["pseudo_perplexity"] > 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "{tmp}/missing", "--data", "builtin"], "does not exist"),
        (["--model", "{tmp}", "--data", "builtin"], "not a model directory"),
        (["--model", "{clm}", "--data", "wikitext2"], "did you mean 'wikitext-2'"),
        (["--model", "{clm}", "--data", "wikitext-2"], "cannot be reached"),
        (["--model", "{clm}", "--data", "glue/sst2"], "a local copy: --local-dir DIR"),
        (
            ["--model", "{clm}", "--data", "builtin", "--max-length", "32", "--stride", "64"],
            "--stride 64 must be between 1 and --max-length (32)",
        ),
        (["--model", "{clm}", "--data", "builtin", "--max-length", "4096"], "outside 2..64"),
        (["--model", "{clm}", "--data", "builtin", "--max-length", "0"], "outside 2..64"),
        (["--model", "{clm}", "--data", "builtin", "--stride", "0"], "--stride 0 must be"),
        (["--model", "{clm}", "--data", "builtin", "--precision", "fp64"], "unknown precision"),
        (["--model", "{clm}", "--data", "builtin", "--batch-size", "0"], "at least 1"),
    ],
)
def test_user_errors(trained_clm, tmp_path, args, expected, cli):
    args = [a.format(tmp=tmp_path, clm=trained_clm) for a in args]
    result, _ = cli("eval-ppl", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("error:") == 1


def test_metrics_computes_only_what_is_asked(trained_clm, fixtures_dir, cli):
    text = str(fixtures_dir / "wikitext-2-raw-test-head.raw")
    base = ["eval-ppl", "--model", str(trained_clm), "--data", text, "--max-length", "64"]
    _, everything = cli(*base, "--json")
    result, token = cli(*base, "--metrics", "token", "--json")
    assert result.exit_code == 0, result.output
    assert token["token_perplexity"] == everything["token_perplexity"]
    assert "word_perplexity" not in token and "documents" not in token  # no document pass
    result, words = cli(*base, "--metrics", "word,bpb", "--json")
    assert result.exit_code == 0, result.output
    assert words["word_perplexity"] == everything["word_perplexity"]
    assert words["bits_per_byte"] == everything["bits_per_byte"]
    assert "token_perplexity" not in words and "byte_perplexity" not in words


@pytest.mark.parametrize(
    "model, metrics, message",
    [
        ("clm", "wrod", "'wrod' is not a figure of eval-ppl (did you mean 'word'?)"),
        ("clm", "pseudo", "'pseudo' is not a figure of a causal LM"),
        ("mlm", "token", "'token' is not a figure of a masked LM"),
        ("clm", ",", "--metrics names no figure"),
    ],
)
def test_metrics_a_model_lacks_is_one_message(
    trained_clm, trained_mlm, cli, model, metrics, message
):
    path = trained_clm if model == "clm" else trained_mlm
    result, _ = cli("eval-ppl", "--model", str(path), "--data", "builtin", "--metrics", metrics)
    assert result.exit_code == 2 and message in result.output, result.output


def test_word_perplexity_of_chinese_counts_each_character_as_a_word(trained_clm, tmp_path, cli):
    text = "我们用PyTorch训练BERT模型。\n大规模，训练！ ok 2026年\n"
    (tmp_path / "zh.txt").write_text(text, encoding="utf-8")
    args = ["--model", str(trained_clm), "--data", str(tmp_path / "zh.txt"), "--json"]
    result, summary = cli("eval-ppl", *args)
    assert result.exit_code == 0, result.output
    # 我们用 PyTorch 训练 BERT 模型 (9) + 大规模 训练 ok 2026 年 (8); punctuation is no word
    assert summary["words"] == 9 + 8 and summary["bytes"] == len(text.encode("utf-8"))
    # both figures divide the same log-likelihood: one by words, the other by bytes
    by_hand = summary["byte_perplexity"] ** (summary["bytes"] / summary["words"])
    assert summary["word_perplexity"] == pytest.approx(by_hand, rel=1e-9)
    # a few CJK characters in English text (a name) leave lm-evaluation-harness's count
    english = "The film Shichinin no Samurai (七人の侍) was released in 1954 ."
    assert count_words(english) == len(english.split()) == 11


def test_each_file_of_a_folder_of_text_is_a_document(trained_clm, tmp_path, cli):
    folder = tmp_path / "essays"
    folder.mkdir()
    texts = ["The game was released .\nIt sold well .\n", "A second essay .\n", "A third .\n"]
    for number, text in enumerate(texts):
        (folder / f"{number}.txt").write_text(text)
    result, summary = cli("eval-ppl", "--model", str(trained_clm), "--data", str(folder), "--json")
    assert result.exit_code == 0, result.output
    # each document's words counted as the harness does (its final newline leaves one "")
    assert summary["documents"] == 3 and summary["words"] == (9 + 1) + (4 + 1) + (3 + 1)
