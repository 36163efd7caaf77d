"""Named-entity recognition (CoNLL-2003 style; CLUENER2020, CLUE's Chinese NER): word tags
carried to sub-word tokens and back, entity-level precision, recall and F1 (seqeval).
`data.py`: the column format, CLUENER's JSON lines, the hub copy and the label alignment;
`finetune.py`: the head, the encoding and the evaluation."""

from __future__ import annotations

from llmkit.tasks.kind import HubDatasetKeys, LocalCopyKeys, TaskKind


class NerKeys(LocalCopyKeys, HubDatasetKeys):
    # train every sub-word token of a word (B- continuing as I-), not only the first
    label_all_subwords: bool = False


KIND = TaskKind(
    name="ner",
    tasks=("conll", "cluener"),
    keys=NerKeys,
    head="AutoModelForTokenClassification",
)
