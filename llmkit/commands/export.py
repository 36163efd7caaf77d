"""`llmkit export`: a LoRA run merged into a plain transformers checkpoint (its base with the
adapter folded in), with the run's tokenizer and generation settings."""

from __future__ import annotations

from pathlib import Path

from transformers import GenerationConfig

from llmkit.adapters import base_model_of, load_merged, parameter_counts
from llmkit.checkpoints import ADAPTER_CONFIG, is_adapter_dir, require_model_dir
from llmkit.errors import UserError
from llmkit.rundir import check_output_dir
from llmkit.tokenizer import load_tokenizer, save_tokenizer


def export_merged(model_dir: str | Path, output_dir: str | Path) -> dict:
    """Merge the adapter run in `model_dir` into a plain checkpoint in `output_dir`."""
    folder = require_model_dir(model_dir, "--model")
    if not is_adapter_dir(folder):
        raise UserError(
            f"{model_dir} holds no LoRA adapter ({ADAPTER_CONFIG})", "it is a plain checkpoint"
        )
    output = Path(output_dir)
    check_output_dir(output, overwrite=False)
    model = load_merged(folder)
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.save_pretrained(output)
    save_tokenizer(load_tokenizer(folder), output)
    return {
        "command": "export",
        "model": str(model_dir),
        "base_model": base_model_of(folder),
        "output_dir": str(output),
        "architecture": model.config.architectures[0],
        **parameter_counts(model),
    }
