"""docs/chinese.md's quick start runs as written, on the test fixtures standing in for the
user's files (Chinese sentences as corpus-zh/, hand-made CLUE files as clue/), with the
training capped by LLMKIT_MAX_STEPS; its masks come back filled as Chinese is written."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
CJK_SPACE_CJK = re.compile("[\u4e00-\u9fff] +[\u4e00-\u9fff]")


def quick_start_blocks() -> list[str]:
    page = (ROOT / "docs" / "chinese.md").read_text(encoding="utf-8")
    section = page[page.index("## Quick start") :]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("llmkit") is None, reason="the llmkit command is not on PATH")
def test_the_chinese_quick_start_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("rjieba", reason="whole-word masking of Chinese needs llmkit[chinese]")
    (tmp_path / "corpus-zh").mkdir()
    shutil.copy(FIXTURES / "chinese" / "essays.txt", tmp_path / "corpus-zh")
    shutil.copytree(FIXTURES / "clue", tmp_path / "clue")
    monkeypatch.setenv("LLMKIT_MAX_STEPS", "4")
    blocks = quick_start_blocks()
    assert len(blocks) == 4
    for code in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
    runs = tmp_path / "runs"
    assert {p.name for p in runs.iterdir()} == {"zh-tokenizer", "bert-chinese-mini", "clue-tnews"}
    pretrained = json.loads((runs / "bert-chinese-mini" / "metrics.json").read_text())
    assert pretrained["whole_words_from"] == "jieba"
    assert (runs / "clue-tnews" / "test_predictions" / "tnews_predict.json").is_file()
    prompt = "春天来了，公园里的[MASK]开得很美。"
    done = subprocess.run(
        ["llmkit", "generate", "--model", "runs/bert-chinese-mini", "--prompt", prompt, "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fills = json.loads(done.stdout.strip().splitlines()[-1])["results"][0]["fills"]
    for fill in fills:
        assert fill["sequence"] == prompt.replace("[MASK]", fill["token"])
        assert not CJK_SPACE_CJK.search(fill["sequence"])
