"""The recipe: one typed schema with every default, YAML loading, and `--set` overrides.

A recipe is a YAML mapping whose sections mirror the classes below. Every key a user may set,
its type and its default are declared here and nowhere else, except the `task:` keys: each
task kind declares its own beside its code (`llmkit/tasks/<kind>/__init__.py`), and the
`task` section is validated with the keys of its task.name's kind. Unknown keys are rejected
with the closest valid one suggested; a key of another kind names the kind it belongs to.
"""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, model_validator

from llmkit.errors import UserError, did_you_mean
from llmkit.schema import Section
from llmkit.tasks import KINDS, keys_of, kind_of, owners_of
from llmkit.tasks.kind import TaskKeys

# The repo's recipes/ folder (editable install), or the copy a wheel carries inside the package.
_REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
_PACKAGED_RECIPES = Path(__file__).resolve().parent / "recipes"


class CleaningConfig(Section):
    normalize: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = None  # Unicode form, applied first
    min_chars: int = Field(1, ge=0)  # drop rows shorter than this once stripped (1: drop blanks)
    max_chars: int | None = Field(None, ge=1)  # drop rows longer than this (runaway lines)
    dedup: bool = False  # drop exact duplicate rows, keeping the first


class DataConfig(Section):
    # a file, folder or glob (.txt/.jsonl/... optionally .gz/.bz2/.zst), a known name
    # (wikitext-2, glue/sst2), a hub dataset (owner/name) or `builtin`
    train: str = "builtin"
    validation: str | None = None  # same forms; none: no validation corpus
    subset: str | None = None  # a hub dataset's configuration (allenai/c4: en)
    streaming: bool = False  # read through datasets' IterableDataset (hub: no full download)
    max_tokens: int | None = Field(None, ge=1)  # pack at most this many tokens (whole blocks)
    text_column: str = "text"  # column holding the text in structured sources
    seq_len: int = Field(512, ge=8)  # tokens per packed block
    encode: bool = False  # tokenize: also encode and pack the corpus into seq_len blocks
    local_dir: str | None = None  # local copy of a known name (else $LLMKIT_DATA_DIR/<name>)
    cache_dir: str | None = None  # packed-block cache (else $LLMKIT_CACHE or ~/.cache/llmkit)
    num_proc: int | None = Field(None, ge=1)  # encoding worker processes (default: all cores)
    shard_mb: float = Field(256, gt=0)  # packed blocks per file of the cache, in MB
    validation_fraction: float = Field(0.05, ge=0, lt=1)  # held out when no validation source
    clean: CleaningConfig = CleaningConfig()


class TokenizerConfig(Section):
    path: str | None = None  # an existing tokenizer (or run) directory; skips training
    type: Literal["byte-bpe", "bpe", "wordpiece", "unigram"] = "byte-bpe"
    vocab_size: int = Field(8192, ge=64)
    min_frequency: int = Field(2, ge=1)  # merges/pieces seen fewer times are not learned
    # text drawn evenly across the corpus to train on (bytes; null: all of it), which bounds
    # the memory of training on a large corpus
    train_bytes: int | None = Field(1_000_000_000, ge=1)
    # Special tokens and templates: gpt (<|endoftext|>), bert ([CLS] a [SEP] b [SEP]),
    # roberta (<s> a </s></s> b </s>); auto: bert for wordpiece, gpt otherwise.
    style: Literal["auto", "gpt", "bert", "roberta"] = "auto"
    lowercase: bool = False
    max_length: int | None = Field(None, ge=1)  # saved as model_max_length
    # Characters in the vocabulary whether or not the corpus has them (bpe, wordpiece,
    # unigram), so that unseen common characters are not unknown: cjk-simplified (GB 2312,
    # 6,763), cjk-traditional (Big5, 13,061), cjk (both, 15,441).
    alphabet: Literal["none", "cjk-simplified", "cjk-traditional", "cjk"] = "none"

    @model_validator(mode="after")
    def _alphabet_needs_characters(self):
        if self.alphabet != "none" and self.type == "byte-bpe":
            raise ValueError(
                "tokenizer.alphabet is for bpe, wordpiece and unigram: byte-bpe already "
                "encodes every character (as bytes)"
            )
        return self


