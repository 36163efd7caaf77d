"""The data sources llmkit knows by name: `wikitext-2`, `wikitext-103` and `glue/<task>`,
each a hub dataset that may also have a local copy. GLUE_FOLDERS is the one list of GLUE
task names (the task kind `glue` and the source names read it).

No heavy imports: the task registry reads this when a recipe is validated.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmkit.errors import UserError, did_you_mean


@dataclass(frozen=True)
class HubDataset:
    repo: str
    config: str | None
    # Files a local copy may hold for each split, tried in order ("{stem}" is a split word).
    local_patterns: tuple[str, ...]


WIKITEXT_LOCAL = ("wiki.{stem}.raw", "wiki.{stem}.tokens", "{stem}.txt", "{stem}.raw")
KNOWN_SOURCES: dict[str, HubDataset] = {
    "wikitext-2": HubDataset("Salesforce/wikitext", "wikitext-2-raw-v1", WIKITEXT_LOCAL),
    "wikitext-103": HubDataset("Salesforce/wikitext", "wikitext-103-raw-v1", WIKITEXT_LOCAL),
}
# GLUE folder names in the standard download layout (<TASK>/train.tsv, dev.tsv, test.tsv).
GLUE_FOLDERS = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "qqp": "QQP",
    "stsb": "STS-B",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}


def known_source(name: str) -> tuple[str, HubDataset] | None:
    """(folder name of a local copy, hub dataset) for a known name, else None."""
    if name in KNOWN_SOURCES:
        return name, KNOWN_SOURCES[name]
    if name.startswith("glue/"):
        task = name.removeprefix("glue/")
        if task not in GLUE_FOLDERS:
            raise UserError(
                f"unknown GLUE task '{task}'{did_you_mean(task, GLUE_FOLDERS)}",
                f"GLUE tasks: {', '.join(GLUE_FOLDERS)}",
            )
        # test.tsv of MNLI is test_matched.tsv; the generic patterns cover the other tasks.
        patterns = ("{stem}.tsv", "{stem}_matched.tsv")
        return f"glue/{GLUE_FOLDERS[task]}", HubDataset("nyu-mll/glue", task, patterns)
    return None
