"""GLUE: TSV layouts of the download script, the hub path (mocked at `datasets`), metrics against sklearn/scipy."""

import datasets
import evaluate
import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
import torch
from torch import nn

from bora.config import load_config
from bora.errors import BoraError, Diverged
from bora.models import load_model, load_tokenizer
from bora.tasks import build_task
from bora.tasks.glue import METRIC_MODULE
from bora.tasks.sources import SPECS

# Two rows per task, written as the GLUE download script lays them out (a quote left open on purpose).
TSV = {
    "CoLA": ("", 'gj04\t1\t\tThe "sailors rode the breeze.\ngj04\t0\t*\tThe more we study verbs.\n'),
    "SST-2": ("sentence\tlabel\n", "a charming journey . \t1\nit 's a \" dull film \t0\n"),
    "MRPC": (
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n",
        '1\t7\t8\tHe said " so .\tHe said so .\n0\t1\t2\tA\tB\n',
    ),
    "STS-B": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
        "0\tmain\tMSRvid\t2012\t1\tnone\tnone\tA plane.\tAn air plane.\t5.000\n"
        "1\tmain\tMSRvid\t2012\t2\tnone\tnone\tA man.\tA dog.\t0.250\n",
    ),
    "QQP": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n", "1\t1\t2\tWhy?\tHow?\t0\n2\t3\t4\tWho?\tWho?\t1\n"),
    "QNLI": ("index\tquestion\tsentence\tlabel\n", "0\tWhat?\tThis.\tnot_entailment\n1\tWhy?\tBecause.\tentailment\n"),
    "RTE": ("index\tsentence1\tsentence2\tlabel\n", "0\tA b.\tA.\tentailment\n1\tC d.\tE.\tnot_entailment\n"),
}
MNLI_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
)
MNLI_ROWS = {
    "train.tsv": "0\t1\t1e\tgov\t(\t(\t(\t(\tP one.\tH one.\tneutral\tneutral\n"
    "1\t2\t2e\tgov\t(\t(\t(\t(\tP two.\tH two.\tentailment\tentailment\n",
    "dev_matched.tsv": "0\t1\t1e\tgov\t(\t(\t(\t(\tP m.\tH m.\tcontradiction\tcontradiction\n"
    "1\t1\t1e\tgov\t(\t(\t(\t(\tP n.\tH n.\tentailment\tentailment\n",
    "dev_mismatched.tsv": "0\t1\t1e\tfic\t(\t(\t(\t(\tP x.\tH x.\tneutral\tneutral\n",
}
EXPECTED = {  # (text_a, text_b or None, label) of the first train row, with the hub's label ids
    "CoLA": ('The "sailors rode the breeze.', None, 1),
    "SST-2": ("a charming journey . ", None, 1),
    "MRPC": ('He said " so .', "He said so .", 1),
    "STS-B": ("A plane.", "An air plane.", 5.0),
    "QQP": ("Why?", "How?", 0),
    "QNLI": ("What?", "This.", 1),  # not_entailment = 1 on the hub
    "RTE": ("A b.", "A.", 0),  # entailment = 0
}
HUB_NAMES = {
    "CoLA": "cola",
    "SST-2": "sst2",
    "MRPC": "mrpc",
    "STS-B": "stsb",
    "QQP": "qqp",
    "QNLI": "qnli",
    "RTE": "rte",
    "MNLI": "mnli",
}


def write_glue(root, task, files=("train.tsv", "dev.tsv")):
    (root / task).mkdir(parents=True, exist_ok=True)
    for name in files:
        header, rows = TSV[task]
        (root / task / name).write_text(header + rows, encoding="utf-8")
    return root


def write_mnli(root):
    (root / "MNLI").mkdir(parents=True)
    for name, rows in MNLI_ROWS.items():
        (root / "MNLI" / name).write_text(MNLI_HEADER + rows, encoding="utf-8")
    return root


def glue_task(name, data_dir=None, *overrides):
    extra = [f"task.data_dir={data_dir}"] if data_dir else []
    return build_task(load_config(["model=tiny-encoder", f"task={name}", *extra, *overrides]).task)


