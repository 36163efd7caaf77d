"""Summarization and translation with encoder-decoders (T5, BART): teacher-forced training,
then generation scored with ROUGE or sacreBLEU. `data.py`: where the text pairs come from
and which columns hold them; `finetune.py`: the model, the encoding and the evaluation."""

from __future__ import annotations

from pydantic import Field

from llmkit.tasks.kind import HubDatasetKeys, TaskKind


class Seq2SeqKeys(HubDatasetKeys):
    source_prefix: str = ""  # put before every source, e.g. "summarize: " for T5
    max_target_length: int = Field(128, ge=1)  # target tokens trained; tokens generated
    num_beams: int = Field(1, ge=1)  # beam search when evaluating


class SummarizationKeys(Seq2SeqKeys):
    source_column: str = "document"  # the text and summary columns (XSum's names)
    target_column: str = "summary"


class TranslationKeys(Seq2SeqKeys):
    source_lang: str = "en"  # keys of the `translation` column (WMT's layout), or columns
    target_lang: str = "de"


KIND = TaskKind(
    name="seq2seq",
    tasks=("summarization", "translation"),
    keys=Seq2SeqKeys,
    head="AutoModelForSeq2SeqLM",
    task_keys={
        "seq2seq/summarization": SummarizationKeys,
        "seq2seq/translation": TranslationKeys,
    },
)
