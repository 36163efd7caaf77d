"""The datasets of the shipped harness tasks, read from local copies.

The harness calls a task's `custom_dataset` with the run's metadata: `local_dir` (the
`--local-dir` of `llmkit evaluate`) and `num_fewshot`. A copy is found as every llmkit
command finds one (`llmkit.data.sources`): the folder given, or $LLMKIT_DATA_DIR/<name>, and
only without either the hub (which fails with one message when offline).
"""

from __future__ import annotations

from typing import Any

import datasets

from llmkit.console import note
from llmkit.data.documents import build_documents
from llmkit.data.sources import ResolvedSource, load_source
from llmkit.errors import UserError

LOCAL_KEY = "--local-dir"
RAW_TEST = "wiki.test.raw"


def note_source(task: str, source: ResolvedSource) -> None:
    """Say which copy a task scores: a folder may hold more than one file that would do."""
    note(f"{task} reads {source.description}")


def wikitext_documents(local_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    """WikiText-2 raw as the harness's `wikitext` task reads it (EleutherAI's
    wikitext_document_level): one `page` per article, as stored (the task detokenizes it).
    Only the raw test file will do: the tokenized copy (test.txt, words replaced by <unk>) is
    other text, and its perplexities would not be the harness's."""
    dataset, source = load_source(
        "wikitext-2", split="test", local_dir=local_dir, local_key=LOCAL_KEY
    )
    read = [path for path in source.files if path.name != RAW_TEST]
    if read:
        raise UserError(
            f"wikitext_local scores WikiText-2 raw ({RAW_TEST}), and the local copy found is "
            f"{read[0]}, another file",
            f"point {LOCAL_KEY} (or $LLMKIT_DATA_DIR) at a folder holding {RAW_TEST}",
        )
    note_source("wikitext_local", source)
    rows = [row or "" for row in dataset["text"]]
    pages = build_documents(rows, structured=False, wikitext=True, detokenize=False)
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_dict({"page": [page.text for page in pages]})}
    )


def sst2_splits(
    local_dir: str | None = None, num_fewshot: int | None = None, **_: Any
) -> datasets.DatasetDict:
    """GLUE SST-2 from its TSVs: dev.tsv scored; train.tsv, when the copy has it, is where
    few-shot examples come from (zero-shot needs only dev.tsv)."""
    validation, source = load_source(
        "glue/sst2", split="validation", local_dir=local_dir, local_key=LOCAL_KEY
    )
    note_source("sst2_local", source)
    try:
        train, _source = load_source(
            "glue/sst2", split="train", local_dir=local_dir, local_key=LOCAL_KEY
        )
    except UserError:
        if num_fewshot:
            raise UserError(
                "sst2_local: few-shot examples come from SST-2's train.tsv, which the local "
                "copy lacks",
                "add train.tsv beside dev.tsv, or run zero-shot (--num-fewshot 0)",
            ) from None
        train = validation.select([])
    return datasets.DatasetDict({"train": train, "validation": validation})