@pytest.mark.parametrize("glue_name", list(EXPECTED))
def test_tsv_layouts_give_hub_label_ids(tmp_path, glue_name):
    task = glue_task(HUB_NAMES[glue_name], write_glue(tmp_path, glue_name))
    train = task.split("train")
    assert len(train) == 2 and len(task.split("")) == 2
    text_a, text_b, label = EXPECTED[glue_name]
    assert train[0]["text_a"] == text_a
    assert train[0].get("text_b") == text_b
    assert train[0]["label"] == pytest.approx(label)
    assert task.num_labels == (1 if glue_name == "STS-B" else 2)


def test_mnli_reads_both_dev_sets(tmp_path):
    task = glue_task("mnli", write_mnli(tmp_path))
    assert task.num_labels == 3
    assert task.split("train")["label"] == [1, 0]  # neutral, entailment
    assert task.split("_matched")["label"] == [2, 0]  # contradiction, entailment
    assert task.split("_mismatched")["text_a"] == ["P x."]


@pytest.mark.parametrize(
    "content, message",
    [
        ("index\tsentence1\tsentence2\tlabel\n0\tA\tB\tentailment\n1\tA\tB\n", r"train\.tsv line 3: 3 .*expected 4"),
        ("index\tsentence1\tsentence2\tlabel\n0\tA\tB\tmaybe\n", r"train\.tsv line 2: label 'maybe'"),
        ("index\tsentence1\tsentence2\n0\tA\tB\n", r"train\.tsv line 1: header has no column 'label'"),
        ("index\tsentence1\tsentence2\tlabel\n", r"train\.tsv: no data rows"),
        ("", r"train\.tsv: empty file"),
    ],
)
def test_bad_tsv_is_one_line_error_naming_file_and_line(tmp_path, content, message):
    write_glue(tmp_path, "RTE")
    (tmp_path / "RTE" / "train.tsv").write_text(content, encoding="utf-8")
    with pytest.raises(BoraError, match=message) as error:
        glue_task("rte", tmp_path).split("train")
    assert "\n" not in str(error.value)


def test_a_tsv_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    write_glue(tmp_path, "RTE")
    text = "index\tsentence1\tsentence2\tlabel\n0\tA\tB\tentailment\n1\tcaf\u00e9\tB\tentailment\n"
    (tmp_path / "RTE" / "train.tsv").write_bytes(text.encode("latin-1"))
    with pytest.raises(BoraError, match=r"RTE/train\.tsv: not UTF-8 text \(invalid continuation byte at line 3") as e:
        glue_task("rte", tmp_path).split("train")
    assert "\n" not in str(e.value)


def test_bad_score_and_missing_file(tmp_path):
    write_glue(tmp_path, "STS-B")
    path = tmp_path / "STS-B" / "dev.tsv"
    path.write_text(TSV["STS-B"][0] + "0\tg\tf\ty\t1\tn\tn\tA.\tB.\tfive\n", encoding="utf-8")
    with pytest.raises(BoraError, match=r"dev\.tsv line 2: score 'five' is not a number"):
        glue_task("stsb", tmp_path).train_dataset(load_tokenizer(load_config(["model=tiny-encoder"]).model))
    with pytest.raises(BoraError, match=r"CoLA/train\.tsv not found"):
        glue_task("cola", tmp_path).split("train")


def test_cola_row_with_wrong_field_count(tmp_path):
    write_glue(tmp_path, "CoLA")
    (tmp_path / "CoLA" / "dev.tsv").write_text("gj04\t1\t\tFine.\ngj04\t1\tBroken.\n", encoding="utf-8")
    with pytest.raises(BoraError, match=r"CoLA/dev\.tsv line 2: 3 tab-separated fields, expected 4"):
        glue_task("cola", tmp_path).split("")


def test_kind_must_match_the_glue_task(tmp_path):
    with pytest.raises(
        BoraError, match="task.kind=classification but GLUE STS-B is regression; set task.kind=regression"
    ):
        glue_task("stsb", write_glue(tmp_path, "STS-B"), "task.kind=classification")


