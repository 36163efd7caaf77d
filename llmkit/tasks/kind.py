"""What a task kind declares: its recipe keys and its registry entry.

Light on purpose: the recipe schema and the CLI read every kind's entry without loading any
model or data code. What a kind does (prepare a run, rank runs) is its `finetune.py`, reached
through `tasks.finetuning.finetuning_of(kind)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from llmkit.schema import Section


class TaskKeys(Section):
    """The `task:` keys every kind reads; a kind subclasses it with its own."""

    # glue/<task> (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli), clue/<task> (afqmc,
    # tnews, iflytek, ocnli, cmnli, cluewsc2020, csl), qa/squad, ner/conll,
    # seq2seq/summarization, seq2seq/translation
    name: str | None = None
    train_file: str | None = None  # one file per split (else the local copy, else the hub)
    validation_file: str | None = None
    max_length: int | None = Field(None, ge=8)  # truncation (default: the model's positions)
    max_train_examples: int | None = Field(None, ge=1)  # the first N (quick runs)
    max_eval_examples: int | None = Field(None, ge=1)


class LocalCopyKeys(TaskKeys):
    # a local copy in the task's standard layout: GLUE's (train.tsv, dev.tsv, test.tsv; or
    # the download root holding SST-2/, ...), CLUE's (tnews_public/train.json, dev.json),
    # SQuAD's (train-v1.1.json, dev-v1.1.json), CoNLL's (train.txt, valid.txt, test.txt)
    data_dir: str | None = None


class HubDatasetKeys(TaskKeys):
    # a hub dataset when no local files are given, e.g. EdinburghNLP/xsum, wmt16
    dataset: str | None = None
    dataset_config: str | None = None  # e.g. de-en for wmt16


@dataclass(frozen=True)
class TaskKind:
    """One kind of fine-tuning task; `tasks/<name>/finetune.py` holds `prepare`."""

    name: str  # the prefix of its task names: glue
    tasks: tuple[str, ...]  # the names after the prefix: cola, sst2, ...
    keys: type[TaskKeys]  # its task.* keys
    head: str  # the transformers class that loads a fine-tuned model
    # tasks of this kind with keys of their own (seq2seq/translation: languages)
    task_keys: dict[str, type[TaskKeys]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}/{task}" for task in self.tasks)

    def keys_of(self, task_name: str) -> type[TaskKeys]:
        return self.task_keys.get(task_name, self.keys)
