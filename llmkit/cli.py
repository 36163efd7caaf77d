"""The `llmkit` command line: parse the recipe and overrides, call one command function.

The verbs, their flags and how their results are shown are listed in `llmkit.commands`
(VERBS); this module turns each into a Typer command behind `guarded`, the one error
boundary: a user error prints one message and exits 2, a failed run exits 1, Ctrl-C exits
130; LLMKIT_DEBUG=1 shows the traceback. A verb's function is imported only when it runs, so
that `llmkit --help` stays quick.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer

from llmkit import __version__
from llmkit.commands import DRY_RUN, JSON, RECIPE_FLAGS, RESUME, VERBS, Flag, Verb
from llmkit.console import err, is_main_process, out, print_table
from llmkit.errors import EXIT_OK, describe, exit_code_for
from llmkit.preflight import preflight
from llmkit.recipe import load_recipe

app = typer.Typer(
    name="llmkit",
    help="Train tokenizers, pretrain, fine-tune, evaluate and sample language models.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,  # `guarded` decides what an error looks like
    context_settings={"help_option_names": ["-h", "--help"]},
)
GROUPS = {
    "recipes": typer.Typer(
        help="The shipped recipes: list them, print one, copy one to start from.",
        no_args_is_help=True,
    )
}
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)


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


def when_run(function: Callable[[], Callable]) -> Callable[..., Any]:
    """Calls the verb function that `function` returns (importing it only now)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if not os.environ.get("LLMKIT_DEBUG"):
            quiet_libraries()  # here, not in main: --help imports neither library
        return function()(*args, **kwargs)

    return call


def _typer_parameter(flag: Flag) -> inspect.Parameter:
    if flag.positional:
        default = typer.Argument(flag.default, help=flag.help)
    else:
        default = typer.Option(flag.default, *flag.flags.split(), help=flag.help)
    return inspect.Parameter(
        flag.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=flag.type
    )


def _run_recipe(verb: Verb) -> Callable[..., Any]:
    """A recipe verb: load the recipe with its overrides; a dry run prints it resolved, and
    what the verb's `describe` checks and measures without reading data."""
    run = when_run(verb.run)

    def run_recipe(*, recipe: str, overrides: list[str] = (), dry_run: bool = False, **values):
        resolved = load_recipe(recipe, overrides)
        if not dry_run:
            run_dir_flags = {
                k: values[k] for k in ("output_dir", "overwrite", "resume") if k in values
            }
            preflight(
                resolved,
                verb.name,
                reads_corpus=verb.reads_corpus,
                resumable=verb.resumable,
                **run_dir_flags,
            )
            return run(resolved, **verb.fixed, **values)
        shown = when_run(verb.describe)(resolved, **verb.fixed) if verb.describe else None
        out.print(resolved.to_yaml(), end="", highlight=False, markup=False)
        if shown:
            print_table(verb.describe_title, shown)
        return None

    return run_recipe


def register(verb: Verb) -> None:
    """`verb` as a Typer command: its flags (+ the recipe flags, --json), its function."""
    flags = list(verb.flags)
    if verb.recipe:
        flags = [*RECIPE_FLAGS, *([RESUME] if verb.resumable else []), *flags, DRY_RUN]
    flags += [JSON] if verb.takes_json else []
    run = _run_recipe(verb) if verb.recipe else when_run(verb.run)

    def command(**values: Any) -> None:
        as_json = values.pop("as_json", False)
        # A flag left out is not passed on: the function's own default applies.
        result = run(**{key: value for key, value in values.items() if value is not None})
        if verb.show is not None and result is not None:
            verb.show(result, as_json)

    command.__signature__ = inspect.Signature([_typer_parameter(flag) for flag in flags])
    command.__doc__ = f"{verb.help}\n\nExample: [cyan]{verb.example}[/]"
    *group, name = verb.name.split()
    command.__name__ = name.replace("-", "_")
    (GROUPS[group[0]] if group else app).command(name)(guarded(command))


for _verb in VERBS:
    register(_verb)


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


def main() -> None:
    sys.exit(app())
