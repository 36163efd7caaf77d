"""LoRA adapters: only the adapters train, merged and unmerged models agree, adapter runs load
in every command, and bad settings end in one message."""

import pytest
import torch
from helpers import FIXTURES, invoke, set_args
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmkit.adapters import add_lora, load_merged
from llmkit.recipe import LoraConfig

PROMPT = "Review: a gorgeous , moving film\nSentiment:"


@pytest.fixture(scope="module")
def lora_run(trained_clm_128, tmp_path_factory):
    """sft/completion with rank-4 adapters, a few steps at a high learning rate."""
    out = tmp_path_factory.mktemp("lora") / "run"
    overrides = [f"model.path={trained_clm_128}", "model.lora.r=4", "train.max_steps=12"]
    overrides += ["train.lr=1e-2", "task.generate_examples=8", "model.lora.dropout=0"]
    args = ["finetune", "--recipe", "sft-completion", "-o", str(out), "--json"]
    result, summary = invoke(*args, *set_args(overrides))
    assert result.exit_code == 0, result.output
    return out, summary


def test_only_the_adapters_change_in_training(trained_clm_128):
    model = AutoModelForCausalLM.from_pretrained(trained_clm_128)
    model = add_lora(model, LoraConfig(r=4, dropout=0), "AutoModelForCausalLM")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 1000, (4, 24), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed and all("lora_" in name for name in changed)
    assert {n for n in changed if "lora_B" in n} == {n for n in before if "lora_B" in n}


def test_a_lora_run_holds_the_adapter_and_names_its_base(lora_run, trained_clm_128):
    out, summary = lora_run
    assert summary["base_model"] == str(trained_clm_128)
    assert summary["trainable_parameters"] < 0.1 * summary["parameters"]
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all("lora_" in key for key in weights)
    assert not (out / "model.safetensors").exists()
    assert "PeftModel.from_pretrained" in (out / "README.md").read_text()


def test_merged_and_unmerged_logits_agree(lora_run, trained_clm_128, tmp_path):
    out, _ = lora_run
    ids = AutoTokenizer.from_pretrained(out)(PROMPT, return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(trained_clm_128)
    unmerged = PeftModel.from_pretrained(base, str(out)).eval()
    merged = load_merged(out).eval()
    with torch.no_grad():
        a, b = unmerged(input_ids=ids).logits, merged(input_ids=ids).logits
        trained = AutoModelForCausalLM.from_pretrained(trained_clm_128)(input_ids=ids).logits
    assert (a - b).abs().max().item() <= 1e-4
    assert (a - trained).abs().max().item() > 1e-3  # the adapter does change the model
    result, summary = invoke("export", "--model", str(out), "-o", str(tmp_path / "plain"), "--json")
    assert result.exit_code == 0, result.output
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "plain").eval()
    with torch.no_grad():
        assert (exported(input_ids=ids).logits - b).abs().max().item() <= 1e-5
    assert summary["base_model"] == str(trained_clm_128)


