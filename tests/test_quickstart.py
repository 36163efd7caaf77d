"""README's quick start runs as written: every block of it, top to bottom, in a fresh copy of
the repository, as a newcomer would paste it (training capped by LLMKIT_MAX_STEPS)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a clone holds that is not the repository's own files.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "out"
)


def quick_start_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of README's "Quick start" section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quick start") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_the_quick_start_has_no_placeholder_paths():
    blocks = quick_start_blocks()
    assert [language for language, _ in blocks].count("bash") >= 4
    code = "\n".join(text for _, text in blocks)
    for placeholder in ("path/to", "corpus/", "article.txt", "../shared", "| jq"):
        assert placeholder not in code, placeholder


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("llmkit") is None, reason="the llmkit command is not on PATH")
def test_the_quick_start_runs_as_written(tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=NOT_IN_A_CLONE)
    monkeypatch.setenv("LLMKIT_MAX_STEPS", "4")
    for language, code in quick_start_blocks():
        command = ["bash", "-euo", "pipefail", "-c", code]
        if language == "python":
            command = [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=clone, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
    runs = {path.name for path in (clone / "runs").iterdir()}
    expected = {"tokenizer-byte-bpe", "tokenizer-wordpiece", "bpe-1k", "bpe-packed"}
    expected |= {"gpt2-tiny", "bert-tiny", "glue-sst2", "qa-squad", "ner-conll"}
    assert runs == expected
    assert all((clone / "runs" / name / "metrics.json").is_file() for name in runs)
