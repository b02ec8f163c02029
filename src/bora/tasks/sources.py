"""Where each task's data comes from, without loading it: GLUE's file layout and labels, the LLM-Adapters files.

Light on purpose (no torch, datasets or transformers): ``bora.runs`` checksums the files a run reads before it
decides whether a finished run can be reused, and the loaders in ``glue.py`` / ``llm_adapters.py`` read the same
files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bora.errors import BoraError
from bora.paths import DATA_DIR


@dataclass(frozen=True)
class GlueSpec:
    """Where a GLUE task keeps its texts and label, in the TSV files and on the hub."""

    hub_config: str
    tsv_texts: tuple[str | int, ...]  # header names (or column indices when there is no header)
    tsv_label: str | int
    hub_texts: tuple[str, ...]
    labels: tuple[str, ...] | None  # TSV label strings in hub id order; None: a regression score
    header: bool = True
    dev_splits: tuple[tuple[str, str, str], ...] = (("", "dev.tsv", "validation"),)  # (key suffix, TSV, hub split)

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.labels else 1


_PAIR = ("sentence1", "sentence2")
_NLI = ("entailment", "not_entailment")
SPECS = {
    # CoLA TSV columns: source, label, original label, sentence (no header)
    "CoLA": GlueSpec("cola", (3,), 1, ("sentence",), ("0", "1"), header=False),
    "SST-2": GlueSpec("sst2", ("sentence",), "label", ("sentence",), ("0", "1")),
    "MRPC": GlueSpec("mrpc", ("#1 String", "#2 String"), "Quality", _PAIR, ("0", "1")),
    "STS-B": GlueSpec("stsb", _PAIR, "score", _PAIR, None),
    "QQP": GlueSpec("qqp", ("question1", "question2"), "is_duplicate", ("question1", "question2"), ("0", "1")),
    "MNLI": GlueSpec(
        "mnli",
        _PAIR,
        "gold_label",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        dev_splits=(
            ("_matched", "dev_matched.tsv", "validation_matched"),
            ("_mismatched", "dev_mismatched.tsv", "validation_mismatched"),
        ),
    ),
    "QNLI": GlueSpec("qnli", ("question", "sentence"), "label", ("question", "sentence"), _NLI),
    "RTE": GlueSpec("rte", _PAIR, "label", _PAIR, _NLI),
}


def glue_spec(glue_task: str | None) -> GlueSpec:
    if glue_task not in SPECS:
        raise BoraError(f"task.glue_task={glue_task!r}: use one of {', '.join(SPECS)}")
    return SPECS[glue_task]


def llm_adapters_dir(task: Mapping[str, Any]) -> Path:
    return Path(task["data_dir"]) if task.get("data_dir") else DATA_DIR / "llm-adapters"


def data_files(task: Mapping[str, Any]) -> dict[str, Path]:
    """The local files a task reads, by a location-free name (``MRPC/train.tsv``, ``test/gsm8k/test.json``); empty
    when the data comes from the hub."""
    if task["source"] == "glue":
        if not task.get("data_dir") or task.get("glue_task") not in SPECS:
            return {}
        spec = SPECS[task["glue_task"]]
        names = ["train.tsv", *(tsv for _, tsv, _ in spec.dev_splits)]
        return {f"{task['glue_task']}/{n}": Path(task["data_dir"]) / task["glue_task"] / n for n in names}
    root = llm_adapters_dir(task)
    names = (
        ([task["train_file"]] if task.get("train_file") else [])
        + [f"train/{name}/train.json" for name in task.get("train_parts") or {}]
        + [  # a mix of training parts
            f"test/{name}/test.json" for name in task.get("test_sets") or []
        ]
    )
    return {name: root / name for name in names}


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def data_record(task: Mapping[str, Any]) -> dict[str, Any]:
    """What a run records about its data: the hub dataset it loads, or the SHA-256 of every local file (a file
    that does not exist yet is left out; the loader reports it)."""
    files = data_files(task)
    if not files and task["source"] == "glue":
        return {"source": "hub", "dataset": task.get("hub_dataset"), "config": task.get("hub_config")}
    return {"source": "local", "sha256": {name: sha256(path) for name, path in files.items() if path.is_file()}}
