import subprocess
import sys

from typer.testing import CliRunner

from llmkit import __version__
from llmkit.cli import app


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_only_working_commands_are_registered():
    help_text = CliRunner().invoke(app, ["--help"]).stdout
    assert "tokenize" in help_text


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "llmkit", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "tokenize" in result.stdout


def test_help_paragraphs_are_wrapped_by_rich_alone():
    """Each paragraph of a command's help is one line, so rich wraps it once, evenly."""
    import re

    for command in app.registered_commands:
        doc = command.callback.__doc__
        assert doc and not re.search(r"(?<!\n)\n(?!\n)", doc), command.callback.__name__
    result = CliRunner().invoke(app, ["eval-ppl", "--help"], env={"COLUMNS": "80"})
    description = result.output.split("Usage:")[1].split("Options")[0]
    lines = [line.strip() for line in description.splitlines()[1:]]
    # Inside a paragraph (lines followed by another line) no line is cut short twice.
    pairs = zip(lines, lines[1:], strict=False)
    cut_short = [a for a, b in pairs if a and b and len(a) < 55]
    assert not cut_short, cut_short


# Verbs whose function passes flags on (**values): where those flags' defaults are declared.
def _forwarded():
    from llmkit.commands.generate import run_generate
    from llmkit.generation import DecodingOptions
    from llmkit.search.runs import Sweep
    from llmkit.tasks.qa.answer import answer_with

    return {"generate": [run_generate, DecodingOptions], "answer": [answer_with], "sweep": [Sweep]}


def test_every_flag_reaches_a_parameter_and_its_help_tells_its_real_default():
    """Each flag of each verb names a parameter of the function the verb calls (or of what it
    passes its flags on to); a typer default equals that parameter's, and a help text that
    states a literal default, "(default: 16)", states the one in the signature."""
    import inspect
    import re

    from llmkit.commands import RECIPE, RECIPE_FLAGS, RESUME, SET, VERBS

    forwarded = _forwarded()
    checked = 0
    for verb in VERBS:
        # --recipe and --set are read by the CLI, which hands the function the recipe
        run_flags = [f for f in RECIPE_FLAGS if f not in (RECIPE, SET)] if verb.recipe else []
        flags = [*verb.flags, *run_flags, *([RESUME] if verb.recipe and verb.resumable else [])]
        signatures = [inspect.signature(verb.run())]
        signatures += [inspect.signature(f) for f in forwarded.get(verb.name, ())]
        for flag in flags:
            where = f"{verb.name} {flag.flags}"
            found = [s.parameters[flag.name] for s in signatures if flag.name in s.parameters]
            assert found, f"{where}: no parameter {flag.name} in the function it reaches"
            default = found[0].default
            if flag.default is ...:
                assert default is inspect.Parameter.empty, f"{where} is required, not {default}"
            elif flag.default is not None:
                assert flag.default == default, f"{where}: flag {flag.default}, function {default}"
            stated = re.search(r"\(default:? ([\w.]+)\)", flag.help)
            if stated:
                checked += 1
                assert stated.group(1) == str(default), f"{where}: help says {stated.group(1)}"
    assert checked >= 6  # the test reads the help texts it means to
