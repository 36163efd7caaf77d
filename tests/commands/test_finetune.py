import json

import pytest
from helpers import FIXTURES as ALL_FIXTURES
from helpers import finetune
from typer.testing import CliRunner

runner = CliRunner()
FIXTURES = ALL_FIXTURES / "glue"


def test_pretrained_tiny_bert_beats_the_majority_on_sst2(trained_mlm, tmp_path):
    # Measured: 0.573 here (seed 42 on the session's tiny BERT), 0.593-0.600 over seeds 42,
    # 1, 2, 3 on a separately pretrained one, against the majority class's 0.517.
    result, summary = finetune(
        "glue-sst2",
        tmp_path / "sst2",
        f"model.path={trained_mlm}",
        f"task.data_dir={FIXTURES / 'SST-2'}",
        "train.lr=1e-3",
        "train.epochs=10",
        "train.batch_size=16",
    )
    assert result.exit_code == 0, result.output
    assert summary["eval_accuracy"] > summary["eval_majority_accuracy"] + 0.04
    predictions = (tmp_path / "sst2" / "dev_predictions.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction\tlabel" and len(predictions) == 301
    correct = sum(line.split("\t")[1] == line.split("\t")[2] for line in predictions[1:])
    assert correct / 300 == pytest.approx(summary["eval_accuracy"])


def test_more_sst2_data_widens_the_margin(trained_mlm, tmp_path, shared_data):
    # Measured: 0.646-0.679 against the majority's 0.509 with 8,000 training examples.
    train = shared_data("glue/SST-2/alps_resplit_of_glue_train/train.tsv")
    result, summary = finetune(
        "glue-sst2",
        tmp_path / "sst2",
        f"model.path={trained_mlm}",
        f"task.train_file={train}",
        f"task.validation_file={train.parents[1] / 'dev.tsv'}",
        "task.max_train_examples=8000",
        "train.lr=1e-3",
        "train.epochs=2",
    )
    assert result.exit_code == 0, result.output
    assert summary["eval_examples"] == 872
    assert summary["eval_accuracy"] > summary["eval_majority_accuracy"] + 0.08


def test_stsb_is_regression_with_pearson_and_spearman(trained_mlm, tmp_path):
    result, summary = finetune(
        "glue-stsb",
        tmp_path / "stsb",
        f"model.path={trained_mlm}",
        f"task.data_dir={FIXTURES / 'STS-B'}",
        "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    assert {"eval_pearson", "eval_spearmanr"} <= summary.keys()
    assert (
        json.loads((tmp_path / "stsb" / "config.json").read_text())["problem_type"] == "regression"
    )
    submission = (tmp_path / "stsb" / "test_predictions" / "STS-B.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 51
    float(submission[1].split("\t")[1])


def test_cola_reports_mcc_and_writes_a_submission(trained_mlm, tmp_path):
    result, summary = finetune(
        "glue-cola",
        tmp_path / "cola",
        f"model.path={trained_mlm}",
        f"task.data_dir={FIXTURES / 'CoLA'}",
        "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    assert -1 <= summary["eval_matthews_correlation"] <= 1
    submission = (tmp_path / "cola" / "test_predictions" / "CoLA.tsv").read_text().splitlines()
    assert {line.split("\t")[1] for line in submission[1:]} <= {"0", "1"}


def test_rte_export_layout_trains_and_eval_only_reproduces_the_metrics(trained_mlm, tmp_path):
    result, summary = finetune(
        "glue-rte",
        tmp_path / "rte",
        f"model.path={trained_mlm}",
        f"task.data_dir={FIXTURES / 'RTE'}",
        "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    assert summary["eval_examples"] == 120
    again, evaluated = finetune(
        "glue-rte",
        tmp_path / "rte-eval",
        f"model.path={tmp_path / 'rte'}",
        f"task.data_dir={FIXTURES / 'RTE'}",
        extra=["--eval-only"],
    )
    assert again.exit_code == 0, again.output
    assert "steps" not in evaluated
    assert evaluated["eval_accuracy"] == pytest.approx(summary["eval_accuracy"])


def test_mrpc_reports_f1(trained_mlm, tmp_path, shared_data):
    folder = shared_data("glue/MRPC")
    result, summary = finetune(
        "glue-mrpc",
        tmp_path / "mrpc",
        f"model.path={trained_mlm}",
        f"task.data_dir={folder}",
        "task.max_train_examples=800",
        "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    assert 0 <= summary["eval_f1"] <= 1 and 0 <= summary["eval_accuracy"] <= 1


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task.name=glue/sst-2"], "did you mean 'glue/sst2'"),
        (["model.path=null"], "finetune needs model.path"),
        (["task.train_file={tmp}/nolabel.tsv"], "has no label column"),
        (["task.train_file={tmp}/badlabel.tsv"], "outside glue/sst2's label set"),
    ],
)
def test_user_errors(trained_mlm, tmp_path, overrides, expected):
    (tmp_path / "nolabel.tsv").write_text("sentence\tidx\nfine .\t0\n")
    (tmp_path / "badlabel.tsv").write_text("sentence\tlabel\nfine .\tmaybe\n")
    base = [f"model.path={trained_mlm}", f"task.data_dir={FIXTURES / 'SST-2'}"]
    result, _ = finetune(
        "glue-sst2", tmp_path / "out", *base, *[o.format(tmp=tmp_path) for o in overrides]
    )
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_pair_task_given_one_text_column(trained_mlm, tmp_path):
    (tmp_path / "train.tsv").write_text("sentence1\tlabel\nA cat sat.\t0\n")
    result, _ = finetune(
        "glue-rte",
        tmp_path / "out",
        f"model.path={trained_mlm}",
        f"task.train_file={tmp_path / 'train.tsv'}",
        f"task.validation_file={FIXTURES / 'RTE/dev.tsv'}",
    )
    assert result.exit_code == 2 and "sentence-pair task" in result.stderr


def test_the_glue_all_sweep_prints_one_table(trained_mlm, tmp_path):
    import os
    import subprocess

    script = __import__("pathlib").Path(__file__).parents[2] / "recipes" / "sweeps" / "glue-all.sh"
    glue = tmp_path / "glue"  # a classification task and the regression one; the rest skipped
    glue.mkdir()
    for folder in ("CoLA", "STS-B"):
        (glue / folder).symlink_to(FIXTURES / folder)
    result = subprocess.run(
        [
            "bash",
            str(script),
            str(trained_mlm),
            str(glue),
            "--set",
            "task.max_train_examples=64",
            "--set",
            "task.max_eval_examples=64",
            "--set",
            "train.epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GLUE_ALL_OUTPUT": str(tmp_path / "glue-all")},
    )
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()
    assert table[0].split() == ["task", "metric", "dev", "majority"]
    tasks = {line.split()[0] for line in table[1:]}
    assert tasks == {"glue/cola", "glue/stsb"}
    assert any("matthews_correlation" in line for line in table)
    assert any("pearson" in line for line in table)


def test_mnli_reports_matched_and_mismatched(trained_mlm, tmp_path):
    """No MNLI data is available offline: an MNLI-layout folder is built from RTE's real
    sentence pairs (entailment / not → entailment / contradiction) to check the plumbing."""
    from llmkit.tasks.glue.data import TASKS, read_local_split

    rte = read_local_split(TASKS["rte"], FIXTURES / "RTE/train.tsv", needs_labels=True)
    names = {0: "entailment", 1: "contradiction"}
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n"

    def write(name, rows):
        lines = [
            f"{i}\t0\t0\tfiction\t{r['sentence1']}\t{r['sentence2']}\t{names[r['label']]}\n"
            for i, r in rows
        ]
        (tmp_path / "MNLI" / name).write_text(header + "".join(lines))

    (tmp_path / "MNLI").mkdir()
    rows = [
        (i, rte[i])
        for i in range(len(rte))
        if "\t" not in rte[i]["sentence1"] + rte[i]["sentence2"]
    ]
    write("train.tsv", rows[:200])
    write("dev_matched.tsv", rows[200:260])
    write("dev_mismatched.tsv", rows[260:320])
    result, summary = finetune(
        "glue-rte",
        tmp_path / "mnli",
        f"model.path={trained_mlm}",
        "task.name=glue/mnli",
        f"task.data_dir={tmp_path / 'MNLI'}",
        "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    assert {"eval_matched_accuracy", "eval_mismatched_accuracy"} <= summary.keys()
    assert summary["eval_matched_examples"] == summary["eval_mismatched_examples"] == 60
    assert (tmp_path / "mnli" / "dev_matched_predictions.tsv").is_file()
