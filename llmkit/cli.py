"""The `llmkit` command line: parse the recipe and overrides, call one command function.

Every command goes through `guarded`, the one error boundary: a user error prints one message
and exits 2, a failed run exits 1, Ctrl-C exits 130; LLMKIT_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from llmkit import __version__
from llmkit.console import err, is_main_process, out, print_grid, print_json, print_table
from llmkit.errors import EXIT_OK, describe, exit_code_for

app = typer.Typer(
    name="llmkit",
    help="Train tokenizers, pretrain, fine-tune, evaluate and sample language models.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,  # `guarded` decides what an error looks like
    context_settings={"help_option_names": ["-h", "--help"]},
)

RecipeOption = typer.Option(
    ..., "--recipe", "-r", help="A recipe YAML path, or a shipped recipe's name."
)
SetOption = typer.Option(
    None,
    "--set",
    help="Override one recipe key, the value parsed as YAML: --set data.seq_len=256 (repeatable).",
)
OutputDirOption = typer.Option(
    None, "--output-dir", "-o", help="Run directory (default: runs/<recipe name>)."
)
OverwriteOption = typer.Option(
    False, "--overwrite", help="Replace a run already in the output directory."
)
DryRunOption = typer.Option(False, "--dry-run", help="Print the resolved recipe and exit.")
# The commands that use a trained model (eval-ppl, generate) take it the same way.
ModelOption = typer.Option(..., "--model", "-m", help="A run directory or save_pretrained folder.")
JsonOption = typer.Option(
    False, "--json", help="Print the summary as one JSON line, last on stdout."
)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """The error boundary: every failure ends in one message and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as error:
            if os.environ.get("LLMKIT_DEBUG"):
                traceback.print_exc()
            if is_main_process():
                err.print(describe(error), style="bold red", highlight=False, markup=False)
            raise typer.Exit(exit_code_for(error)) from None

    wrapper.__doc__ = unwrapped_help(command.__doc__)
    return wrapper


def unwrapped_help(doc: str | None) -> str | None:
    """A docstring's paragraphs each on one line: rich wraps the help to the terminal, and
    lines already wrapped in the source would break a second time, raggedly."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _report(title: str, summary: dict[str, Any], as_json: bool) -> None:
    # With --json the table goes to stderr, so stdout carries only the JSON line.
    print_table(title, summary, to_stderr=as_json)
    if as_json:
        print_json(summary)


def _version(value: bool) -> None:
    if value:
        out.print(f"llmkit {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train tokenizers, pretrain, fine-tune, evaluate and sample language models."""