def fake_hub(monkeypatch, calls):
    """datasets.load_dataset replaced by the hub's column layout, built from our TSV fixtures."""

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        if name == "mnli":
            rows = {"premise": ["P m.", "P n."], "hypothesis": ["H m.", "H n."], "label": [2, 0], "idx": [0, 1]}
        else:
            rows = {"sentence1": ["A b.", "C d."], "sentence2": ["A.", "E."], "label": [0, 1], "idx": [0, 1]}
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_hub_path_matches_tsv(tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)  # the hub path is the default only without a local copy
    calls = []
    fake_hub(monkeypatch, calls)
    hub = glue_task("rte")
    assert hub.split("train").to_dict() == glue_task("rte", write_glue(tmp_path, "RTE")).split("train").to_dict()
    assert calls == [("nyu-mll/glue", "rte", "train")]
    glue_task("mnli").split("_mismatched")
    assert calls[-1] == ("nyu-mll/glue", "mnli", "validation_mismatched")


def test_hub_failure_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore details")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    with pytest.raises(BoraError, match=r"cannot load nyu-mll/glue/rte split train .*Couldn't reach.*GLUE_DIR") as e:
        glue_task("rte").split("train")
    assert "\n" not in str(e.value)


def test_train_dataset_tokenized_sliced_and_collated(tmp_path):
    cfg = load_config(["model=tiny-encoder", "task=toy-cls", "task.max_train_samples=50", "task.max_length=16"])
    task, tokenizer = build_task(cfg.task), load_tokenizer(cfg.model)
    first, again = task.train_dataset(tokenizer), build_task(cfg.task).train_dataset(tokenizer)
    assert len(first) == 50 and first["input_ids"] == again["input_ids"]  # the same slice every time
    assert max(len(ids) for ids in first["input_ids"]) <= 16
    batch = task.data_collator(tokenizer)([first[i] for i in range(4)])
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["labels"].shape == (4,)


def test_regression_labels_are_float(tmp_path):
    cfg = load_config(["model=tiny-encoder", "task=stsb", f"task.data_dir={write_glue(tmp_path, 'STS-B')}"])
    task, tokenizer = build_task(cfg.task), load_tokenizer(cfg.model)
    batch = task.data_collator(tokenizer)(list(task.train_dataset(tokenizer)))
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [5.0, 0.25]


@pytest.mark.parametrize("config", ["cola", "stsb", "mrpc", "qqp", "rte", "mnli"])
def test_metric_module_matches_sklearn_and_scipy(config):
    rng = np.random.default_rng(0)
    if config == "stsb":
        references, predictions = rng.uniform(0, 5, 200), rng.uniform(0, 5, 200)
    else:
        references, predictions = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    scores = evaluate.load(str(METRIC_MODULE), config).compute(predictions=predictions, references=references)
    if config == "cola":
        assert scores == {
            "matthews_correlation": pytest.approx(sklearn.metrics.matthews_corrcoef(references, predictions))
        }
    elif config == "stsb":
        assert scores["pearson"] == pytest.approx(scipy.stats.pearsonr(predictions, references)[0], abs=1e-6)
        assert scores["spearmanr"] == pytest.approx(scipy.stats.spearmanr(predictions, references)[0], abs=1e-6)
    else:
        assert scores["accuracy"] == pytest.approx(np.mean(references == predictions))
        assert ("f1" in scores) == (config in ("mrpc", "qqp"))
        if "f1" in scores:
            assert scores["f1"] == pytest.approx(sklearn.metrics.f1_score(references, predictions))


class HashModel(nn.Module):
    """A stand-in classifier whose prediction is a fixed function of the input ids."""

    def __init__(self, num_labels):
        super().__init__()
        self.num_labels = num_labels
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, **kwargs):
        codes = (input_ids * attention_mask).sum(-1) % self.num_labels
        return type("Output", (), {"logits": nn.functional.one_hot(codes, self.num_labels).float() + self.weight})


