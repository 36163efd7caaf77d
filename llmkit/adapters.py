"""LoRA adapters (peft) for every fine-tuning task: putting them on a model, loading a run that
holds one, and merging it into a plain checkpoint (`llmkit export`, in `commands/export.py`).

An adapter run directory holds `adapter_model.safetensors` and `adapter_config.json` (whose
`base_model_name_or_path` names the base checkpoint), the fine-tuned model's `config.json`
(its labels, its vocabulary size) and its tokenizer. peft loads it with
`PeftModel.from_pretrained(base, run_dir)`; `llmkit export` writes the merged model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llmkit.checkpoints import ADAPTER_CONFIG, checkpoint_options
from llmkit.errors import UserError
from llmkit.recipe import LoraConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# `auto`: the attention and MLP projections of each family (peft's own default is attention
# only, and only some of it).
TARGET_MODULES = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "nanochat": ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"],
    "bert": ["query", "key", "value", "dense"],
    "modernbert": ["Wqkv", "Wo", "Wi"],  # Wo: the attention's and the MLP's output
    "roberta": ["query", "key", "value", "dense"],
    "t5": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}
# The head class a fine-tuning run loads with → peft's task type (which also keeps a new
# classification head trainable and saved beside the adapter).
TASK_TYPES = {
    "AutoModelForSequenceClassification": "SEQ_CLS",
    "AutoModelForTokenClassification": "TOKEN_CLS",
    "AutoModelForQuestionAnswering": "QUESTION_ANS",
    "AutoModelForSeq2SeqLM": "SEQ_2_SEQ_LM",
    "AutoModelForCausalLM": "CAUSAL_LM",
}


def check_quantization(lora: LoraConfig) -> None:
    """QLoRA loads the base in 4 bits with bitsandbytes' CUDA kernels: GPUs only."""
    if lora.bits == 4 and not torch.cuda.is_available():
        raise UserError(
            "model.lora.bits 4 (QLoRA) needs a CUDA GPU (bitsandbytes' 4-bit kernels)",
            "on this machine use model.lora.bits 16 (plain LoRA)",
        )


def quantization_options(lora: LoraConfig | None) -> dict:
    """from_pretrained options that load the base model in 4 bits for QLoRA (else none)."""
    if lora is None or lora.bits != 4:
        return {}
    check_quantization(lora)
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    }


def _linear_names(model: PreTrainedModel) -> list[str]:
    """The last name part of every linear layer (what target_modules may name)."""
    from transformers.pytorch_utils import Conv1D

    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear | Conv1D)
        }
    )


def add_lora(model: PreTrainedModel, lora: LoraConfig, head: str, *, new_token_ids: list[int] = ()):
    """`model` with LoRA adapters on `lora.target_modules` (auto: the family's attention and
    MLP projections), only they (and a new head) trainable. When tokens were just added to the
    vocabulary, the embeddings (and the output layer, kept tied) train whole as well: a new
    token's row starts untrained. (peft's `trainable_token_indices` would train those rows
    alone, but TRL's fused loss reads the output layer's weight and would not see them.)"""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    model_type = model.config.model_type
    targets = lora.target_modules
    if targets == "auto":
        if model_type not in TARGET_MODULES:
            raise UserError(
                f"model.lora.target_modules auto knows no {model_type} layers",
                f"name them: model.lora.target_modules [{', '.join(_linear_names(model)[:6])}]",
            )
        targets = TARGET_MODULES[model_type]
    present = set(_linear_names(model))
    wanted = [name for name in targets if name in present]
    missing = [name for name in targets if name not in present]
    if lora.target_modules != "auto" and missing or not wanted:
        raise UserError(
            f"model.lora.target_modules: {', '.join(missing or targets)} "
            f"{'is' if len(missing) == 1 else 'are'} not a linear layer of this {model_type}",
            f"its linear layers: {', '.join(sorted(present))}",
        )
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model)
    embeddings = []
    if new_token_ids:
        layers = {module: name for name, module in model.named_modules()}
        embeddings = [layers[model.get_input_embeddings()]]
        output = model.get_output_embeddings()
        if output is not None and output in layers:
            embeddings.append(layers[output])
    config = PeftLoraConfig(
        task_type=TASK_TYPES[head],
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=wanted,
        modules_to_save=[name.rsplit(".", 1)[-1] for name in embeddings] or None,
        ensure_weight_tying=bool(embeddings),
    )
    return get_peft_model(model, config)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "trainable_parameters": trainable,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def base_model_of(run_dir: str | Path) -> str:
    config = json.loads((Path(run_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise UserError(
            f"the adapter in {run_dir} was trained on {base!r}, which is not a folder here",
            "the base checkpoint must be where it was when the adapter was trained",
        )
    return base


def load_merged(run_dir: str | Path, model_class=None, **options) -> PreTrainedModel:
    """An adapter run as one plain model: its base loaded as `model_class` (default: the
    run's architecture) with the run's config (labels, vocabulary size), the adapter applied
    and merged in."""
    import transformers
    from peft import PeftModel

    base_dir = base_model_of(run_dir)
    config = transformers.AutoConfig.from_pretrained(run_dir)
    architecture = model_class or getattr(transformers, (config.architectures or ["AutoModel"])[0])
    base = architecture.from_pretrained(
        base_dir, config=config, **checkpoint_options(Path(base_dir)), **options
    )
    try:
        model = PeftModel.from_pretrained(base, str(run_dir))
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot apply the adapter in {run_dir} to {base_dir}: {e}") from e
    return model.merge_and_unload()