ResumeOption = typer.Option(
    None,
    "--resume",
    help="Continue a run: 'auto' (its newest complete checkpoint, or a fresh start) or a "
    "checkpoint/run path.",
)
EvalOnlyOption = typer.Option(
    False, "--eval-only", help="Evaluate model.path (already fine-tuned) without training."
)


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """A command function imported when called: `llmkit --help` stays quick."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


@dataclass(frozen=True)
class RecipeCommand:
    """A command that runs a recipe: the shape tokenize, pretrain-* and finetune share."""

    name: str
    help: str  # what it does (paragraphs); `example` follows it in --help
    example: str
    run: Callable[..., dict[str, Any]]  # (recipe, output_dir=, overwrite=, [options]) → summary
    # The summary table's title (default: "<name> → <output dir>").
    title: Callable[[dict[str, Any]], str] | None = None
    # What a dry run checks and shows beyond the resolved recipe (a table, or None).
    describe: Callable[[Any], dict[str, Any] | None] = lambda recipe: None
    resumable: bool = True  # takes --resume
    options: tuple[tuple[str, Any, Any], ...] = ()  # (parameter, type, typer.Option) more


def register(spec: RecipeCommand) -> None:
    def command(
        recipe: str, overrides: list[str], dry_run: bool, as_json: bool, **options: Any
    ) -> None:
        from llmkit.recipe import load_recipe

        resolved = load_recipe(recipe, overrides or [])
        if dry_run:
            shown = spec.describe(resolved)  # may raise: what can be checked without data
            out.print(resolved.to_yaml(), end="", highlight=False, markup=False)
            if shown:
                print_table("model", shown)
            return
        summary = spec.run(resolved, **options)
        title = spec.title(summary) if spec.title else f"{spec.name} → {summary['output_dir']}"
        _report(title, summary, as_json)

    shared = [
        ("recipe", str, RecipeOption),
        ("overrides", list[str], SetOption),
        ("output_dir", Path, OutputDirOption),
        ("overwrite", bool, OverwriteOption),
        *([("resume", str, ResumeOption)] if spec.resumable else []),
        *spec.options,
        ("dry_run", bool, DryRunOption),
        ("as_json", bool, JsonOption),
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    command.__signature__ = inspect.Signature(
        [inspect.Parameter(name, keyword, default=o, annotation=t) for name, t, o in shared]
    )
    command.__doc__ = f"{spec.help}\n\nExample: [cyan]{spec.example}[/]"
    command.__name__ = spec.name.replace("-", "_")
    app.command(spec.name)(guarded(command))


def _pretraining(objective: str, help: str, example: str) -> RecipeCommand:
    """pretrain-clm and pretrain-mlm: one command, two objectives."""
    pretrain = "llmkit.commands.pretrain"
    return RecipeCommand(
        f"pretrain-{objective}",
        help,
        example,
        functools.partial(_lazy(pretrain, "run_pretrain"), objective=objective),
        describe=functools.partial(_lazy(pretrain, "describe_model"), objective=objective),
    )


def _check_task(recipe: Any) -> None:
    """A finetune dry run: the task name is checked (the data is not read)."""
    _lazy("llmkit.tasks", "check_task_name")(recipe.task.name)


for _spec in (
    RecipeCommand(
        "tokenize",
        "Train a tokenizer (byte-bpe, bpe, wordpiece, unigram) on a corpus and measure it. With "
        "[bold]data.encode=true[/] it also encodes the corpus and packs it into "
        "[bold]data.seq_len[/] blocks, cached so that pretraining with the same inputs reuses "
        "them.",
        "llmkit tokenize --recipe tokenizer-byte-bpe --set data.train=corpus/",
        _lazy("llmkit.commands.tokenize", "run_tokenize"),
        resumable=False,
    ),
    _pretraining(
        "clm",
        "Pretrain a GPT-style causal LM (gpt2 or llama family) from a recipe's config.",
        "llmkit pretrain-clm --recipe gpt2-tiny --set train.max_steps=100",
    ),
    _pretraining(
        "mlm",
        "Pretrain a BERT-style masked LM (bert or roberta; bert also with next-sentence "
        "prediction).",
        "llmkit pretrain-mlm --recipe bert-tiny --set objective.whole_word_mask=true",
    ),
    RecipeCommand(
        "finetune",
        "Fine-tune a model on a downstream task (task.name) and report its official metrics."
        "\n\nTasks: glue/<task> (classification), qa/squad (extractive QA), ner/conll "
        "(entities), seq2seq/summarization and seq2seq/translation (T5/BART). Writes the model, "
        "dev metrics and predictions (and GLUE test predictions in the submission format).",
        "llmkit finetune --recipe glue-sst2 --set model.path=runs/bert-tiny",
        _lazy("llmkit.commands.finetune", "run_finetune"),
        title=lambda summary: f"finetune {summary['task']} → {summary['output_dir']}",
        describe=_check_task,
        options=(("eval_only", bool, EvalOnlyOption),),
    ),
):
    register(_spec)


def quiet_libraries() -> None:
    """The CLI shows its own progress and errors; the libraries' bars and notices are noise."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


@app.command("eval-ppl")
@guarded
def eval_ppl(
    model: Path = ModelOption,
    data: str = typer.Option(..., "--data", "-d", help="A file, folder, known name or builtin."),
    split: str = typer.Option("test", "--split", help="Split of a known name."),
    text_column: str = typer.Option(None, "--text-column", help="Column to score (default: text)."),
    max_length: int = typer.Option(
        None, "--max-length", help="Window length (default: the model's positions)."
    ),
    stride: int = typer.Option(
        None, "--stride", help="Sliding-window step (default: half of --max-length)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Windows per forward pass."),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 (default: perplexities comparable across machines and with "
        "lm-evaluation-harness), bf16, fp16 (GPU), or auto (bf16 on a GPU).",
    ),
    detokenize: bool = typer.Option(
        None,
        "--detokenize/--no-detokenize",
        help="Undo WikiText's tokenization before scoring documents (default: for WikiText).",
    ),
    local_dir: str = typer.Option(None, "--local-dir", help="Local copy of a known name."),
    output: Path = typer.Option(None, "--output", help="Also write the results to this JSON file."),
    as_json: bool = JsonOption,
) -> None:
    """Measure perplexity: token perplexity (HF sliding window), word and byte perplexity and bits
    per byte (lm-evaluation-harness), or pseudo-perplexity for a masked LM.

    [bold]token_perplexity[/]: exp(mean NLL), windows of --max-length tokens every --stride tokens
    over the rows joined with blank lines; each token scored once with up to max-length − stride
    tokens of context. [bold]word/byte perplexity, bits per byte[/]: each document scored by
    rolling non-overlapping windows (its first token predicted from EOS), log-likelihood summed
    and divided by whitespace-split words or UTF-8 bytes. [bold]pseudo_perplexity[/] (masked LMs):
    each token masked in turn.

    Example: [cyan]llmkit eval-ppl --model runs/gpt2-tiny --data wikitext-2 --stride 512[/]
    """
    from llmkit.commands.eval_ppl import run_eval_ppl

    results = run_eval_ppl(
        str(model),
        data,
        split=split,
        text_column=text_column,
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        precision=precision,
        detokenize=detokenize,
        local_dir=local_dir,
        output=output,
    )
    _report(f"eval-ppl {model} on {results['data']}", results, as_json)