def test_mnli_overall_is_accuracy_over_both_dev_sets(tmp_path):
    task = glue_task("mnli", write_mnli(tmp_path))
    tokenizer = load_tokenizer(load_config(["model=tiny-encoder"]).model)
    model = HashModel(3)
    metrics = task.evaluate(model, tokenizer, batch_size=2)
    assert set(metrics) == {"mnli", "mnli_matched", "mnli_mismatched"}
    predictions = {key: task.predict(model, tokenizer, task.split(key), 2, key) for key in ("_matched", "_mismatched")}
    gold = {key: np.asarray(task.split(key)["label"]) for key in predictions}
    for key in predictions:
        assert metrics[f"mnli{key}"]["accuracy"] == pytest.approx(np.mean(predictions[key] == gold[key]))
    correct = sum(int((predictions[k] == gold[k]).sum()) for k in predictions)
    assert metrics["mnli"]["accuracy"] == pytest.approx(correct / 3)
    assert task.headline(metrics) == metrics["mnli"]["accuracy"]


def test_evaluate_tiny_encoder_on_toy_data():
    cfg = load_config(["model=tiny-encoder", "task=toy-cls", "task.max_eval_samples=20"])
    task, tokenizer = build_task(cfg.task), load_tokenizer(cfg.model)
    model = load_model(cfg.model, task.num_labels)
    model.train()
    metrics = task.evaluate(model, tokenizer, batch_size=8)
    assert list(metrics) == ["toy-cls"] and 0 <= metrics["toy-cls"]["accuracy"] <= 1
    assert task.headline(metrics) == metrics["toy-cls"]["accuracy"]
    assert model.training  # evaluation restores the training mode


def test_every_glue_config_builds():
    for name, spec in SPECS.items():
        task = glue_task(HUB_NAMES[name])
        assert task.spec is spec and task.cfg.hub_config == spec.hub_config


@pytest.mark.realdata
def test_real_glue_official_sizes(shared_glue):
    sizes = {"rte": (2490, 277), "mrpc": (3668, 408), "stsb": (5749, 1500), "cola": (8551, 1043), "sst2": (67349, 872)}
    tasks = {name: glue_task(name, shared_glue) for name in sizes}
    for name, (train, dev) in sizes.items():
        assert (len(tasks[name].split("train")), len(tasks[name].split(""))) == (train, dev), name
    # published label counts (SOURCES.md): CoLA train 6023 acceptable (1), SST-2 37569 positive, MRPC 2474 paraphrases
    for name, positives in {"cola": 6023, "sst2": 37569, "mrpc": 2474}.items():
        assert sum(tasks[name].split("train")["label"]) == positives, name


def test_a_correlation_of_constant_predictions_is_undefined_not_nan(tmp_path):
    task = glue_task("stsb", write_glue(tmp_path, "STS-B"))
    metric = evaluate.load(str(METRIC_MODULE), "stsb")
    scores = task._score(metric, np.full(4, 2.5, dtype=np.float32), np.array([1.0, 2.0, 3.0, 4.0]), "stsb")
    assert scores == {"pearson": None, "spearmanr": None}
    assert task.undefined == {
        "stsb/pearson": "undefined: the model predicts one constant value",
        "stsb/spearmanr": "undefined: the model predicts one constant value",
    }
    with pytest.raises(Diverged, match="non-finite scores on stsb"):
        task._score(metric, np.array([np.nan, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]), "stsb")


def test_heldout_split_is_a_fixed_part_of_train_never_trained_on(tmp_path):
    (tmp_path / "SST-2").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "SST-2" / name).write_text(
            "sentence\tlabel\n" + "".join(f"sentence number {i} .\t{i % 2}\n" for i in range(50)), encoding="utf-8"
        )
    task = glue_task("sst2", tmp_path, "task.eval_split=heldout", "task.heldout_fraction=0.2")
    train, held = task.split("train"), task.split("_heldout")
    assert (len(train), len(held)) == (40, 10) and not set(train["text_a"]) & set(held["text_a"])
    again = glue_task("sst2", tmp_path, "task.eval_split=heldout", "task.heldout_fraction=0.2")
    assert again.split("_heldout")["text_a"] == held["text_a"]  # the same rows for every run
    assert task.eval_keys() == ["_heldout"] and glue_task("sst2", tmp_path).eval_keys() == [""]
