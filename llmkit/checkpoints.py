"""What a saved-model folder must hold before anything loads it: a model directory (config.json),
safetensors weights unless pickles are allowed, and whether it is a LoRA run.

Low on purpose: `models` (which loads plain checkpoints) and `adapters` (which loads LoRA runs)
both check folders with it, and neither has to import the other for that.
"""

from __future__ import annotations

import os
from pathlib import Path

from llmkit.errors import UserError

PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
ADAPTER_CONFIG = "adapter_config.json"  # peft's: a LoRA run directory holds it


def require_model_dir(path: str | Path, key: str) -> Path:
    """The folder of a saved model, or a UserError saying what `key` points at instead."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{key} {folder}: the model directory does not exist")
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{key} {folder} is not a model directory (no config.json)",
            "point it at an llmkit run directory or a save_pretrained folder",
        )
    return folder


def checkpoint_options(folder: Path, *, trust_remote_code: bool = False) -> dict:
    """from_pretrained options: safetensors only unless LLMKIT_ALLOW_PICKLE=1, and no remote
    code unless the recipe sets model.trust_remote_code (a pickle or a repo's Python file can
    run anything when loaded)."""
    allow_pickle = os.environ.get("LLMKIT_ALLOW_PICKLE") == "1"
    has_safetensors = any(folder.glob("*.safetensors"))
    if not has_safetensors and any(p for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)):
        if not allow_pickle:
            raise UserError(
                f"{folder} holds only pickle weights (.bin/.pt), which can run code when loaded",
                "convert them to safetensors, or set LLMKIT_ALLOW_PICKLE=1 if you trust the file",
            )
        return {"use_safetensors": False, "trust_remote_code": trust_remote_code}
    return {"use_safetensors": True, "trust_remote_code": trust_remote_code}


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()
