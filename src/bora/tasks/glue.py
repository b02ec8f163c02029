"""GLUE on an encoder: the hub's GLUE dataset by default, or a folder in the GLUE download script's TSV layout.

Evaluation is on the dev (validation) split(s): GLUE test labels are hidden, and the paper reports dev numbers.
``task.eval_split=heldout`` instead scores a fixed, seeded part of the *training* set (``task.heldout_fraction``) and
trains on the rest: the place to choose a protocol without ever looking at dev.
Labels follow the hub dataset (nyu-mll/glue), so both sources give the same ids.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import datasets
import evaluate
import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # text bars also in notebooks (tqdm.auto warns there without ipywidgets)
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from bora.distributed import gather, shard
from bora.errors import BoraError, Diverged
from bora.tasks.base import Metrics, Task, split_heldout, train_slice
from bora.tasks.sources import GlueSpec, glue_spec

HELDOUT = "_heldout"  # key suffix of the held-out part of train (task.eval_split=heldout)
METRIC_MODULE = Path(__file__).parent / "metrics" / "bora_glue.py"
csv.field_size_limit(sys.maxsize)  # a few GLUE sentences exceed csv's default field limit of 128 KiB


def read_tsv(path: Path, spec: GlueSpec) -> datasets.Dataset:
    """A GLUE TSV file as columns ``text_a`` (``text_b``) and ``label``; any bad row is an error naming its line."""
    if not path.is_file():
        raise BoraError(f"{path} not found; task.data_dir (GLUE_DIR) must hold <TASK>/train.tsv and dev.tsv")
    texts: list[list[str]] = [[] for _ in spec.tsv_texts]
    labels: list = []
    # utf-8-sig drops MRPC's byte-order mark; QUOTE_NONE because GLUE sentences contain unbalanced quotes.
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            columns, n_fields = _columns(path, spec, rows)
            for line, row in enumerate(rows, start=2 if spec.header else 1):
                if len(row) != n_fields:
                    raise BoraError(f"{path} line {line}: {len(row)} tab-separated fields, expected {n_fields}")
                for column, values in zip(columns[:-1], texts):
                    values.append(row[column])
                labels.append(_label(path, line, row[columns[-1]], spec))
    except UnicodeDecodeError:
        raise BoraError(
            f"{path}: not UTF-8 text ({_first_bad_byte(path)}); GLUE's TSV files are UTF-8: re-download "
            "or convert it (iconv -t utf-8)"
        ) from None
    if not labels:
        raise BoraError(f"{path}: no data rows")
    names = ["text_a", "text_b"][: len(texts)]
    label_type = datasets.Value("float32") if spec.labels is None else datasets.ClassLabel(len(spec.labels))
    features = datasets.Features({**{n: datasets.Value("string") for n in names}, "label": label_type})
    return datasets.Dataset.from_dict({**dict(zip(names, texts)), "label": labels}, features=features)


def _first_bad_byte(path: Path) -> str:
    """Where a file stops being UTF-8 (the reader decodes in chunks, so its own error cannot say)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return f"{error.reason} at line {line}, byte {error.start}"
    return "undecodable"


def _columns(path: Path, spec: GlueSpec, rows) -> tuple[list[int], int]:
    """Indices of the text columns then the label column, and the field count every row must have."""
    wanted = [*spec.tsv_texts, spec.tsv_label]
    if not spec.header:
        return wanted, 4
    header = next(rows, None)
    if header is None:
        raise BoraError(f"{path}: empty file")
    missing = [name for name in wanted if name not in header]
    if missing:
        raise BoraError(f"{path} line 1: header has no column {missing[0]!r} (header: {' | '.join(header)})")
    return [header.index(name) for name in wanted], len(header)


def _label(path: Path, line: int, value: str, spec: GlueSpec) -> int | float:
    if spec.labels is None:
        try:
            return float(value)
        except ValueError:
            raise BoraError(f"{path} line {line}: score {value!r} is not a number") from None
    if value not in spec.labels:
        raise BoraError(f"{path} line {line}: label {value!r} is not one of {', '.join(spec.labels)}")
    return spec.labels.index(value)


