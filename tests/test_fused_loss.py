"""The chunked training loss equals each model's own loss, and gives the same gradients."""

import copy

import pytest
import torch

from llmkit import fused_loss
from llmkit.fused_loss import linear_cross_entropy, use_chunked_loss
from llmkit.models import build_model, build_model_config
from llmkit.recipe import ModelConfig

VOCAB, SEQ, BATCH = 320, 24, 3
CAUSAL = ("gpt2", "llama", "nanochat")


def tiny_model(family: str, nsp: bool = False):
    config = build_model_config(
        ModelConfig(family=family, layers=2, hidden=32, heads=2, dropout=0.0),
        tokens=VOCAB,
        seq_len=SEQ,
        special_ids=dict.fromkeys(["bos_token_id", "eos_token_id", "pad_token_id"], 1),
    )
    torch.manual_seed(0)
    objective = "clm" if family in CAUSAL else "mlm"
    return build_model(config, objective, nsp).train()


def batch(family: str, nsp: bool = False):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator)
    if family in CAUSAL:
        labels = ids.clone()
        labels[0, :5] = -100  # some positions carry no label
    else:
        labels = torch.full_like(ids, -100)
        chosen = torch.rand(ids.shape, generator=generator) < 0.2
        labels[chosen] = ids[chosen]
    inputs = {"input_ids": ids, "labels": labels}
    if nsp:
        inputs["next_sentence_label"] = torch.tensor([0, 1, 1])
    return inputs


def loss_and_grads(model, inputs, **kwargs):
    model.zero_grad()
    loss = model(**inputs, **kwargs).loss
    loss.backward()
    return loss.item(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize(
    ("family", "nsp"),
    [
        ("gpt2", False),
        ("llama", False),
        ("nanochat", False),
        ("bert", False),
        ("bert", True),
        ("roberta", False),
        ("modernbert", False),
    ],
)
def test_chunked_loss_matches_the_models_own(monkeypatch, family, nsp):
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 4 * VOCAB * 7)  # 7 rows: several chunks
    reference = tiny_model(family, nsp)
    chunked = copy.deepcopy(reference)
    assert use_chunked_loss(chunked)
    inputs = batch(family, nsp)
    expected_loss, expected_grads = loss_and_grads(reference, inputs)
    loss, grads = loss_and_grads(chunked, inputs)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("family", ["gpt2", "modernbert"])
def test_the_loss_is_summed_over_the_accumulated_batch_when_trainer_gives_its_size(family):
    reference = tiny_model(family)
    chunked = copy.deepcopy(reference)
    use_chunked_loss(chunked)
    inputs = batch(family)
    expected, _ = loss_and_grads(reference, inputs, num_items_in_batch=torch.tensor(500))
    loss, _ = loss_and_grads(chunked, inputs, num_items_in_batch=torch.tensor(500))
    assert loss == pytest.approx(expected, rel=1e-6)


def test_evaluation_keeps_the_models_own_forward_with_logits():
    model = tiny_model("gpt2")
    use_chunked_loss(model)
    model.eval()
    output = model(**batch("gpt2"))
    assert output.logits.shape == (BATCH, SEQ, model.config.vocab_size)


def test_summed_linear_cross_entropy_against_a_direct_computation():
    torch.manual_seed(2)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    bias = torch.randn(40, requires_grad=True)
    targets = torch.randint(0, 40, (50,))
    targets[::7] = -100
    total = linear_cross_entropy(hidden, weight, bias, targets)
    direct = torch.nn.functional.cross_entropy(
        hidden @ weight.T + bias, targets, reduction="sum", ignore_index=-100
    )
    assert total.item() == pytest.approx(direct.item(), rel=1e-6)
    grads = torch.autograd.grad(2 * total, (hidden, weight, bias))
    expected = torch.autograd.grad(2 * direct, (hidden, weight, bias))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_other_model_classes_are_left_alone():
    class Other(torch.nn.Module):
        pass

    assert not use_chunked_loss(Other())


def test_soft_capped_cross_entropy_against_a_direct_computation():
    torch.manual_seed(3)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = (4 * torch.randn(40, 16)).requires_grad_()  # logits well beyond the cap
    targets = torch.randint(0, 40, (50,))
    total = linear_cross_entropy(hidden, weight, None, targets, softcap=15.0)
    total.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad, weight.grad = None, None
    capped = 15.0 * torch.tanh((hidden @ weight.T) / 15.0)
    direct = torch.nn.functional.cross_entropy(capped, targets, reduction="sum")
    direct.backward()
    assert total.item() == pytest.approx(direct.item(), rel=1e-6)
    torch.testing.assert_close(grads[0], hidden.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], weight.grad, rtol=1e-4, atol=1e-5)
