"""What the shared trainer needs from a task: tokenized training data, a collator, and an evaluation.

Two families implement it: GLUE (encoder classification / regression) and LLM-Adapters reasoning (decoder
generation). Metrics are returned in natural units (accuracy in [0, 1], correlations in [-1, 1]); tables
scale them to the paper's percentages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
from torch import nn
from transformers import PreTrainedTokenizerBase

from bora.errors import BoraError

# Per sub-task metrics: {"rte": {"accuracy": 0.71}} or {"gsm8k": {"accuracy": 0.5}, ..., "average": {...}}.
Metrics = dict[str, dict[str, float | None]]  # None: undefined for this run (Task.undefined says why)

SLICE_SEED = 0  # a constant, not the run seed: every run and method trains on the same max_train_samples slice
HELDOUT_SEED = 1234  # another constant: the held-out part of train is the same for every run (task.eval_split)


def train_slice(dataset: datasets.Dataset, max_samples: int | None) -> datasets.Dataset:
    """The first ``max_samples`` rows after a shuffle with ``SLICE_SEED`` (the whole set when None)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=SLICE_SEED).select(range(max_samples)).flatten_indices()


def split_heldout(dataset: datasets.Dataset, fraction: float) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(the rest, a held-out ``fraction`` of the rows), drawn once with ``HELDOUT_SEED``, disjoint."""
    held = max(1, round(len(dataset) * fraction))
    if held >= len(dataset):
        raise BoraError(f"task.heldout_fraction={fraction} leaves no training rows out of {len(dataset)}")
    order = dataset.shuffle(seed=HELDOUT_SEED)
    return order.select(range(held, len(order))).flatten_indices(), order.select(range(held)).flatten_indices()


class Task(ABC):
    kind: str  # "classification" | "regression" | "generation"
    num_labels: int | None  # size of the encoder's head (1 = regression); None for generation
    generation_engine: str | None = None  # the engine ``evaluate`` decoded with (generation tasks; set by it)

    def __init__(self, task_cfg):
        self.cfg = task_cfg

    @abstractmethod
    def train_dataset(self, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        """Tokenized training examples with ``input_ids``, ``attention_mask``, ``labels`` (and
        ``token_type_ids`` where the tokenizer makes them), truncated to ``task.max_length``; sliced to
        ``task.max_train_samples`` after a shuffle with a fixed seed, so every run and method sees the same slice."""

    def validation_dataset(self, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset | None:
        """Tokenized held-out training examples whose loss picks the checkpoint (``task.val_size``), or None."""
        return None

    @abstractmethod
    def data_collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[list[dict[str, Any]]], dict]:
        """Pads a list of ``train_dataset`` rows into a batch (labels padded with -100 for generation)."""

    @abstractmethod
    def evaluate(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int, out_dir: Path | None = None
    ) -> Metrics:
        """Scores the model on the evaluation split(s) with a progress bar and returns per sub-task metrics.

        Generation tasks decode greedily in batches with left padding and an attention mask, and write each
        test set's predictions (id, generation, extracted answer, gold, correct) to ``out_dir`` when given.
        """

    @property
    def main_metric(self) -> str:
        """The metric the paper reports for this task (``task.metric``)."""
        return self.cfg.metric

    def headline(self, metrics: Metrics) -> float | None:
        """The single number the paper's table shows: the entry named after the task (``task.name``; for MNLI the
        matched + mismatched overall) or, for several test sets, their ``average``."""
        if "average" in metrics:
            return metrics["average"][self.main_metric]
        return metrics[self.cfg.name][self.main_metric]
