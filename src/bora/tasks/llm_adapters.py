"""Math10K and Commonsense170K in the LLM-Adapters format: Alpaca-prompt training, generation scored by its rules.

Layout of ``task.data_dir`` (``make data`` writes it to data/llm-adapters): ``<train_file>`` and
``test/<name>/test.json``, each a JSON list of ``{instruction, input, output, answer}`` records.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import datasets
from torch import nn
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from bora.distributed import gather, is_main_process, shard
from bora.errors import BoraError
from bora.tasks import answers
from bora.tasks.base import Metrics, Task, split_heldout, train_slice
from bora.tasks.finished_sets import FinishedSets, weights_fingerprint
from bora.tasks.generation import chosen_engine, generate_ids
from bora.tasks.protocols import protocol
from bora.tasks.sources import llm_adapters_dir
from bora.tasks.templates import alpaca_prompt

log = logging.getLogger(__name__)

TRAIN_FIELDS = ("instruction", "input", "output")
TEST_FIELDS = ("instruction", "answer")
IGNORE_INDEX = -100  # label of tokens outside the loss


def read_records(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """The records of an LLM-Adapters JSON file, each checked to hold ``fields`` as strings."""
    if not path.is_file():
        raise BoraError(f"{path} not found; run `make data` or point task.data_dir (LLM_ADAPTERS_DIR) to a copy")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BoraError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise BoraError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not isinstance(records, list):
        raise BoraError(f"{path}: expected a JSON list of records, got a {type(records).__name__}")
    if not records:
        raise BoraError(f"{path}: no records")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BoraError(f"{path}: record {index} is a {type(record).__name__}, not an object")
        for field in fields:
            if field not in record:
                raise BoraError(f"{path}: record {index} has no {field!r} field")
            if not isinstance(record[field], str):
                raise BoraError(f"{path}: record {index} field {field!r} is not a string")
    return records


def tokenize_examples(examples: dict, tokenizer: PreTrainedTokenizerBase, max_length: int, train_on_inputs: bool):
    """LLM-Adapters `generate_and_tokenize_prompt` for a batch: prompt + output cut at ``max_length``, EOS appended
    when there is room, prompt tokens labelled -100 unless ``train_on_inputs``."""
    columns = zip(examples["instruction"], examples["input"], examples["output"])
    full = tokenizer([alpaca_prompt(*row) for row in columns], truncation=True, max_length=max_length)
    if not train_on_inputs:
        prompts = [alpaca_prompt(i, x) for i, x in zip(examples["instruction"], examples["input"])]
        prompt_lengths = [len(ids) for ids in tokenizer(prompts, truncation=True, max_length=max_length)["input_ids"]]
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for row, ids in enumerate(full["input_ids"]):
        ids = list(ids)
        if ids[-1] != tokenizer.eos_token_id and len(ids) < max_length:
            ids.append(tokenizer.eos_token_id)
        masked = 0 if train_on_inputs else min(prompt_lengths[row], len(ids))
        batch["input_ids"].append(ids)
        batch["attention_mask"].append([1] * len(ids))
        batch["labels"].append([IGNORE_INDEX] * masked + ids[masked:])
    return batch


VAL_SPLIT_SEED = 42  # LLM-Adapters' finetune.py: train_test_split(test_size=val_set_size, seed=42)
HELDOUT = "_heldout"  # name suffix of a training part's held-out records (task.eval_split=heldout)


def eval_subset(records: list[dict], count: int | None, seed: int | None) -> list[dict]:
    """``count`` of ``records``: the first, or (``seed`` given) the first ``count`` of a permutation drawn with that
    seed, kept in file order, so a smaller subset of the same seed lies inside a larger one."""
    if count is None or count >= len(records):
        return records
    if seed is None:
        return records[:count]
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    return [records[i] for i in sorted(order[:count])]


def check_answers(path: Path, name: str, records: list[dict]) -> None:
    for index, record in enumerate(records):
        problem = answers.check_gold(name, record["answer"])
        if problem:
            raise BoraError(f"{path}: record {index}: {problem}")


class ReasoningTask(Task):
    """Train on ``task.train_file``; test by generation on every ``task.test_sets`` entry, as ``task.protocol``
    says (bora.tasks.protocols: prompt, batches, padding, answer cut; ``task.num_beams``, ``task.max_new_tokens``)."""

    kind = "generation"
    num_labels = None

    def __init__(self, task_cfg):
        super().__init__(task_cfg)
        if bool(task_cfg.train_file) == bool(task_cfg.train_parts):
            raise BoraError(
                f"task {task_cfg.name}: set task.train_file (a JSON file in task.data_dir) or "
                "task.train_parts ({name: records} from train/<name>/train.json), "
                + ("not both" if task_cfg.train_file else "one of them")
            )
        if not task_cfg.test_sets:
            raise BoraError(f"task {task_cfg.name}: task.test_sets is empty; name at least one test set")
        if task_cfg.protocol is None:
            raise BoraError(
                f"task {task_cfg.name}: set task.protocol (bora_authors, llm_adapters or "
                "training_prompt) to say how its test sets are asked; conf/task/base/llm_adapters.yaml "
                "sets bora_authors"
            )
        for name, count in (task_cfg.train_parts or {}).items():
            answers.rule_for(name)  # its held-out part is scored by that test set's rule
            if not isinstance(count, int) or count < 1:
                raise BoraError(f"task.train_parts.{name}={count!r}: give a number of records >= 1")
        if task_cfg.train_parts and task_cfg.val_size:
            raise BoraError(
                f"task.val_size={task_cfg.val_size} splits task.train_file only; with task.train_parts "
                "use task.val_size=0"
            )
        if task_cfg.eval_split == "heldout" and not task_cfg.train_parts:
            raise BoraError(
                f"task.eval_split=heldout: task {task_cfg.name} scores held-out training records of "
                "task.train_parts only; set task.train_parts, or use task.eval_split=dev"
            )
        for name in task_cfg.test_sets:
            answers.rule_for(name)
        self.data_dir = llm_adapters_dir(task_cfg)
        self._tests: dict[str, list[dict]] = {}
        self._rows: tuple[datasets.Dataset, datasets.Dataset | None] | None = None
        self._heldout: dict[str, list[dict]] = {}

    def test_records(self, name: str) -> list[dict]:
        """A test set's records (``task.max_eval_samples`` of them: the first, or drawn with
        ``task.eval_sample_seed``), gold answers checked against its rule."""
        if name not in self._tests:
            path = self.data_dir / "test" / name / "test.json"
            records = read_records(path, TEST_FIELDS)
            check_answers(path, name, records)
            self._tests[name] = eval_subset(records, self.cfg.max_eval_samples, self.cfg.eval_sample_seed)
        return self._tests[name]

    def evaluation_sets(self) -> dict[str, list[dict]]:
        """What ``evaluate`` scores, by name: the test sets, or under ``task.eval_split=heldout`` each training
        part's held-out records (``<part>_heldout``, never trained on), subset as the test sets are."""
        if self.cfg.eval_split == "heldout":
            self._split()
            return {
                f"{name}{HELDOUT}": eval_subset(records, self.cfg.max_eval_samples, self.cfg.eval_sample_seed)
                for name, records in self._heldout.items()
            }
        return {name: self.test_records(name) for name in self.cfg.test_sets}

    def _split(self) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        """The training rows and the ``task.val_size`` held-out rows (LLM-Adapters' split: seed 42), read once."""
        if self._rows is None:
            self._rows = self._read_parts() if self.cfg.train_parts else self._read_train_file()
        return self._rows

    def _read_train_file(self) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        records = read_records(self.data_dir / self.cfg.train_file, TRAIN_FIELDS)
        raw = datasets.Dataset.from_dict({field: [r[field] for r in records] for field in TRAIN_FIELDS})
        held_out = None
        if self.cfg.val_size:
            if self.cfg.val_size >= len(raw):
                raise BoraError(
                    f"task.val_size={self.cfg.val_size} leaves no training rows out of {len(raw)} "
                    f"in {self.cfg.train_file}; use a smaller task.val_size"
                )
            parts = raw.train_test_split(test_size=self.cfg.val_size, shuffle=True, seed=VAL_SPLIT_SEED)
            raw, held_out = parts["train"], parts["test"]
        return train_slice(raw, self.cfg.max_train_samples), held_out

    def _read_parts(self) -> tuple[datasets.Dataset, None]:
        """The mix of ``task.train_parts``: of each part the first N records after a ``SLICE_SEED`` shuffle (after
        its held-out fraction is set aside, under ``task.eval_split=heldout``), concatenated in the config's order."""
        fields = TRAIN_FIELDS + ("answer",)
        mixed = []
        for name, count in self.cfg.train_parts.items():
            path = self.data_dir / "train" / name / "train.json"
            records = read_records(path, fields)
            check_answers(path, name, records)
            rows = datasets.Dataset.from_dict({field: [r[field] for r in records] for field in fields})
            if self.cfg.eval_split == "heldout":
                rows, held = split_heldout(rows, self.cfg.heldout_fraction)
                self._heldout[name] = held.to_list()
            if count > len(rows):
                raise BoraError(
                    f"task.train_parts.{name}={count}: {path} has {len(rows)} records to train on; "
                    "ask for at most that many"
                )
            mixed.append(train_slice(rows, count).select_columns(list(TRAIN_FIELDS)))
        return datasets.concatenate_datasets(mixed), None

    def _tokenized(self, raw: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, desc: str) -> datasets.Dataset:
        return raw.map(
            tokenize_examples,
            fn_kwargs={
                "tokenizer": tokenizer,
                "max_length": self.cfg.max_length,
                "train_on_inputs": self.cfg.train_on_inputs,
            },
            batched=True,
            remove_columns=raw.column_names,
            desc=desc,
        )

    def train_dataset(self, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        self.evaluation_sets()  # a broken test file fails now, not after training
        source = self.cfg.train_file or "the parts " + ", ".join(self.cfg.train_parts)
        dataset = self._tokenized(self._split()[0], tokenizer, f"tokenize {source}")
        no_target = sum(all(label == IGNORE_INDEX for label in labels) for labels in dataset["labels"])
        if no_target:  # kept, as LLM-Adapters keeps them, but never silently
            log.warning(
                "%d of %d training examples of %s have no response token left after the cut at "
                "task.max_length=%d; they add nothing to the loss",
                no_target,
                len(dataset),
                source,
                self.cfg.max_length,
            )
        return dataset

    def validation_dataset(self, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset | None:
        held_out = self._split()[1]
        return None if held_out is None else self._tokenized(held_out, tokenizer, "tokenize the validation rows")

    def data_collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
        return DataCollatorForSeq2Seq(
            tokenizer, padding=True, pad_to_multiple_of=8, label_pad_token_id=IGNORE_INDEX, return_tensors="pt"
        )

    def evaluate(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int, out_dir: Path | None = None
    ) -> Metrics:
        tests = self.evaluation_sets()
        asked = protocol(self.cfg.protocol)
        on_cpu = next(model.parameters()).device.type == "cpu"
        self.generation_engine = chosen_engine(str(self.cfg.generation_engine), self.cfg.num_beams, on_cpu)
        metrics: Metrics = {}
        # sets an interrupted attempt finished with these weights are read back, not decoded again
        finished = FinishedSets(Path(out_dir) / "predictions", weights_fingerprint(model)) if out_dir else None
        self.reused_sets = []
        for name, records in tests.items():
            prompts = [asked.prompt(r["instruction"], r.get("input") or "") for r in records]
            rows = finished.rows(name, len(records)) if finished else None
            if rows is not None:
                log.info("%s: the %d predictions an interrupted attempt finished are reused", name, len(rows))
                self.reused_sets.append(name)
                metrics[name] = set_metrics(rows, self.cfg.max_new_tokens)
                continue
            block = batch_size if asked.file_order else 1  # file order: each rank decodes whole batches
            mine = [prompts[i] for i in shard(len(prompts), block)]  # under torchrun each rank decodes its share
            new_ids = gather(
                generate_ids(
                    model,
                    tokenizer,
                    mine,
                    batch_size,
                    self.cfg.max_new_tokens,
                    desc=name,
                    num_beams=self.cfg.num_beams,
                    engine=str(self.cfg.generation_engine),
                    file_order=asked.file_order,
                    pad_token_id=asked.pad_token_id,
                ),
                len(prompts),
                block,
            )
            rows = [
                self._row(index, name, record, prompt, ids, tokenizer)
                for index, (record, prompt, ids) in enumerate(zip(records, prompts, new_ids))
            ]
            metrics[name] = set_metrics(rows, self.cfg.max_new_tokens)
            if finished is not None and is_main_process():
                finished.write(name, rows)
        metrics["average"] = {"accuracy": sum(m["accuracy"] for m in metrics.values()) / len(metrics)}
        return metrics

    def _row(
        self, index: int, name: str, record: dict, prompt: str, new_ids: list[int], tokenizer: PreTrainedTokenizerBase
    ) -> dict:
        """One prediction: the continuation as text, the response the protocol cuts from the whole decoded sequence
        (prompt and continuation, special tokens dropped, as the sources decode it), its score, and how decoding
        ended (``stopped``: at EOS; else at task.max_new_tokens)."""
        prompt_ids = tokenizer(prompt)["input_ids"]
        decoded = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
        response = protocol(self.cfg.protocol).response(decoded)
        prediction, correct = answers.score(name.removesuffix(HELDOUT), response, record["answer"])
        return {
            "id": index,
            "generation": tokenizer.decode(new_ids, skip_special_tokens=True),
            "response": response,
            "prediction": prediction,
            "answer": record["answer"],
            "correct": correct,
            "new_tokens": len(new_ids),
            "stopped": bool(new_ids) and new_ids[-1] == tokenizer.eos_token_id,
        }


def set_metrics(rows: list[dict], max_new_tokens: int) -> dict[str, float]:
    """A test set's accuracy, and what a reader needs beside it, recorded with the run (a table of committed result
    files can then show them without the data): ``n`` (questions, for the binomial standard error), ``majority``
    (the share of the most common gold answer: what always giving it scores), ``at_limit`` (generations cut at
    ``max_new_tokens`` without EOS) and ``repeated_marker`` (generations that write ``### Response:`` again)."""
    golds = [row["answer"] for row in rows]
    return {
        "accuracy": sum(row["correct"] for row in rows) / len(rows),
        "n": float(len(rows)),
        "majority": max(golds.count(gold) for gold in set(golds)) / len(rows),
        "at_limit": sum(not row["stopped"] and row["new_tokens"] >= max_new_tokens for row in rows) / len(rows),
        "repeated_marker": sum(answers.RESPONSE_MARKER in row["generation"] for row in rows) / len(rows),
    }
