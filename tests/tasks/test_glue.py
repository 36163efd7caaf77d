import numpy as np
import pytest
import scipy.stats
from helpers import FIXTURES as ALL_FIXTURES
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from llmkit.errors import UserError
from llmkit.metrics import glue_metric
from llmkit.tasks import check_task_name
from llmkit.tasks.glue import GlueKeys
from llmkit.tasks.glue.data import TASKS, read_local_split, split_source
from llmkit.tasks.splits import load_split

FIXTURES = ALL_FIXTURES / "glue"


@pytest.mark.parametrize(
    ("task", "file", "rows", "first"),
    [
        ("cola", "CoLA/dev.tsv", 200, None),  # no header, no final newline
        ("cola", "CoLA/test.tsv", 50, None),  # a header, no labels
        ("sst2", "SST-2/dev.tsv", 300, "it 's a charming and often affecting journey . "),
        ("stsb", "STS-B/dev.tsv", 200, "A man with a hard hat is dancing."),
        ("rte", "RTE/dev.tsv", 120, None),  # Hugging Face export: quoted, numeric labels
    ],
)
def test_fixture_layouts_load(task, file, rows, first):
    data = read_local_split(TASKS[task], FIXTURES / file, needs_labels="test" not in file)
    assert len(data) == rows
    if first:
        assert data[0][TASKS[task].fields[0]] == first
    labels = set(data["label"])
    if "test" in file:
        assert labels == {-1}
    elif task != "stsb":
        assert labels <= set(range(len(TASKS[task].labels)))
    else:
        assert 0 <= min(labels) and max(labels) <= 5


def test_rte_quoted_fields_are_unquoted():
    data = read_local_split(TASKS["rte"], FIXTURES / "RTE/dev.tsv", needs_labels=True)
    texts = list(data["sentence1"]) + list(data["sentence2"])
    # Row 4 of the file is a quoted field holding doubled quotes ("" → ").
    assert texts[3].startswith("The Amish community in Pennsylvania")
    assert not any(t.startswith('"') and t.endswith('"') for t in texts)
    assert any('"' in t for t in texts) and not any('""' in t for t in texts)


def test_bom_string_labels_and_missing_final_newline(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes(
        "\ufeffindex\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat is sitting.\tentailment\n"
        "1\tIt rained.\tThe sun shone all day.\tnot_entailment".encode()
    )
    data = read_local_split(TASKS["rte"], path, needs_labels=True)
    assert data["label"] == [0, 1] and data["sentence2"][1] == "The sun shone all day."


def test_mrpc_layout_when_shared_data_is_there(shared_data):
    data = read_local_split(TASKS["mrpc"], shared_data("glue/MRPC/dev.tsv"), needs_labels=True)
    assert len(data) == 408 and sum(data["label"]) == 279  # read through its BOM


@pytest.mark.parametrize(
    ("content", "task", "expected"),
    [
        ("sentence\tlabel\nfine .\t7\n", "sst2", "label '7' is outside glue/sst2's label set"),
        ("sentence\tidx\nfine .\t0\n", "sst2", "has no label column"),
        (
            "sentence1\tlabel\nA cat.\t0\n",
            "rte",
            "sentence-pair task with fields sentence1, sentence2",
        ),
        ("sentence1\tsentence2\tscore\na\tb\thigh\n", "stsb", "is not a number"),
    ],
)
def test_bad_files_are_user_errors(tmp_path, content, task, expected):
    path = tmp_path / "dev.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match=expected):
        read_local_split(TASKS[task], path, needs_labels=True)


def sst2(**keys):
    return split_source(TASKS["sst2"], GlueKeys(name="glue/sst2", **keys))


def test_unknown_task_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'glue/sst2'"):
        check_task_name("glue/sst-2")


def test_local_files_never_send_other_splits_to_the_hub():
    assert load_split(sst2(data_dir=str(FIXTURES / "SST-2")), "test") is None


def test_the_hub_offline_names_every_local_way_in():
    with pytest.raises(UserError, match=r"glue/sst2 \(nyu-mll/glue\).*offline") as caught:
        load_split(sst2(), "train")
    hint = caught.value.hint
    assert "task.train_file" in hint and "task.data_dir" in hint and "train.tsv" in hint
    assert "ROOT/glue/SST-2/" in hint


@pytest.mark.parametrize(
    "task", ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
)
def test_metrics_equal_scikit_learn_and_scipy(task):
    rng = np.random.default_rng(0)
    if task == "stsb":
        references = rng.uniform(0, 5, 200)
        predictions = references + rng.normal(0, 1, 200)
        expected = {
            "pearson": scipy.stats.pearsonr(predictions, references)[0],
            "spearmanr": scipy.stats.spearmanr(predictions, references)[0],
        }
    else:
        classes = len(TASKS[task].labels)
        references = rng.integers(0, classes, 200)
        predictions = np.where(rng.random(200) < 0.7, references, rng.integers(0, classes, 200))
        expected = {"accuracy": accuracy_score(references, predictions)}
        if task == "cola":
            expected = {"matthews_correlation": matthews_corrcoef(references, predictions)}
        if task in ("mrpc", "qqp"):
            expected["f1"] = f1_score(references, predictions)
    result = glue_metric(task).compute(predictions=predictions, references=references)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-6)


def test_data_dir_may_be_the_glue_download_root(tmp_path):
    task_folder = load_split(sst2(data_dir=str(FIXTURES / "SST-2")), "validation")
    download_root = load_split(sst2(data_dir=str(FIXTURES)), "validation")  # SST-2/
    (tmp_path / "glue").mkdir()
    (tmp_path / "glue" / "SST-2").symlink_to(FIXTURES / "SST-2")
    data_root = load_split(sst2(data_dir=str(tmp_path)), "validation")  # glue/SST-2/
    assert len(task_folder) == 300
    assert download_root["sentence"] == task_folder["sentence"] == data_root["sentence"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no train.tsv for glue/sst2") as caught:
        load_split(sst2(data_dir=str(tmp_path / "empty")), "train")
    assert "download root holding SST-2/" in caught.value.hint
