"""Supervised fine-tuning of causal LMs (GPT-2, Llama) on chat, prompt/completion or plain
text data, with the loss on the answers only. `data.py`: the layouts, the chat template, and
the encoding that marks which tokens are trained (shared by training and the --dry-run
audit); `finetune.py`: the model, TRL's SFTTrainer settings, and the evaluation."""

from __future__ import annotations

from pydantic import Field

from llmkit.tasks.kind import HubDatasetKeys, TaskKind


class SftKeys(HubDatasetKeys):
    # the columns holding the layout's fields when they are named otherwise, e.g.
    # {prompt: question, completion: answer}; the fields: messages, prompt, completion, text
    columns: dict[str, str] = {}
    # the chat template (sft/chat): null takes the tokenizer's own; chatml, or a .jinja file
    chat_template: str | None = None
    # the token that ends an assistant turn and stops generation (default: the template's:
    # <|im_end|> for chatml, else the tokenizer's EOS)
    end_of_turn: str | None = None
    packing: bool = False  # several examples per row, never attending to each other
    # validation examples answered by greedy generation for eval_exact_match (0: none)
    generate_examples: int = Field(200, ge=0)
    max_new_tokens: int = Field(64, ge=1)  # the longest generated answer


KIND = TaskKind(
    name="sft",
    tasks=("chat", "completion", "text"),
    keys=SftKeys,
    head="AutoModelForCausalLM",
)
