"""What `auto` turns on: nothing on this CPU, the GPU fast path on a (simulated) CUDA GPU."""

import pytest
import torch

from llmkit import fast_path
from llmkit.errors import UserError
from llmkit.fast_path import check_attention, resolve_fast_path, resolve_precision
from llmkit.recipe import TrainConfig
from llmkit.training import settings_used, training_arguments


@pytest.fixture
def on_h100(monkeypatch):
    """Answers a CUDA machine with a bf16-capable, Hopper-generation GPU would give."""
    monkeypatch.setattr(fast_path, "has_cuda", lambda: True)
    monkeypatch.setattr(fast_path, "cuda_has_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))


def test_auto_on_a_cpu_keeps_fp32_and_eager_execution():
    fast = resolve_fast_path(TrainConfig())
    assert (fast.precision, fast.compile, fast.tf32, fast.liger) == ("fp32", False, False, False)


def test_auto_on_a_gpu_turns_on_bf16_compile_and_tf32(on_h100):
    fast = resolve_fast_path(TrainConfig())
    assert (fast.precision, fast.compile, fast.tf32) == ("bf16", True, True)


def test_every_auto_setting_can_be_switched_off_on_a_gpu(on_h100):
    fast = resolve_fast_path(TrainConfig(precision="fp32", compile=False))
    assert (fast.precision, fast.compile) == ("fp32", False)


def test_explicit_settings_win_on_a_cpu():
    fast = resolve_fast_path(TrainConfig(precision="bf16", compile=True))
    assert (fast.precision, fast.compile) == ("bf16", True)


def test_training_arguments_carry_the_resolved_settings(tmp_path):
    args = training_arguments(
        TrainConfig(precision="bf16"), tmp_path, seed=1, evaluate=False, evaluate_first=False
    )
    assert args.bf16 and not args.fp16 and not args.torch_compile
    assert args.optim == "adamw_torch_fused"
    assert settings_used(args) == {"precision": "bf16", "compiled": False, "processes": 1}


def test_a_launcher_choice_fills_auto_and_a_contradiction_is_refused(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision
    assert resolve_fast_path(TrainConfig()).precision == "bf16"
    assert resolve_fast_path(TrainConfig(precision="bf16")).precision == "bf16"
    with pytest.raises(UserError, match="accelerate launch asks for mixed precision bf16"):
        resolve_fast_path(TrainConfig(precision="fp32"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # the launcher's default: no choice
    assert resolve_fast_path(TrainConfig(precision="fp32")).precision == "fp32"


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (lambda: resolve_fast_path(TrainConfig(precision="fp16")), "fp16 needs a CUDA GPU"),
        (lambda: resolve_fast_path(TrainConfig(liger=True)), "liger needs a CUDA GPU"),
        (lambda: check_attention("flash_attention_2"), "needs a CUDA GPU and the flash-attn"),
        (lambda: resolve_precision("fp64", "--precision"), "unknown precision 'fp64'"),
    ],
)
def test_what_this_machine_cannot_do_is_a_user_error(check, message):
    with pytest.raises(UserError, match=message):
        check()


def tiny_gpt2():
    from llmkit.models import build_model, build_model_config
    from llmkit.recipe import ModelConfig

    config = build_model_config(
        ModelConfig(family="gpt2", layers=2, hidden=32, heads=2, dropout=0.0),
        tokens=300,
        seq_len=16,
        special_ids=dict.fromkeys(["bos_token_id", "eos_token_id", "pad_token_id"], 0),
    )
    torch.manual_seed(0)
    return build_model(config, "clm", nsp=False).eval()


def test_gpt2_gelu_runs_as_one_kernel_with_the_same_outputs():
    from llmkit.fast_path import use_fused_activations

    model = tiny_gpt2()
    ids = torch.randint(0, 300, (2, 16))
    before = model(input_ids=ids).logits
    assert use_fused_activations(model) == 2  # one per block
    torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)
    assert model.config.activation_function == "gelu_new"  # what is saved is unchanged


def test_chunked_loss_is_on_for_cpus_by_default_and_switchable(on_h100):
    from llmkit.fast_path import prepare_for_training

    assert prepare_for_training(tiny_gpt2(), TrainConfig()) == {"chunked_loss": False}
    assert prepare_for_training(tiny_gpt2(), TrainConfig(chunked_loss=True)) == {
        "chunked_loss": True
    }


def test_chunked_loss_auto_on_a_cpu():
    from llmkit.fast_path import prepare_for_training

    assert prepare_for_training(tiny_gpt2(), TrainConfig()) == {"chunked_loss": True}
    assert prepare_for_training(tiny_gpt2(), TrainConfig(chunked_loss=False)) == {
        "chunked_loss": False
    }