def test_generate_and_eval_ppl_take_an_adapter_run_as_its_merged_model(lora_run, tmp_path):
    out, _ = lora_run
    plain = tmp_path / "plain"
    assert invoke("export", "--model", str(out), "-o", str(plain))[0].exit_code == 0
    text = tmp_path / "t.txt"
    text.write_text(f"{PROMPT} positive\n")
    results = []
    for model in (out, plain):
        _, ppl = invoke("eval-ppl", "--model", str(model), "--data", str(text), "--json")
        _, gen = invoke("generate", "--model", str(model), "--prompt", PROMPT, "--json")
        results.append((ppl["token_perplexity"], gen["results"][0]["completion"]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert results[0][1] == results[1][1]


def test_evaluate_takes_an_adapter_run_as_its_merged_model(lora_run, tmp_path):
    pytest.importorskip("lm_eval", reason="the eval extra: pip install 'llmkit[eval]'")
    out, _ = lora_run
    plain = tmp_path / "plain"
    assert invoke("export", "--model", str(out), "-o", str(plain))[0].exit_code == 0
    (tmp_path / "data" / "wikitext-2").mkdir(parents=True)
    rows = (FIXTURES / "wikitext-2-raw-test-head.raw").read_bytes().split(b"\r\n")[:40]
    (tmp_path / "data" / "wikitext-2" / "wiki.test.raw").write_bytes(b"\r\n".join(rows))
    figures = []
    for model in (out, plain):
        args = ["--tasks", "wikitext_local", "--local-dir", str(tmp_path / "data")]
        result, summary = invoke("evaluate", "--model", str(model), *args, "--json")
        assert result.exit_code == 0, result.output
        figures.append(summary["tasks"]["wikitext_local"]["word_perplexity"])
    assert figures[0] == pytest.approx(figures[1], rel=1e-5)
    assert (out / "eval" / "wikitext_local.json").is_file()  # beside the adapter


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_decoder_classifies_glue_with_lora_and_evaluates_again_from_its_run(
    family, trained_clm_128, tmp_path
):
    """GPT-2 and Llama as sequence classifiers: padding, the last real token's pooling, a new
    head saved with the adapter; --eval-only of the run gives the run's own accuracy."""
    base = trained_clm_128
    if family == "llama":
        base = tmp_path / "llama"
        overrides = ["data.seq_len=64", "tokenizer.vocab_size=1000", "model.hidden=64"]
        overrides += ["model.heads=2", "model.kv_heads=1", "train.max_steps=20"]
        args = ["pretrain-clm", "--recipe", "llama-tiny", "-o", str(base), *set_args(overrides)]
        assert invoke(*args)[0].exit_code == 0
    out = tmp_path / "glue"
    task = [f"task.data_dir={FIXTURES / 'glue' / 'SST-2'}", "task.max_eval_examples=64"]
    overrides = [f"model.path={base}", "model.lora.r=4", "train.max_steps=20", *task]
    args = ["finetune", "--recipe", "glue-sst2", "-o", str(out), "--json"]
    result, trained = invoke(*args, *set_args(overrides))
    assert result.exit_code == 0, result.output
    assert (out / "dev_predictions.tsv").is_file()
    evaluated_args = ["finetune", "--recipe", "glue-sst2", "-o", str(tmp_path / "again")]
    evaluated_args += ["--eval-only", "--json", *set_args([f"model.path={out}", *task])]
    result, evaluated = invoke(*evaluated_args)
    assert result.exit_code == 0, result.output
    assert evaluated["eval_accuracy"] == trained["eval_accuracy"]
    # Padding a short example to a batch's length does not change its prediction.
    model, tokenizer = load_merged(out).eval(), AutoTokenizer.from_pretrained(out)
    alone = tokenizer(["a fine film"], return_tensors="pt")
    padded = tokenizer(
        ["a fine film", "a much longer review of a film"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        one, batch = model(**alone).logits[0], model(**padded).logits[0]
    assert torch.allclose(one, batch, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.lora.target_modules=[q_proj]"], "q_proj is not a linear layer of this gpt2"),
        (["model.lora.bits=4"], "needs a CUDA GPU"),
        (["model.lora.r=0"], "model.lora.r"),
    ],
)
def test_bad_lora_settings_end_in_one_message(trained_clm_128, tmp_path, args, expected):
    if "bits=4" in args[0] and torch.cuda.is_available():
        pytest.skip("QLoRA is refused only without a CUDA GPU")
    command = ["finetune", "--recipe", "sft-completion", "-o", str(tmp_path / "run")]
    result, _ = invoke(*command, *set_args([f"model.path={trained_clm_128}", *args]))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_lora_where_it_does_nothing_is_an_error(trained_clm_128, tmp_path):
    pretrain = ["pretrain-clm", "--recipe", "gpt2-tiny", "--set", "model.lora.r=4"]
    result, _ = invoke(*pretrain, "-o", str(tmp_path / "p"))
    assert result.exit_code == 2 and "model.lora is for finetune" in result.stderr
    evaluate = ["finetune", "--recipe", "sft-completion", "--eval-only", "-o", str(tmp_path / "e")]
    result, _ = invoke(*evaluate, *set_args([f"model.path={trained_clm_128}", "model.lora.r=4"]))
    assert result.exit_code == 2 and "--eval-only trains nothing" in result.stderr
    result, _ = invoke("export", "--model", str(trained_clm_128), "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "holds no LoRA adapter" in result.stderr


def test_answer_takes_a_qa_adapter_run(qa_lora_run, tmp_path):
    out = qa_lora_run
    plain = tmp_path / "plain"
    assert invoke("export", "--model", str(out), "-o", str(plain))[0].exit_code == 0
    question = [
        "--question",
        "Who wrote it?",
        "--context",
        "The book was written by Ann Lee.",
        "--json",
    ]
    answers = [invoke("answer", "--model", str(m), *question)[1]["answers"] for m in (out, plain)]
    assert answers[0] == answers[1] and answers[0]
