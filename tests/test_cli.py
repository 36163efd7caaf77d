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
