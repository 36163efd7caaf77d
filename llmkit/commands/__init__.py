"""One module per verb, each with one function that the CLI (or a test) calls; this file
lists the verbs: what each does, its flags, the function it calls and how its result is
shown. It stays light (no model code is imported), as `llmkit --help` reads it: a verb that
trains or loads a model names its function through a loader below, which imports it when the
verb runs.

A flag left out is not passed on, so each default is stated once: in the signature of the
function the verb calls. A help text that says a default ("default: 16") is checked against
that signature by tests/test_cli.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmkit import console
from llmkit.commands import recipes, report
from llmkit.tasks import task_names


@dataclass(frozen=True)
class Flag:
    # as typed: "--top-k", "--model -m", "--do-sample/--greedy"; a positional argument: a name
    flags: str
    type: Any
    help: str
    default: Any = None  # None: left out (the function's default); ...: required
    name: str = ""  # the parameter of the verb's function it fills (default: --top-k → top_k)

    def __post_init__(self) -> None:
        if not self.name:
            first = self.flags.split()[0].split("/")[0]
            object.__setattr__(self, "name", first.lstrip("-").replace("-", "_"))

    @property
    def positional(self) -> bool:
        return not self.flags.startswith("-")


@dataclass(frozen=True)
class Verb:
    name: str  # recipes' sub-commands: "recipes ls"
    help: str  # paragraphs; `example` follows them in --help
    example: str
    run: Callable[[], Callable]  # returns the verb's function (importing it then)
    flags: tuple[Flag, ...] = ()
    show: Any = None  # console.show_*(result, as_json); None: the function prints
    takes_json: bool = True
    recipe: bool = False  # runs a recipe: the recipe flags, --dry-run, the run directory flags
    resumable: bool = True  # (recipe verbs) takes --resume
    reads_corpus: bool = False  # (recipe verbs) reads data.train: checked before imports
    # (recipe verbs) returns what --dry-run calls to check and show more, no data read
    describe: Callable[[], Callable] | None = None
    describe_title: str = "model"
    fixed: dict[str, Any] = field(default_factory=dict)  # passed to `run` as well


# Flags several verbs share, declared once.
RECIPE = Flag("--recipe -r", str, "A recipe YAML path, or a shipped recipe's name.", ...)
SET = Flag(
    "--set",
    list[str],
    "Override one recipe key, the value parsed as YAML: --set data.seq_len=256 (repeatable).",
    name="overrides",
)
RECIPE_FLAGS = (
    RECIPE,
    SET,
    Flag("--output-dir -o", Path, "Run directory (default: runs/<recipe name>)."),
    Flag("--overwrite", bool, "Replace a run already in the output directory.", False),
)
RESUME = Flag(
    "--resume",
    str,
    "Continue a run: 'auto' (its newest complete checkpoint, or a fresh start) or a "
    "checkpoint/run path.",
)
DRY_RUN = Flag("--dry-run", bool, "Print the resolved recipe and exit.", False)
MODEL = Flag(
    "--model -m", Path, "A run directory or save_pretrained folder.", ..., name="model_dir"
)
PRECISION = Flag(
    "--precision",
    str,
    "fp32, bf16, fp16 (GPU) or auto (bf16 on a GPU with bf16 units, else fp32). Default: fp32 "
    "for eval-ppl and evaluate, so that perplexities compare across machines and with "
    "lm-evaluation-harness; auto for generate, for speed.",
)
JSON = Flag(
    "--json", bool, "Print the summary as one JSON line, last on stdout.", False, name="as_json"
)
RECIPE_NAME = Flag("name", str, "A name from `llmkit recipes ls`.", ...)


# The verbs' functions that import torch and transformers, each imported when its verb runs:
# importing them here would make `llmkit --help` take seconds instead of a third of one.
# (`report` and `recipes` import neither: their verbs name their functions directly.)
def tokenize_function():
    from llmkit.commands.tokenize import run_tokenize

    return run_tokenize


def pretrain_function():
    from llmkit.commands.pretrain import run_pretrain

    return run_pretrain


def describe_model_function():
    from llmkit.commands.pretrain import describe_model

    return describe_model


def finetune_function():
    from llmkit.commands.finetune import run_finetune

    return run_finetune


def describe_task_function():
    from llmkit.commands.finetune import describe_task

    return describe_task


def eval_ppl_function():
    from llmkit.commands.eval_ppl import run_eval_ppl

    return run_eval_ppl


def evaluate_function():
    from llmkit.commands.evaluate import run_evaluate

    return run_evaluate


def generate_function():
    from llmkit.commands.generate import generate_from_flags

    return generate_from_flags


def answer_function():
    from llmkit.commands.answer import answer_from_flags

    return answer_from_flags


def serve_function():
    from llmkit.commands.serve import serve

    return serve


def export_function():
    from llmkit.commands.export import export_merged

    return export_merged


def sweep_function():
    from llmkit.commands.sweep import sweep_from_flags

    return sweep_from_flags


def _pretraining(objective: str, help: str, example: str) -> Verb:
    """pretrain-clm and pretrain-mlm: one verb, two objectives."""
    return Verb(
        f"pretrain-{objective}",
        help,
        example,
        pretrain_function,
        recipe=True,
        reads_corpus=True,
        show=console.show_summary(),
        describe=describe_model_function,
        fixed={"objective": objective},
    )


VERBS = (
    Verb(
        "tokenize",
        "Train a tokenizer (byte-bpe, bpe, wordpiece, unigram) on a corpus and measure it. "
        "With [bold]data.encode=true[/] it also encodes the corpus and packs it into "
        "[bold]data.seq_len[/] blocks, cached so that pretraining with the same inputs reuses "
        "them.",
        "llmkit tokenize --recipe tokenizer-byte-bpe --set data.train=corpus/",
        tokenize_function,
        recipe=True,
        resumable=False,
        reads_corpus=True,
        show=console.show_summary(),
    ),
    _pretraining(
        "clm",
        "Pretrain a GPT-style causal LM (gpt2, llama or nanochat family) from a recipe's config.",
        "llmkit pretrain-clm --recipe gpt2-tiny --set train.max_steps=100",
    ),
    _pretraining(
        "mlm",
        "Pretrain a BERT-style masked LM (bert, roberta or modernbert; bert also with "
        "next-sentence prediction).",
        "llmkit pretrain-mlm --recipe bert-tiny --set objective.whole_word_mask=true",
    ),
    Verb(
        "finetune",
        "Fine-tune a model on a downstream task (task.name) and report its official metrics. "
        "Writes the model, dev metrics and predictions (and GLUE test predictions in the "
        f"submission format).\n\nTasks: {', '.join(task_names())}; `llmkit recipes ls` "
        "shows the recipe of each.",
        "llmkit finetune --recipe glue-sst2 --set model.path=runs/bert-tiny",
        finetune_function,
        (
            Flag(
                "--eval-only",
                bool,
                "Evaluate model.path (already fine-tuned) without training.",
                False,
            ),
        ),
        recipe=True,
        show=console.show_summary("finetune {task} → {output_dir}"),
        describe=describe_task_function,
        describe_title="task",
    ),
    Verb(
        "eval-ppl",
        "Measure perplexity: token perplexity (HF sliding window), word and byte perplexity "
        "and bits per byte (lm-evaluation-harness), or pseudo-perplexity for a masked LM.\n\n"
        "[bold]token_perplexity[/]: exp(mean NLL), windows of --max-length tokens every "
        "--stride tokens over the rows joined with blank lines; each token scored once with up "
        "to max-length − stride tokens of context. [bold]word/byte perplexity, bits per "
        "byte[/]: each document scored by rolling non-overlapping windows (its first token "
        "predicted from EOS), log-likelihood summed and divided by whitespace-split words "
        "(each CJK character a word) or UTF-8 bytes. [bold]pseudo_perplexity[/] (masked LMs): "
        "each token masked in turn.",
        "llmkit eval-ppl --model runs/gpt2-tiny --data wikitext-2 --stride 512",
        eval_ppl_function,
        (
            MODEL,
            Flag("--data -d", str, "A file, folder, known name or builtin.", ...),
            Flag("--split", str, "Split of a known name (default: test)."),
            Flag(
                "--text-column",
                str,
                "Column to score (default: text, or the only column of strings).",
            ),
            Flag("--max-length", int, "Window length (default: the positions)."),
            Flag("--stride", int, "Sliding-window step (default: half of --max-length)."),
            Flag("--batch-size", int, "Windows per forward pass (default: 16)."),
            PRECISION,
            Flag(
                "--detokenize/--no-detokenize",
                bool,
                "Undo WikiText's tokenization first (default: for WikiText).",
            ),
            Flag("--local-dir", str, "Local copy of a known name."),
            Flag(
                "--metrics",
                str,
                "The figures to compute, comma-separated: token, word, byte, bpb (default: all; "
                "token alone is one pass, the others share the document pass). Masked LMs: "
                "pseudo.",
            ),
            Flag("--output", Path, "Also write the results to this JSON file."),
        ),
        show=console.show_summary("eval-ppl {model} on {data}"),
    ),
    Verb(
        "evaluate",
        "Run lm-evaluation-harness tasks on a model: accuracy on downstream tasks, word and "
        "byte perplexity, as the field reports base models. Each task's figures are saved in "
        "<model>/eval/<task>.json, which llmkit report shows beside the training figures.\n\n"
        "Offline, llmkit's own tasks read local copies: [bold]wikitext_local[/] (WikiText-2 "
        "raw) and [bold]sst2_local[/] (GLUE SST-2 TSVs), from --local-dir or "
        "$LLMKIT_DATA_DIR. Online, any harness task name works (hellaswag, arc_easy, "
        "lambada_openai, ...). Needs the extra: pip install 'llmkit\\[eval]'.",
        "llmkit evaluate --model runs/gpt2-small --tasks wikitext_local,sst2_local "
        "--local-dir data/",
        evaluate_function,
        (
            Flag(
                "--model -m",
                Path,
                "A causal LM or encoder-decoder: run directory, checkpoint or LoRA run.",
                ...,
                name="model_dir",
            ),
            Flag("--tasks -t", str, "Harness tasks, groups or tags, comma-separated.", ...),
            Flag("--num-fewshot", int, "Examples before each (default: the task's)."),
            Flag(
                "--limit",
                float,
                "Score only the first N documents of each task (a fraction if below 1).",
            ),
            Flag("--batch-size", int, "Requests per forward pass (default: 16)."),
            PRECISION,
            Flag(
                "--local-dir",
                str,
                "Where llmkit's local tasks find their copies (a folder holding wikitext-2/, "
                "glue/SST-2/, or the copy itself).",
            ),
            Flag(
                "--include",
                list[Path],
                "A folder of your own task YAMLs, e.g. a harness task pointed at local files "
                "(repeatable).",
            ),
            Flag("--output-dir -o", Path, "Where <task>.json go (default: <model>/eval)."),
        ),
        show=console.show_evaluation,
    ),
    Verb(
        "generate",
        "Generate text with a causal LM or an encoder-decoder (greedy by default), answer "
        "prompts about an image with a vision-language model, or fill masks with a masked LM."
        "\n\nDefaults come from the run's generation_config.json; flags override them.",
        'llmkit generate --model runs/gpt2-tiny --prompt "The meaning" --top-p 0.9',
        generate_function,
        (
            MODEL,
            Flag("--prompt -p", list[str], "A prompt (repeatable)."),
            Flag("--prompts", Path, "A .txt (one prompt a line) or .jsonl file (a prompt field)."),
            Flag(
                "--max-new-tokens",
                int,
                "Tokens to add (default: the run's generation_config.json, else 64).",
            ),
            Flag("--do-sample/--greedy", bool, "Sample instead of greedy decoding."),
            Flag("--temperature", float, "Sampling temperature."),
            Flag(
                "--top-k", int, "Sample among the k likeliest tokens (masked LM: the fills shown)."
            ),
            Flag("--top-p", float, "Nucleus sampling: the smallest set with this mass."),
            Flag("--num-beams", int, "Beam search with this many beams."),
            Flag("--repetition-penalty", float, "Above 1 discourages repeats."),
            Flag("--no-repeat-ngram-size", int, "Never repeat an n-gram of this size."),
            Flag("--num-return-sequences", int, "Completions per prompt."),
            Flag("--stop", list[str], "Cut the completion before this string (repeatable)."),
            Flag("--seed", int, "Seed for reproducible sampling."),
            Flag("--stream", bool, "Print tokens as they are generated.", False),
            Flag("--batch-size", int, "Prompts per generate call, left-padded (default: 8)."),
            PRECISION,
            Flag("--output", Path, "Write one JSON line per completion here."),
            Flag("--image", Path, "An image the prompts are about (vision-language models)."),
            Flag("--chat", bool, "Each prompt is a user turn in the chat template.", False),
            Flag("--system", str, "A system message before each --chat prompt."),
        ),
        show=console.show_generated,
    ),
    Verb(
        "answer",
        "Answer a question with a span of the context (extractive QA).",
        'llmkit answer -m runs/qa-squad -q "Who wrote it?" --context-file doc.txt',
        answer_function,
        (
            Flag(
                "--model -m",
                Path,
                "A fine-tuned extractive QA model (finetune qa/squad).",
                ...,
                name="model_dir",
            ),
            Flag("--question -q", str, "The question.", ...),
            Flag("--context -c", str, "The text holding the answer."),
            Flag("--context-file", Path, "Read the context from a file."),
            Flag("--top-k", int, "Show the k best answers (default: 1)."),
            Flag("--max-answer-tokens", int, "Longest answer span (default: the run's, else 30)."),
            Flag("--max-length", int, "Tokens per window (default: the run's, else up to 384)."),
            Flag(
                "--doc-stride",
                int,
                "Tokens shared by windows (default: the run's, else 1/4).",
                name="stride",
            ),
        ),
        show=console.show_answers,
    ),
    Verb(
        "serve",
        "Serve a run over HTTP until stopped: a causal LM or encoder-decoder behind "
        "OpenAI-compatible /v1/completions and /v1/chat/completions (streaming, requests "
        "batched), a masked LM at /v1/fill-mask, a fine-tuned classifier, QA or NER model at "
        "/v1/classify, /v1/answer or /v1/entities; a web page at /, GET /health, GET "
        "/v1/models. Needs the extra: pip install 'llmkit\\[serve]'.",
        'llmkit serve --model runs/sft-chat --port 8000 --api-key "$KEY"',
        serve_function,
        (
            MODEL,
            Flag("--host", str, "Address to listen on (default: 127.0.0.1, this machine only)."),
            Flag("--port", int, "Port to listen on (default: 8000; 0 picks a free one)."),
            Flag(
                "--api-key",
                str,
                "Require Authorization: Bearer <key> on every API route (default: "
                "$LLMKIT_API_KEY, else none).",
            ),
            Flag(
                "--max-batch-size",
                int,
                "Most rows (prompts × n) one generate call batches (default: 32).",
            ),
            Flag("--timeout", float, "Seconds a request may take (default: 120).", name="timeout"),
            PRECISION,
        ),
        takes_json=False,
    ),
    Verb(
        "export",
        "Merge a LoRA fine-tuning run (its adapter and its base model) into a plain "
        "transformers checkpoint, with the run's tokenizer and generation settings.",
        "llmkit export --model runs/glue-sst2-lora --output-dir runs/glue-sst2-merged",
        export_function,
        (
            Flag(
                "--model -m", Path, "A run directory holding a LoRA adapter.", ..., name="model_dir"
            ),
            Flag("--output-dir -o", Path, "Where the merged model goes.", ...),
        ),
        show=console.show_summary("export → {output_dir}"),
    ),
    Verb(
        "report",
        "Compare finished runs: the recipe keys that differ, final metrics, tokens/s and wall "
        "time in one table; loss against steps and against tokens as PNG plots; report.md.",
        "llmkit report runs/lr-sweep/* --output reports/lr",
        lambda: report.run_report,
        (
            Flag("run_dirs", list[Path], "Finished run directories to compare.", ...),
            Flag(
                "--output -o",
                Path,
                "Where plots and report.md go (default: report/ beside the runs).",
            ),
        ),
        show=console.show_report,
    ),
    Verb(
        "sweep",
        "Run a command over a grid of recipe values (--grid), or search them (--space): "
        "Optuna's TPE, random or grid sampling, with pruning, parallel trials and several "
        "seeds per trial. Each run (point, trial) gets its own directory under the sweep folder; "
        "a failed one is reported and the sweep goes on; re-running the same command finishes "
        "what is left (a search's study is kept in the folder's study.db). Then the runs are "
        "compared (llmkit report).",
        "llmkit sweep pretrain-clm --recipe gpt2-tiny --space train.lr=loguniform:1e-4:3e-3 "
        "--trials 12 --prune median --set train.eval_every=20",
        sweep_function,
        (
            Flag("command", str, "pretrain-clm, pretrain-mlm or finetune.", ...),
            RECIPE,
            Flag("--grid", list[str], "KEY=V1,V2,...: one axis of a grid (repeatable)."),
            Flag(
                "--space",
                list[str],
                "KEY=loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,... "
                "(repeatable).",
                name="spaces",
            ),
            Flag("--search", str, "tpe (default with --space), random or grid."),
            Flag("--trials", int, "How many trials (default: the grid's size, else 12)."),
            Flag(
                "--metric",
                str,
                "The metrics.json key to optimise (default: eval_loss; finetune: the task's).",
            ),
            Flag("--direction", str, "minimize or maximize (default: from the metric)."),
            Flag("--prune", str, "median or hyperband: stop trials behind the others."),
            Flag("--parallel", int, "Trials at once: one GPU each, or a share of the cores."),
            Flag(
                "--seeds",
                int,
                "Runs per trial with seeds recipe.seed + 0, 1, ...; ranked by the mean.",
            ),
            SET,
            Flag("--output-dir -o", Path, "Sweep folder (default: runs/<name>-sweep, -search)."),
            Flag(
                "--random",
                int,
                "Run N points drawn from the grid instead of all of it.",
                name="sample",
            ),
            Flag("--seed", int, "Seed for --random and the samplers (default: 0)."),
            Flag(
                "--print",
                bool,
                "Print one shell command per grid point instead.",
                False,
                name="print_only",
            ),
        ),
        show=console.show_sweep,
    ),
    Verb(
        "recipes ls",
        "List the shipped recipes and launch configs with what each is, and the fine-tuning "
        "tasks with the recipes that run them.",
        "llmkit recipes ls",
        lambda: recipes.list_recipes,
        show=console.show_recipes,
    ),
    Verb(
        "recipes show",
        "Print a shipped recipe.",
        "llmkit recipes show gpt2-small",
        lambda: recipes.recipe_text,
        (RECIPE_NAME,),
        show=console.show_text,
        takes_json=False,
    ),
    Verb(
        "recipes cp",
        "Copy a shipped recipe to edit and run with --recipe PATH.",
        "llmkit recipes cp gpt2-small my-gpt.yaml",
        lambda: recipes.copy_recipe,
        (
            RECIPE_NAME,
            Flag("destination", Path, "A file path, or a folder to copy it into.", ...),
        ),
        show=console.show_path,
    ),
)