class LoraConfig(Section):  # model.lora: finetune with LoRA adapters (peft) instead
    r: int = Field(8, ge=1)  # the rank of each adapter
    alpha: float = Field(16, gt=0)  # scale: alpha / r
    dropout: float = Field(0.05, ge=0, lt=1)
    # the linear layers that get adapters; auto: the family's attention and MLP projections
    target_modules: list[str] | Literal["auto"] = "auto"
    bits: Literal[16, 4] = 16  # 4: QLoRA, the base loaded in 4 bits (CUDA + bitsandbytes)


class ModelConfig(Section):
    # gpt2, llama, nanochat: causal LM; bert, roberta, modernbert: masked LM; t5, bart:
    # encoder-decoder (finetune seq2seq/* builds a new one with tokenizer.path); or model.path
    family: (
        Literal["gpt2", "llama", "nanochat", "bert", "roberta", "modernbert", "t5", "bart"] | None
    ) = None
    path: str | None = None  # continue from this checkpoint (llmkit run or HF folder)
    layers: int = Field(2, ge=1)  # encoder-decoder: this many in each
    hidden: int = Field(128, ge=8)
    heads: int = Field(2, ge=1)
    kv_heads: int | None = Field(None, ge=1)  # llama, nanochat: grouped-query attention
    # default: 4 x hidden (llama's and modernbert's gated MLPs: ~8/3 x hidden, the same weights)
    intermediate: int | None = Field(None, ge=1)
    max_positions: int | None = Field(None, ge=8)  # default: data.seq_len
    dropout: float = Field(0.1, ge=0, lt=1)
    initializer_range: float = Field(0.02, gt=0)
    # share input embeddings and output projection; null: the family's way (nanochat: untied)
    tie_embeddings: bool | None = None
    vocab_size: int | None = Field(None, ge=64)  # default: the tokenizer's, padded
    vocab_multiple: int = Field(64, ge=1)  # pad the vocabulary to a multiple (GPU efficiency)
    # sdpa: PyTorch's fused attention (flash kernels on GPUs); flash_attention_2 needs the
    # flash-attn package and a CUDA GPU
    attention: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    trust_remote_code: bool = False  # run Python shipped with a model.path checkpoint
    lora: LoraConfig | None = None  # finetune: train LoRA adapters only (null: every weight)


class ObjectiveConfig(Section):  # masked-LM commands only
    mlm_probability: float = Field(0.15, gt=0, lt=1)  # tokens selected; 80% [MASK] 10% random
    whole_word_mask: bool = False  # select whole words (then every selected token is [MASK])
    # whole_word_mask's words in text without spaces: jieba (Chinese words, needs
    # llmkit[chinese]), none (gaps and ## pieces only), auto (jieba on mostly-CJK text)
    segmenter: Literal["auto", "jieba", "none"] = "auto"
    nsp: bool = False  # next-sentence prediction (bert family): BertForPreTraining


def _task_keys_tag(section: Any) -> str:
    """Which kind's keys a task section is validated with: its task.name, else its kind."""
    name = section.get("name") if isinstance(section, dict) else getattr(section, "name", None)
    kind = kind_of(name)
    if kind is None:
        return "none"
    return name if name in kind.task_keys else kind.name


def _task_section() -> Any:
    """task: one model per kind (a discriminated union on task.name), so that each kind
    accepts its own keys only; the kinds come from the task registry."""
    members = [Annotated[TaskKeys, Tag("none")]]
    for kind in KINDS.values():
        members.append(Annotated[kind.keys, Tag(kind.name)])
        members += [Annotated[keys, Tag(name)] for name, keys in kind.task_keys.items()]
    return Annotated[Union[tuple(members)], Discriminator(_task_keys_tag)]  # noqa: UP007


TaskSection = _task_section()
_NO_DEFAULT = object()


def _default_elsewhere(key: str) -> Any:
    """task.<key>'s default in the kinds that have it (all agree), else a unique marker."""
    for kind in KINDS.values():
        for keys in (kind.keys, *kind.task_keys.values()):
            if key in keys.model_fields:
                return keys.model_fields[key].default
    return _NO_DEFAULT


