"""The shipped launch configs (recipes/accelerate/) as accelerate reads them, and as they run.

accelerate shards (FSDP) and hands over to DeepSpeed only on GPUs, so on this CPU machine the
configs are checked the way `accelerate launch` reads them: each is parsed by its own launch
code into the environment its processes would get, and the plugin a process would build from
that environment is built. The DDP-shaped ones, the FSDP one and the SLURM template also run.
"""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
from helpers import TINY_MODEL, set_args
from test_distributed import free_port

from llmkit.models import build_model, build_model_config
from llmkit.recipe import ModelConfig

pytestmark = pytest.mark.slow  # minutes: `make test-fast` skips these

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "accelerate"
REPO = CONFIGS.parent.parent
RUN = [
    "pretrain-clm",
    "--recipe",
    "gpt2-tiny",
    "--json",
    *set_args([*TINY_MODEL, "train.max_steps=6", "train.log_every=2", "train.eval_every=1000"]),
]


def launch_environment(name: str) -> tuple:
    """(args, environment) that `accelerate launch --config_file <name>` gives its processes."""
    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIGS / name), "-m", "llmkit", *RUN])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def test_every_shipped_config_is_read_by_accelerate():
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    expected = ["ddp.yaml", "deepspeed-zero2.yaml", "deepspeed-zero3.yaml", "fsdp.yaml"]
    assert names == [*expected, "multi-node.yaml"]
    for name in names:
        args, env = launch_environment(name)
        # Precision is left to the recipe (train.precision auto: bf16 on GPUs).
        assert env["ACCELERATE_MIXED_PRECISION"] == "no"
        assert args.num_processes == (16 if name == "multi-node.yaml" else 8)


def test_multi_node_config_spans_two_machines_of_eight_processes():
    args, _ = launch_environment("multi-node.yaml")
    assert (args.num_machines, args.nnodes, args.nproc_per_node) == (2, "2", "8")
    # Every machine meets the main process at the address the config names.
    assert args.multi_gpu and args.rdzv_endpoint == "10.0.0.1:29500" and args.node_rank == 0


def test_fsdp_config_shards_each_transformer_block(monkeypatch):
    args, env = launch_environment("fsdp.yaml")
    assert args.use_fsdp and env["ACCELERATE_USE_FSDP"] == "true"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for family, block in [("gpt2", "GPT2Block"), ("llama", "LlamaDecoderLayer")]:
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.state_dict_type.name == "FULL_STATE_DICT"  # a run dir is one full model
        config = build_model_config(
            ModelConfig(family=family, layers=2, hidden=64, heads=2),
            tokens=256,
            seq_len=32,
            special_ids=dict.fromkeys(["bos_token_id", "eos_token_id", "pad_token_id"], 0),
        )
        model = build_model(config, "clm", nsp=False)
        plugin.set_auto_wrap_policy(model)
        wrapped = plugin.auto_wrap_policy.keywords["transformer_layer_cls"]
        assert {cls.__name__ for cls in wrapped} == {block}


@pytest.mark.parametrize(
    ("name", "stage"), [("deepspeed-zero2.yaml", 2), ("deepspeed-zero3.yaml", 3)]
)
def test_deepspeed_configs_give_their_zero_stage(monkeypatch, name, stage):
    args, env = launch_environment(name)
    assert args.use_deepspeed and env["ACCELERATE_USE_DEEPSPEED"] == "true"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == stage
    zero = plugin.deepspeed_config["zero_optimization"]
    # Batch, accumulation and clipping are left for Trainer to fill from the recipe.
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == "auto"
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"
    # ZeRO-3 gathers the sharded weights when saving, so a run dir stays from_pretrained-able.
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


needs_launchers = pytest.mark.skipif(
    shutil.which("accelerate") is None or shutil.which("torchrun") is None,
    reason="accelerate/torchrun are not on PATH",
)


@needs_launchers
def test_fsdp_config_on_a_cpu_machine_trains_data_parallel_and_says_so(tmp_path):
    result = subprocess.run(
        [
            "accelerate", "launch", "--config_file", str(CONFIGS / "fsdp.yaml"),
            "--num_processes", "2", "--main_process_port", str(free_port()),
            "-m", "llmkit", *RUN, "-o", str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FSDP needs GPUs" in result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["processes"] == 2 and summary["steps"] == 6


def fake_slurm_tools(folder: Path) -> None:
    """srun that runs its command once as node 0, and scontrol that names this host."""
    tools = {
        "srun": '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nSLURM_NODEID=0 exec "$@"\n',
        "scontrol": "#!/bin/bash\necho 127.0.0.1\n",
    }
    for name, text in tools.items():
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)


@needs_launchers
def test_slurm_template_launches_one_node_of_two_processes(tmp_path):
    fake_slurm_tools(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node001",
        "SLURM_NNODES": "1",
        "GPUS_PER_NODE": "2",
        "MAIN_PROCESS_PORT": str(free_port()),
    }
    result = subprocess.run(
        ["bash", str(CONFIGS / "slurm.sbatch"), *RUN, "-o", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "global batch: 16 per device × 1 accumulation × 2 processes = 32" in result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["processes"] == 2 and (tmp_path / "run" / "model.safetensors").is_file()