@app.command()
@guarded
def generate(
    model: Path = ModelOption,
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="A prompt (repeatable)."),
    prompts: Path = typer.Option(
        None, "--prompts", help="A .txt file (one prompt a line) or .jsonl (prompt field)."
    ),
    max_new_tokens: int = typer.Option(
        None, "--max-new-tokens", help="Tokens to add (default 64)."
    ),
    do_sample: bool = typer.Option(
        None, "--do-sample/--greedy", help="Sample instead of greedy decoding."
    ),
    temperature: float = typer.Option(None, "--temperature", help="Sampling temperature."),
    top_k: int = typer.Option(
        None, "--top-k", help="Sample among the k likeliest tokens (masked LM: fills shown)."
    ),
    top_p: float = typer.Option(
        None, "--top-p", help="Nucleus sampling: the smallest set with this mass."
    ),
    num_beams: int = typer.Option(None, "--num-beams", help="Beam search with this many beams."),
    repetition_penalty: float = typer.Option(
        None, "--repetition-penalty", help="Above 1 discourages repeats."
    ),
    no_repeat_ngram_size: int = typer.Option(
        None, "--no-repeat-ngram-size", help="Never repeat an n-gram of this size."
    ),
    num_return_sequences: int = typer.Option(
        None, "--num-return-sequences", help="Completions per prompt."
    ),
    stop: list[str] = typer.Option(
        None, "--stop", help="Cut the completion before this string (repeatable)."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for reproducible sampling."),
    stream: bool = typer.Option(False, "--stream", help="Print tokens as they are generated."),
    batch_size: int = typer.Option(
        8, "--batch-size", help="Prompts per generate call (left-padded)."
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto (default: bf16 on a GPU for speed, else fp32), fp32, bf16 or fp16 (GPU).",
    ),
    output: Path = typer.Option(None, "--output", help="Write one JSON line per completion here."),
    image: Path = typer.Option(
        None, "--image", help="An image the prompts are about (vision-language models)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Generate text with a causal LM or an encoder-decoder (greedy by default), answer
    prompts about an image with a vision-language model, or fill masks with a masked LM.

    Defaults come from the run's generation_config.json; flags override them.

    Example: [cyan]llmkit generate --model runs/gpt2-tiny --prompt "The meaning" --top-p 0.9[/]
    """
    from llmkit.commands.generate import read_prompts, run_generate
    from llmkit.generation import DecodingOptions

    options = DecodingOptions(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        num_return_sequences=num_return_sequences,
        stop=list(stop or []),
    )
    summary = run_generate(
        str(model),
        read_prompts(list(prompt or []), prompts),
        options,
        batch_size=batch_size,
        seed=seed,
        stream=stream,
        precision=precision,
        output=output,
        image=image,
    )
    results = summary.pop("results")
    print_table("generate", summary, to_stderr=True)
    if as_json:
        print_json({**summary, "results": results})


@app.command()
@guarded
def answer(
    model: Path = typer.Option(
        ..., "--model", "-m", help="A fine-tuned extractive QA model (finetune qa/squad)."
    ),
    question: str = typer.Option(..., "--question", "-q", help="The question."),
    context: str = typer.Option(None, "--context", "-c", help="The text holding the answer."),
    context_file: Path = typer.Option(None, "--context-file", help="Read the context from a file."),
    top_k: int = typer.Option(1, "--top-k", help="Show the k best answers."),
    max_answer_tokens: int = typer.Option(
        None, "--max-answer-tokens", help="Longest answer span (default: the run's, else 30)."
    ),
    max_length: int = typer.Option(
        None, "--max-length", help="Tokens per window (default: the run's, else up to 384)."
    ),
    doc_stride: int = typer.Option(
        None, "--doc-stride", help="Tokens shared by windows (default: the run's, else 1/4)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Answer a question with a span of the context (extractive QA).

    Example: [cyan]llmkit answer -m runs/qa-squad -q "Who wrote it?" --context-file doc.txt[/]
    """
    from llmkit.commands.answer import read_context, run_answer

    summary = run_answer(
        str(model),
        question,
        read_context(context, context_file),
        top_k=top_k,
        max_answer_tokens=max_answer_tokens,
        max_length=max_length,
        stride=doc_stride,
    )
    answers = summary.pop("answers")
    if is_main_process():
        for found in answers:
            out.print(f"{found['answer']}  [dim](score {found['score']:.2f})[/]", highlight=False)
    if as_json:
        print_json({**summary, "answers": answers})


@app.command()
@guarded
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Finished run directories to compare."),
    output: Path = typer.Option(
        None, "--output", help="Where plots and report.md go (default: report/ beside the runs)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Compare finished runs: the recipe keys that differ, final metrics, tokens/s and wall
    time in one table; loss against steps and against tokens as PNG plots; report.md.

    Example: [cyan]llmkit report runs/lr-sweep/* --output reports/lr[/]
    """
    from llmkit.commands.report import run_report

    summary = run_report(run_dirs, output)
    print_grid(f"{summary['runs']} runs", summary["header"], summary["rows"], to_stderr=as_json)
    note_to = err if as_json else out
    note_to.print(f"report: {summary['report']}", highlight=False)
    if as_json:
        print_json(summary)


@app.command()
@guarded
def sweep(
    command: str = typer.Argument(..., help="pretrain-clm, pretrain-mlm or finetune."),
    recipe: str = RecipeOption,
    grid: list[str] = typer.Option(
        ..., "--grid", help="KEY=V1,V2,...: one axis of the grid (repeatable)."
    ),
    overrides: list[str] = SetOption,
    output_dir: Path = typer.Option(
        None, "--output-dir", "-o", help="Sweep folder (default: runs/<recipe name>-sweep)."
    ),
    sample: int = typer.Option(
        None, "--random", help="Run N points drawn from the grid instead of all of it."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for --random."),
    print_only: bool = typer.Option(
        False, "--print", help="Print one shell command per point instead of running them."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run a command over the cartesian product of --grid values, one run directory per
    point, then compare them (llmkit report). A failed point is reported and the sweep goes
    on; finished points are skipped, so re-running a sweep finishes what is left.

    Example: [cyan]llmkit sweep pretrain-clm --recipe gpt2-tiny --grid train.lr=3e-4,1e-3
    --grid model.layers=2,4[/]
    """
    from llmkit.commands.sweep import Sweep, run_sweep, shell_lines
    from llmkit.errors import RunFailed

    spec = Sweep(command, recipe, tuple(grid), tuple(overrides or ()), output_dir, sample, seed)
    if print_only:
        for line in shell_lines(spec):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    summary = run_sweep(spec)
    rows = {o["point"]: o["status"] for o in summary["outcomes"]}
    print_table(f"sweep → {summary['sweep']}", rows, to_stderr=as_json)
    if summary["report"]:
        (err if as_json else out).print(f"report: {summary['report']['report']}")
    if as_json:
        print_json(summary)
    if summary["failed"]:
        raise RunFailed(
            f"{len(summary['failed'])} of {summary['points']} points failed: "
            + ", ".join(summary["failed"])
        )


recipes_app = typer.Typer(
    help="The shipped recipes: list them, print one, copy one to start from.",
    no_args_is_help=True,
)
app.add_typer(recipes_app, name="recipes")


@recipes_app.command("ls")
@guarded
def recipes_ls() -> None:
    """List the shipped recipes and launch configs with what each is.

    Example: [cyan]llmkit recipes ls[/]
    """
    from llmkit.commands.recipes import list_recipes

    print_table("shipped recipes", list_recipes())


@recipes_app.command("show")
@guarded
def recipes_show(name: str = typer.Argument(..., help="A name from `llmkit recipes ls`.")) -> None:
    """Print a shipped recipe.

    Example: [cyan]llmkit recipes show gpt2-small[/]
    """
    from llmkit.commands.recipes import recipe_file

    out.print(recipe_file(name).read_text(encoding="utf-8"), end="", highlight=False, markup=False)


@recipes_app.command("cp")
@guarded
def recipes_cp(
    name: str = typer.Argument(..., help="A name from `llmkit recipes ls`."),
    destination: Path = typer.Argument(..., help="A file path, or a folder to copy it into."),
) -> None:
    """Copy a shipped recipe to edit and run with --recipe PATH.

    Example: [cyan]llmkit recipes cp gpt2-small my-gpt.yaml[/]
    """
    from llmkit.commands.recipes import copy_recipe

    target = copy_recipe(name, destination)
    out.print(f"{target}", highlight=False)


def main() -> None:
    if not os.environ.get("LLMKIT_DEBUG"):
        quiet_libraries()
    sys.exit(app())
