"""The committed synthetic CI data: exactly what scripts/make_toy_data.py writes, and loadable by the real loaders."""

import filecmp

import pytest

from bora.config import load_config
from bora.models import load_tokenizer
from bora.paths import DATA_DIR
from bora.tasks import answers, build_task


def test_committed_files_equal_a_fresh_generation(tmp_path, make_toy_data):
    written = make_toy_data.write_toy_data(tmp_path)
    assert len(written) == 6
    for path in written:
        committed = DATA_DIR / "toy" / path.relative_to(tmp_path)
        assert committed.is_file() and filecmp.cmp(path, committed, shallow=False), f"rerun make_toy_data: {committed}"


def test_toy_cls_through_the_glue_tsv_loader():
    task = build_task(load_config(["task=toy-cls"]).task)
    train, dev = task.split("train"), task.split("")
    assert (len(train), len(dev)) == (400, 100)
    assert sum(train["label"]) == 200 and sum(dev["label"]) == 50  # balanced


@pytest.mark.parametrize("task_name, test_set", [("toy-math", "toy_arith"), ("toy-recall", "toy_recall")])
def test_toy_generation_tasks_fit_max_length_and_score_their_gold(task_name, test_set):
    cfg = load_config(["model=tiny-decoder", f"task={task_name}"])
    task, tokenizer = build_task(cfg.task), load_tokenizer(cfg.model)
    dataset = task.train_dataset(tokenizer)
    assert len(dataset) == 400
    assert all(row["input_ids"][-1] == tokenizer.eos_token_id for row in dataset)  # no example is cut
    records = task.test_records(test_set)
    assert len(records) == 100 and len({r["answer"] for r in records}) == 10
    assert all(answers.score(test_set, r["output"], r["answer"])[1] for r in records)
    # the output and EOS fit the new tokens (the tokenizer adds BOS, one token as EOS is)
    assert max(len(tokenizer(r["output"])["input_ids"]) for r in records) <= cfg.task.max_new_tokens