def load_hub_split(hub_dataset: str, hub_config: str, split: str, spec: GlueSpec) -> datasets.Dataset:
    """One split of the hub's GLUE dataset with the columns of ``read_tsv``."""
    try:
        data = datasets.load_dataset(hub_dataset, hub_config, split=split)
    except Exception as error:  # offline, unknown id, ...: the one-line message says how to use local files
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BoraError(
            f"cannot load {hub_dataset}/{hub_config} split {split} from the hub ({first}); "
            "set GLUE_DIR or task.data_dir to a folder in the GLUE TSV layout"
        ) from None
    missing = [c for c in (*spec.hub_texts, "label") if c not in data.column_names]
    if missing:
        raise BoraError(f"{hub_dataset}/{hub_config} split {split} has no column {missing[0]!r}")
    if len(data) == 0:
        raise BoraError(f"{hub_dataset}/{hub_config} split {split} is empty")
    names = ["text_a", "text_b"][: len(spec.hub_texts)]
    data = data.select_columns([*spec.hub_texts, "label"])
    return data.rename_columns(dict(zip(spec.hub_texts, names)))


def encode_pairs(batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict:
    """Tokenize ``text_a`` (with ``text_b`` as the pair) and carry ``label`` over as ``labels``."""
    texts = [batch["text_a"]] + ([batch["text_b"]] if "text_b" in batch else [])
    encoded = tokenizer(*texts, truncation=True, max_length=max_length)
    encoded["labels"] = batch["label"]
    return encoded


class GlueTask(Task):
    """A GLUE task (``task.glue_task``) on a sequence-classification (or regression) head."""

    def __init__(self, task_cfg):
        super().__init__(task_cfg)
        self.spec = glue_spec(task_cfg.glue_task)
        self.kind = "regression" if self.spec.labels is None else "classification"
        if task_cfg.kind != self.kind:
            raise BoraError(
                f"task {task_cfg.name}: task.kind={task_cfg.kind} but GLUE {task_cfg.glue_task} is "
                f"{self.kind}; set task.kind={self.kind}"
            )
        self.num_labels = self.spec.num_labels
        if task_cfg.val_size or task_cfg.num_beams != 1 or task_cfg.protocol is not None:
            raise BoraError(
                f"task.val_size / task.num_beams / task.protocol are LLM-Adapters settings; GLUE task "
                f"{task_cfg.name} "
                "evaluates on its dev split (a held-out part of train: task.eval_split=heldout)"
            )
        if not task_cfg.data_dir and not task_cfg.hub_dataset:
            raise BoraError(f"task {task_cfg.name}: set task.data_dir (GLUE_DIR) or task.hub_dataset")
        self._splits: dict[str, datasets.Dataset] = {}
        self.undefined: dict[str, str] = {}  # "<split>/<metric>" -> why it has no value

    def eval_keys(self) -> list[str]:
        """Keys of the splits ``evaluate`` scores: the dev split(s) (``""``, ``"_matched"``, ...) or ``"_heldout"``."""
        if self.cfg.eval_split == "heldout":
            return [HELDOUT]
        return [key for key, _, _ in self.spec.dev_splits]

    def split(self, name: str) -> datasets.Dataset:
        """Raw rows of ``train``, a dev split key (``""``, ``"_matched"``, ...) or ``"_heldout"``, read once."""
        if self.cfg.eval_split == "heldout" and name in ("train", HELDOUT):
            if name not in self._splits:
                self._splits["train"], self._splits[HELDOUT] = split_heldout(
                    self._read("train"), self.cfg.heldout_fraction
                )
            return self._splits[name]
        if name not in self._splits:
            self._splits[name] = self._read(name)
        return self._splits[name]

    def _read(self, name: str) -> datasets.Dataset:
        files = {"train": ("train.tsv", "train")} | {key: (tsv, hub) for key, tsv, hub in self.spec.dev_splits}
        tsv, hub_split = files[name]
        if self.cfg.data_dir:
            return read_tsv(Path(self.cfg.data_dir) / self.cfg.glue_task / tsv, self.spec)
        hub_config = self.cfg.hub_config or self.spec.hub_config
        return load_hub_split(self.cfg.hub_dataset, hub_config, hub_split, self.spec)

    def _tokenize(self, data: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, desc: str) -> datasets.Dataset:
        return data.map(
            encode_pairs,
            fn_kwargs={"tokenizer": tokenizer, "max_length": self.cfg.max_length},
            batched=True,
            remove_columns=data.column_names,
            desc=desc,
        )

    def train_dataset(self, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        for key in self.eval_keys():  # a broken dev file fails now, not after training
            self.split(key)
        data = train_slice(self.split("train"), self.cfg.max_train_samples)
        return self._tokenize(data, tokenizer, f"tokenize {self.cfg.name} train")

    def data_collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def predict(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, data: datasets.Dataset, batch_size: int, desc: str
    ) -> np.ndarray:
        """Class ids (regression: scores) of the model on raw rows, in order."""
        if len(data) == 0:  # a rank's share of a set smaller than the world
            return np.empty(0, dtype=np.float32 if self.kind == "regression" else np.int64)
        encoded = self._tokenize(data, tokenizer, f"tokenize {desc}").remove_columns("labels")
        collate = self.data_collator(tokenizer)
        device = next(model.parameters()).device
        outputs = []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in tqdm(range(0, len(encoded), batch_size), desc=desc, unit="batch"):
                    columns = encoded[start : start + batch_size]
                    batch = collate([dict(zip(columns, values)) for values in zip(*columns.values())])
                    logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
                    outputs.append(logits.squeeze(-1) if self.kind == "regression" else logits.argmax(-1))
        finally:
            model.train(was_training)
        return torch.cat(outputs).cpu().numpy()

    def evaluate(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int, out_dir: Path | None = None
    ) -> Metrics:
        """Metrics per dev split, keyed ``task.name`` (MNLI: ``<name>_matched``, ``<name>_mismatched`` and
        ``<name>`` = accuracy over both dev sets together, the paper's MNLI number)."""
        metric = evaluate.load(str(METRIC_MODULE), self.spec.hub_config)
        metrics: Metrics = {}
        all_predictions, all_references = [], []
        keys = self.eval_keys()
        for key in keys:
            data = self.split(key)
            if self.cfg.max_eval_samples is not None:
                data = data.select(range(min(self.cfg.max_eval_samples, len(data))))
            desc = f"{self.cfg.name} held-out train" if key == HELDOUT else f"{self.cfg.name}{key} dev"
            mine = self.predict(model, tokenizer, data.select(shard(len(data))), batch_size, desc)
            predictions = np.asarray(gather(list(mine), len(data)))  # under torchrun each rank predicts its share
            references = np.asarray(data["label"])
            label = self.cfg.name if key == HELDOUT else f"{self.cfg.name}{key}"  # the held-out part is the task
            metrics[label] = self._score(metric, predictions, references, label)
            all_predictions.append(predictions)
            all_references.append(references)
        if len(keys) > 1:
            metrics[self.cfg.name] = self._score(
                metric, np.concatenate(all_predictions), np.concatenate(all_references), self.cfg.name
            )
        return metrics

    def _score(self, metric, predictions: np.ndarray, references: np.ndarray, key: str) -> dict[str, float | None]:
        """The metric's values; a correlation of constant predictions is undefined: None, with the reason kept in
        ``self.undefined`` (never NaN). Non-finite predictions mean the model diverged."""
        if not np.isfinite(predictions).all():
            raise Diverged(f"diverged: the model predicts non-finite scores on {key}")
        scores: dict[str, float | None] = dict(metric.compute(predictions=predictions, references=references))
        for name, value in scores.items():
            if value is not None and not np.isfinite(value):
                constant = np.ptp(predictions) == 0 or np.ptp(references) == 0
                self.undefined[f"{key}/{name}"] = (
                    "undefined: the model predicts one constant value" if constant else f"not a number ({value})"
                )
                scores[name] = None
        return scores