class MuonConfig(Section):  # train.muon: used when train.optimizer is muon
    # Defaults from Moonlight (Liu et al. 2025, "Muon is Scalable for LLM Training"): Nesterov
    # momentum 0.95, 5 Newton-Schulz steps, and each update scaled to AdamW's RMS
    # (match_rms_adamw), so that one learning rate serves Muon and AdamW alike.
    lr: float | None = Field(None, gt=0)  # null: train.lr
    momentum: float = Field(0.95, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float | None = Field(None, ge=0)  # null: train.weight_decay
    ns_steps: int = Field(5, ge=1)
    # original: Keller Jordan's scaling, sqrt(max(1, rows/cols)), for Muon-sized learning rates
    # (modded-nanogpt's 0.05, nanochat's 0.02)
    adjust_lr: Literal["match_rms_adamw", "original"] = "match_rms_adamw"


class TrainConfig(Section):
    max_steps: int | None = Field(None, ge=1)  # wins over epochs
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)  # per device
    eval_batch_size: int | None = Field(None, ge=1)  # default: batch_size
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-4, gt=0)
    # adamw: AdamW for every parameter. muon: Muon for the hidden layers' weight matrices,
    # AdamW for embeddings, output layers, norms and biases (llmkit/optimizers.py)
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon: MuonConfig = MuonConfig()
    # wsd: warmup, a constant rate, then a linear decay to 0 over the last decay_fraction
    schedule: Literal["linear", "cosine", "constant", "wsd"] = "cosine"
    # 0.2: the share at which Hägele et al. 2024 ("Scaling Laws and Compute-Optimal Training
    # Beyond Fixed Training Durations") find WSD matching cosine
    decay_fraction: float = Field(0.2, gt=0, le=1)
    warmup: float = Field(0.0, ge=0)  # below 1: a fraction of the steps; else a step count
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)  # 0 turns clipping off
    # auto: bf16 on a CUDA GPU with bf16 units, else fp32 (the GPU fast path, fast_path.py)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool | Literal["auto"] = "auto"  # torch.compile the model; auto: on CUDA GPUs
    liger: bool = False  # Liger's fused Triton kernels (CUDA, `pip install liger-kernel`)
    # output layer + loss in chunks, never the whole batch's logits; auto: on CPUs
    chunked_loss: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False  # recompute activations: less memory, ~30% slower
    log_every: int = Field(10, ge=1)
    eval_every: int | None = Field(None, ge=1)  # steps; always evaluated at start and end
    save_every: int | None = Field(None, ge=1)  # steps between resumable checkpoints
    keep_checkpoints: int | None = Field(2, ge=1)  # newest N kept; null keeps all
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = []  # none by default

    @model_validator(mode="after")
    def _wsd_phases_fit(self) -> TrainConfig:
        # A warmup given in steps is checked when the run knows its steps (training.py).
        if self.schedule == "wsd" and self.warmup < 1 and self.warmup + self.decay_fraction > 1:
            raise ValueError(
                f"train.schedule wsd: warmup {self.warmup} and decay_fraction "
                f"{self.decay_fraction} do not fit in one run (together at most 1)"
            )
        return self


class Recipe(Section):
    name: str = "run"  # default output dir: runs/<name>
    seed: int = 42
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    task: TaskSection = TaskKeys()  # finetune only; each kind's keys: llmkit/tasks/<kind>/
    train: TrainConfig = TrainConfig()
    output_dir: str | None = None  # default: runs/<name>

    @model_validator(mode="before")
    @classmethod
    def _drop_default_keys_of_other_kinds(cls, tree: Any) -> Any:
        """Recipes saved before each kind had keys of its own list every task key; one of
        another kind that holds its default did nothing there, so it is dropped rather than
        rejected (and those run directories' recipe.yaml still load)."""
        task = tree.get("task") if isinstance(tree, dict) else None
        if not isinstance(task, dict):
            return tree
        own = keys_of(task.get("name")).model_fields
        kept = {k: v for k, v in task.items() if k in own or v != _default_elsewhere(k)}
        return {**tree, "task": kept}

    @property
    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def shipped_recipes_dir() -> Path:
    return _PACKAGED_RECIPES if _PACKAGED_RECIPES.is_dir() else _REPO_RECIPES


