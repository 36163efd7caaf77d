"""A fine-tuning run stopped after a checkpoint and resumed ends with the weights of the run
that was never stopped, for every kind of task (each has its own head, collator, and for
seq2seq its own Trainer class)."""

import json
import random
from pathlib import Path

import pytest
from helpers import FIXTURES, StopAt
from safetensors.torch import load_file

from llmkit.commands.finetune import run_finetune
from llmkit.recipe import load_recipe

pytestmark = pytest.mark.slow  # minutes: `make test-fast` skips these


def translation_pairs(folder: Path) -> Path:
    rng = random.Random(0)
    words = ["dog", "cat", "house", "tree", "book", "city", "door", "car"]
    rows = []
    for _ in range(64):
        a, b = rng.sample(words, 2)
        rows.append({"translation": {"en": f"the {a} and the {b}", "de": f"{b} {a}"}})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", ["glue", "qa", "ner", "seq2seq", "sft", "lora"])
def test_a_resumed_fine_tuning_ends_with_the_uninterrupted_weights(
    kind, trained_mlm, trained_clm, trained_clm_128, tmp_path
):
    common = ["train.max_steps=6", "train.save_every=2", "train.batch_size=8"]
    if kind == "glue":
        recipe, task = "glue-sst2", [f"task.data_dir={FIXTURES / 'glue' / 'SST-2'}"]
    elif kind == "qa":
        squad = FIXTURES / "squad"
        recipe, task = (
            "qa-squad",
            [
                f"task.train_file={squad / 'train.json'}",
                f"task.validation_file={squad / 'dev.json'}",
                "task.doc_stride=16",
                "task.max_train_examples=40",
            ],
        )
    elif kind == "ner":
        conll = FIXTURES / "conll"
        recipe, task = (
            "ner-conll",
            [
                f"task.train_file={conll / 'train.txt'}",
                f"task.validation_file={conll / 'valid.txt'}",
            ],
        )
    elif kind == "sft":
        recipe, task = "sft-chat", ["task.packing=true", "task.generate_examples=2"]
    elif kind == "lora":  # a GPT-2 classifier with LoRA adapters: the adapter resumes
        recipe = "glue-sst2"
        task = [f"task.data_dir={FIXTURES / 'glue' / 'SST-2'}", "model.lora.r=4"]
    else:
        pairs = translation_pairs(tmp_path)
        recipe, task = (
            "seq2seq-translation",
            [
                f"tokenizer.path={trained_clm}",
                f"task.train_file={pairs}",
                f"task.validation_file={pairs}",
                "model.layers=1",
                "model.hidden=32",
                "model.intermediate=64",
                "task.max_target_length=8",
                "task.num_beams=1",
            ],
        )
    model = {
        "seq2seq": [],
        "sft": [f"model.path={trained_clm_128}"],
        "lora": [f"model.path={trained_clm}"],
    }.get(kind, [f"model.path={trained_mlm}"])
    settings = load_recipe(
        recipe, [*model, *task, *common, "task.max_eval_examples=16", "model.dropout=0.1"]
    )
    run_finetune(settings, output_dir=tmp_path / "whole")
    run_finetune(settings, output_dir=tmp_path / "parts", callbacks=[StopAt(4)])
    resumed = run_finetune(settings, output_dir=tmp_path / "parts", resume="auto")
    assert resumed["steps"] == 6 and resumed["resumed_from"].endswith("checkpoint-4")
    weights = "adapter_model.safetensors" if kind == "lora" else "model.safetensors"
    a = load_file(tmp_path / "whole" / weights)
    b = load_file(tmp_path / "parts" / weights)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
