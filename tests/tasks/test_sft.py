"""Which tokens supervised fine-tuning trains: labels against hand-built masks, the trainer's
loss against a hand computation, and packing against unpacked examples."""

import pytest
import torch
from helpers import FIXTURES

from llmkit.errors import UserError
from llmkit.recipe import load_recipe
from llmkit.tasks.sft import SftKeys
from llmkit.tasks.sft.data import IGNORED, encode_example, marked, prepare_format
from llmkit.tokenizer import load_tokenizer

SFT = FIXTURES / "sft"


@pytest.fixture
def tokenizer(trained_clm):
    return load_tokenizer(trained_clm)


def pieces(tokenizer, segments):
    """Hand-built (ids, labels): each (text, trained) segment tokenized on its own."""
    ids, labels = [], []
    for text, trained in segments:
        segment = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += segment
        labels += segment if trained else [IGNORED] * len(segment)
    return ids, labels


def test_a_completion_is_trained_with_its_eos_and_the_prompt_is_not(tokenizer):
    fmt = prepare_format(SftKeys(name="sft/completion"), tokenizer)
    example = {"prompt": "Review: a fine film\nSentiment:", "completion": " positive"}
    got = encode_example(example, fmt, tokenizer, 64, "example")
    eos = tokenizer.eos_token
    assert got == pieces(tokenizer, [(example["prompt"], False), (" positive" + eos, True)])
    assert got[1][-1] == tokenizer.eos_token_id


def test_only_the_assistant_turns_of_a_chat_are_trained_end_of_turn_included(tokenizer):
    fmt = prepare_format(SftKeys(name="sft/chat", chat_template="chatml"), tokenizer)
    assert fmt.end_of_turn == "<|im_end|>" and fmt.added_tokens == ("<|im_start|>", "<|im_end|>")
    chat = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome"},
    ]
    got = encode_example({"messages": chat}, fmt, tokenizer, 256, "example")
    expected = pieces(
        tokenizer,
        [
            ("<|im_start|>system\nAnswer briefly.<|im_end|>\n", False),
            ("<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n", False),
            ("Paris<|im_end|>\n", True),
            ("<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n", False),
            ("Rome<|im_end|>\n", True),
        ],
    )
    assert got == expected
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sum(label == end for label in got[1]) == 2  # both turns learn to stop
    shown = marked(tokenizer, *got)
    assert "⟦Paris<|im_end|>\n⟧" in shown and "⟦Rome<|im_end|>\n⟧" in shown


def test_plain_text_is_trained_whole(tokenizer):
    fmt = prepare_format(SftKeys(name="sft/text"), tokenizer)
    ids, labels = encode_example({"text": "The game was released ."}, fmt, tokenizer, 64, "x")
    assert labels == ids and ids[-1] == tokenizer.eos_token_id


def test_a_template_whose_end_of_turn_falls_outside_the_answer_is_refused(tokenizer, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    fmt = prepare_format(SftKeys(name="sft/chat", chat_template=str(template)), tokenizer)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    with pytest.raises(UserError, match="end-of-turn token .* would never learn to stop"):
        encode_example({"messages": chat}, fmt, tokenizer, 64, "example 3")


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            {"prompt": "Review: x\nSentiment:", "completion": "  "},
            "example 7 has an empty completion",
        ),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": "x"}]}, "has no assistant turn"),
        ({"prompt": "word " * 80, "completion": " yes"}, "no trained token within task.max_length"),
    ],
)
def test_examples_that_cannot_train_name_themselves(tokenizer, example, expected):
    layout = "chat" if "messages" in example else "completion"
    fmt = prepare_format(SftKeys(name=f"sft/{layout}", chat_template="chatml"), tokenizer)
    with pytest.raises(UserError, match=expected):
        encode_example(example, fmt, tokenizer, 64, "train.jsonl, example 7")


def sft_trainer(model_dir, tmp_path, *overrides):
    """The fine-tuning Trainer `finetune` would build for the SST-2 completion recipe."""
    from llmkit.commands.finetune import task_trainer
    from llmkit.tasks import check_task_name
    from llmkit.tasks.finetuning import finetuning_of

    recipe = load_recipe(
        "sft-completion",
        [f"model.path={model_dir}", "train.batch_size=4", "model.dropout=0", *overrides],
    )
    task = finetuning_of(check_task_name(recipe.task.name)).prepare(recipe, eval_only=False)
    trainer = task_trainer(recipe, task, tmp_path)
    return trainer, task


def hand_loss(model, examples) -> float:
    """Mean next-token NLL over the trained tokens, each example run alone."""
    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            ids = torch.tensor([example["input_ids"]])
            labels = torch.tensor(example["labels"][1:])
            logits = model(input_ids=ids).logits[0, :-1]
            kept = labels != IGNORED
            nll = torch.nn.functional.cross_entropy(logits[kept], labels[kept], reduction="sum")
            total, count = total + nll.item(), count + int(kept.sum())
    return total / count


@pytest.mark.parametrize("packing", [False, True])
def test_the_trainer_loss_is_the_mean_over_trained_tokens_packed_or_not(
    trained_clm_128, tmp_path, packing
):
    trainer, task = sft_trainer(trained_clm_128, tmp_path, f"task.packing={str(packing).lower()}")
    model = trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    if packing:  # one row of whole examples, position ids restarting at each
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
        assert len(starts) > 4
    rows = []  # the batch's examples, each alone
    for row, (ids, labels) in enumerate(zip(batch["input_ids"], batch["labels"], strict=True)):
        if packing:
            bounds = [*starts, len(ids)]
            for a, b in zip(bounds, bounds[1:], strict=False):
                rows.append({"input_ids": ids[a:b].tolist(), "labels": labels[a:b].tolist()})
        else:
            length = int(batch["attention_mask"][row].sum())
            rows.append({"input_ids": ids[:length].tolist(), "labels": labels[:length].tolist()})
    batch = trainer._prepare_inputs(batch)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
    assert loss == pytest.approx(hand_loss(model, rows), rel=1e-5)
