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
