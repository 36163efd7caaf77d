"""`llmkit generate`: complete prompts with a causal LM or an encoder-decoder, prompts about
an image with a vision-language model, or fill masks with a masked LM."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape
from transformers import set_seed

from llmkit.checkpoints import require_model_dir
from llmkit.console import is_main_process, out
from llmkit.data.streams import json_record
from llmkit.errors import UserError
from llmkit.generation import (
    DecodingOptions,
    beams,
    fill_masks,
    generate_batch,
    generate_from_image,
    generate_streaming,
    generation_config_for,
    sequences_per_prompt,
)
from llmkit.models import (
    is_vision_language,
    load_for_inference,
    load_vision_language,
)


def read_prompts(prompts: list[str], prompts_file: Path | None) -> list[str]:
    """--prompt values, or a .txt file (one per line) or .jsonl file (a `prompt` field)."""
    if prompts and prompts_file:
        raise UserError("give prompts either with --prompt or with --prompts, not both")
    if not prompts_file:
        if not prompts:
            raise UserError("no prompt given", 'use --prompt "text" (repeatable) or --prompts FILE')
        return list(prompts)
    path = Path(prompts_file)
    if not path.is_file():
        raise UserError(f"prompts file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"prompts file {path} is not UTF-8 text") from e
    if path.suffix == ".jsonl":
        found = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = json_record(line, f"{path}:{number}")
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise UserError(f'{path}:{number} has no "prompt" text field')
            found.append(record["prompt"])
    else:
        found = [line for line in lines if line.strip()]
    if not found:
        raise UserError(f"prompts file {path} holds no prompts")
    return found


def chat_prompts(tokenizer, prompts: list[str], system: str | None, model_dir) -> list[str]:
    """Each prompt as the user's turn, rendered with the model's chat template up to the start
    of the assistant's answer."""
    if not tokenizer.chat_template:
        raise UserError(
            f"--chat needs a chat template, and the tokenizer of {model_dir} has none",
            "fine-tune the model on chats first (finetune sft/chat), or drop --chat",
        )
    before = [{"role": "system", "content": system}] if system else []
    return [
        tokenizer.apply_chat_template(
            [*before, {"role": "user", "content": prompt}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for prompt in prompts
    ]


def read_image(path: Path):
    """The --image file as an RGB picture, or one clear error."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file {path} does not exist")
    try:
        with Image.open(path) as picture:
            return picture.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path} is not an image that Pillow can read ({e})") from e


def generate_from_flags(
    model_dir: str | Path,
    *,
    prompt: list[str] = (),
    prompts: Path | None = None,
    stop: list[str] = (),
    **values: Any,
) -> dict[str, Any]:
    """`llmkit generate`'s flags: the prompts from --prompt or --prompts, the decoding flags
    as DecodingOptions, the rest as run_generate takes them."""
    decoding = {k: values.pop(k) for k in DecodingOptions.__dataclass_fields__ if k in values}
    options = DecodingOptions(**decoding, stop=list(stop))
    return run_generate(str(model_dir), read_prompts(list(prompt), prompts), options, **values)


def run_generate(
    model_dir: str,
    prompts: list[str],
    options: DecodingOptions,
    *,
    batch_size: int = 8,
    seed: int | None = None,
    stream: bool = False,
    precision: str = "auto",
    output: Path | None = None,
    show: bool = True,
    image: Path | None = None,
    chat: bool = False,
    system: str | None = None,
) -> dict[str, Any]:
    """`chat`: each prompt is a user turn (after `system`, if given) in the model's chat
    template, and the completion is the assistant's answer, ending at the end of its turn."""
    if system is not None and not chat:
        raise UserError("--system is for --chat prompts", "add --chat")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    picture = read_image(image) if image is not None else None
    folder = require_model_dir(model_dir, "--model")
    if is_vision_language(folder):
        if stream:
            raise UserError("--stream is for text-only models; drop it with this model")
        model, processor = load_vision_language(folder, precision)
        tokenizer, modeling = processor.tokenizer, "image-text"
    elif picture is not None:
        raise UserError(
            f"--image needs a vision-language model; {model_dir} reads text only",
            "use a checkpoint that loads with AutoModelForImageTextToText (LLaVA, Qwen2-VL, ...)",
        )
    else:
        model, tokenizer, modeling = load_for_inference(model_dir, precision)
    if chat:
        prompts = chat_prompts(tokenizer, prompts, system, model_dir)
    if seed is not None:
        set_seed(seed)
    records: list[dict[str, Any]] = []
    if modeling == "mlm":
        records = fill_masks(model, tokenizer, prompts, top_k=options.top_k or 5)
        if show and is_main_process():
            for record in records:
                fills = ", ".join(f"{f['token']} ({f['score']:.3f})" for f in record["fills"])
                out.print(f"[bold]{escape(record['prompt'])}[/] → {escape(fills)}", highlight=False)
        summary: dict[str, Any] = {
            "command": "generate",
            "model": model_dir,
            "mode": "fill-mask",
            "prompts": len(prompts),
        }
    else:
        config = generation_config_for(model, tokenizer, options)
        # A causal LM continues its prompt; an encoder-decoder's or a vision-language
        # model's output answers it, and is shown after an arrow, not glued to the prompt.
        joint = "" if modeling == "clm" else " → "
        completions = []
        seconds = 0.0  # spent in generate calls; a batch's completions share one call
        if modeling == "image-text":
            completions = generate_from_image(
                model, processor, prompts, picture, config, options.stop
            )
            # a prompt's sequences share one generate call
            seconds = sum(c.seconds for c in completions[:: sequences_per_prompt(config)])
            if show and is_main_process():
                for c in completions:
                    shown = f"[bold]{escape(c.prompt)}[/]{joint}{escape(c.completion)}"
                    out.print(shown, highlight=False)
        elif stream:
            for prompt in prompts:
                if show and is_main_process():
                    out.print(f"[bold]{escape(prompt)}[/]{joint}", end="", highlight=False)
                write = (
                    (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
                    if show
                    else (lambda text: None)
                )
                completions.append(
                    generate_streaming(model, tokenizer, prompt, config, options.stop, write)
                )
                seconds += completions[-1].seconds
                if show and is_main_process():
                    out.print()
        else:
            for start in range(0, len(prompts), batch_size):
                batch = generate_batch(
                    model, tokenizer, prompts[start : start + batch_size], config, options.stop
                )
                completions.extend(batch)
                seconds += batch[0].seconds
                if show and is_main_process():
                    for c in batch:
                        shown = f"[bold]{escape(c.prompt)}[/]{joint}{escape(c.completion)}"
                        out.print(shown, highlight=False)
        records = [vars(c) for c in completions]
        new_tokens = sum(c.completion_tokens for c in completions)
        summary = {
            "command": "generate",
            "model": model_dir,
            "mode": "sample"
            if config.do_sample
            else ("beam search" if beams(config) > 1 else "greedy"),
            "prompts": len(prompts),
            **({"image": str(image)} if image is not None else {}),
            "completions": len(completions),
            "new_tokens": new_tokens,
            "seconds": seconds,
            "tokens_per_second": new_tokens / seconds if seconds else 0.0,
        }
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    summary["results"] = records
    return summary