def shipped_recipe_names() -> list[str]:
    folder = shipped_recipes_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_recipe_file(ref: str) -> Path:
    """A YAML path, or the name of a shipped recipe (`gpt2-tiny` or `gpt2-tiny.yaml` →
    recipes/gpt2-tiny.yaml, when no such file is in the working directory). A path with a
    folder part is always a path."""
    path = Path(ref)
    if path.is_file():
        return path
    if "/" in ref:
        raise UserError(f"recipe file '{ref}' does not exist", "check the path")
    names = shipped_recipe_names()
    if path.suffix in (".yaml", ".yml"):  # a bare file name: the shipped recipe of that name
        shipped = shipped_recipes_dir() / ref
        if shipped.is_file():
            return shipped
        raise UserError(
            f"recipe file '{ref}' is neither in this folder nor a shipped recipe"
            f"{did_you_mean(path.stem, names)}",
            f"shipped recipes: {', '.join(names) or 'none'}; or pass a path to a YAML file",
        )
    shipped = shipped_recipes_dir() / f"{ref}.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(
        f"no recipe named '{ref}'{did_you_mean(ref, names)}",
        f"shipped recipes: {', '.join(names) or 'none'}; or pass a path to a YAML file",
    )


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise UserError(f"recipe {path} is not UTF-8 text ({e.reason})") from e
    except yaml.YAMLError as e:
        raise UserError(f"recipe {path} is not valid YAML: {e}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"recipe {path} must be a mapping of sections, not {type(loaded).__name__}")
    return loaded


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one `--set a.b=value`; the value is parsed as YAML (`3e-4`, `true`, `[a, b]`)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(
            f"--set '{assignment}' is not of the form key=value (e.g. data.seq_len=256)"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"--set {key}: the value '{raw}' is not valid YAML") from e
    *parents, leaf = key.split(".")
    node = tree
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise UserError(f"--set {key}: '{where}' is a value, not a section")
        node = child
    node[leaf] = value


def _fields_at(location: tuple[str | int, ...], task_name: str | None) -> list[str]:
    """The valid keys of the section at `location` (for suggestions)."""
    model: type[BaseModel] = Recipe
    for part in location:
        if model is Recipe and part == "task":
            model = keys_of(task_name)
            continue
        field = model.model_fields.get(str(part))
        annotations = typing.get_args(field.annotation) or (field.annotation,) if field else ()
        sections = [a for a in annotations if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:  # a value, not a section (an optional section counts as one)
            return []
        model = sections[0]
    return list(model.model_fields)


def _explain(error: dict[str, Any], task_name: str | None) -> str:
    location = tuple(error["loc"])
    if location[:1] == ("task",) and len(location) > 2:
        location = location[:1] + location[2:]  # drop the union's tag (the kind)
    key = ".".join(str(part) for part in location)
    if error["type"] == "extra_forbidden":
        owners = owners_of(str(location[-1])) if location[:1] == ("task",) else []
        if owners:
            return (
                f"recipe key '{key}' belongs to {' and '.join(owners)} tasks, not to "
                f"{task_name or 'a recipe without task.name'}"
            )
        parent = ".".join(str(part) for part in location[:-1])
        siblings = [
            f"{parent}.{name}" if parent else name for name in _fields_at(location[:-1], task_name)
        ]
        return f"unknown recipe key '{key}'{did_you_mean(key, siblings)}"
    return f"recipe key '{key}': {error['msg']} (got {error.get('input')!r})"


def validate_recipe(tree: dict[str, Any], *, source: str) -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as e:
        task = tree.get("task") if isinstance(tree, dict) else None
        task_name = task.get("name") if isinstance(task, dict) else None
        problems = [_explain(err, task_name) for err in e.errors()]
        raise UserError(
            f"invalid recipe {source}: " + "; ".join(problems),
            "`llmkit <command> --recipe R --dry-run` prints every key with its default",
        ) from None


# LLMKIT_MAX_STEPS=N caps every run at N training steps: a quick smoke test of recipes and
# commands (the test of README's quick start sets it). It acts as one more --set, so the
# recipe saved with the run says so.
MAX_STEPS_ENV = "LLMKIT_MAX_STEPS"


def load_recipe(ref: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe by path or shipped name, apply `--set` overrides, validate."""
    path = find_recipe_file(ref)
    tree = copy.deepcopy(read_yaml_mapping(path))
    tree.setdefault("name", path.stem)
    for assignment in overrides:
        apply_override(tree, assignment)
    cap = os.environ.get(MAX_STEPS_ENV)
    if cap:
        if not cap.isdigit() or int(cap) < 1:
            raise UserError(f"{MAX_STEPS_ENV}={cap} is not a number of steps", "e.g. 20")
        steps = (tree.get("train") or {}).get("max_steps")
        if not isinstance(steps, int) or steps > int(cap):
            apply_override(tree, f"train.max_steps={cap}")
    return validate_recipe(tree, source=str(path))
