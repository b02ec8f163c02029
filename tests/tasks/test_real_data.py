"""The real LLM-Adapters test sets (../shared/data; skipped when absent): the answer oracle scores 100%, and the
real `output` texts re-score without errors."""

import pytest

from bora.config import load_config
from bora.tasks import answers, build_task
from bora.tasks.llm_adapters import TEST_FIELDS, read_records

pytestmark = pytest.mark.realdata


def test_oracle_scores_every_real_test_set_100_percent(shared_llm_adapters):
    test_dirs = sorted(p for p in (shared_llm_adapters / "test").iterdir() if p.is_dir())
    assert len(test_dirs) >= 13
    for test_dir in test_dirs:
        records = read_records(test_dir / "test.json", TEST_FIELDS)
        assert all(answers.check_gold(test_dir.name, r["answer"]) is None for r in records), test_dir.name
        # the gold answer as a model would say it (multiple choice: the option word itself, e.g. "answer3")
        correct = [answers.score(test_dir.name, f"The answer is {r['answer']}.", r["answer"])[1] for r in records]
        assert all(correct), f"{test_dir.name}: {correct.count(False)} oracle answers scored wrong"


def test_real_outputs_rescore(shared_llm_adapters):
    for test_dir in sorted(p for p in (shared_llm_adapters / "test").iterdir() if p.is_dir()):
        records = read_records(test_dir / "test.json", TEST_FIELDS)
        accuracy = sum(answers.score(test_dir.name, r["output"], r["answer"])[1] for r in records) / len(records)
        # the commonsense outputs are "the correct answer is <gold>"; math outputs are model-written rationales
        if answers.rule_for(test_dir.name) not in ("number", "letter"):
            assert accuracy == 1.0, test_dir.name
        else:
            assert 0.3 < accuracy < 1.0, test_dir.name


def test_real_test_sets_load_through_the_task(shared_llm_adapters):
    names = [
        "AddSub",
        "MultiArith",
        "SingleEq",
        "gsm8k",
        "AQuA",
        "SVAMP",
        "boolq",
        "piqa",
        "social_i_qa",
        "winogrande",
        "ARC-Challenge",
        "ARC-Easy",
        "openbookqa",
    ]  # hellaswag's test set is not staged
    cfg = load_config(["task=math", f"task.data_dir={shared_llm_adapters}", f"task.test_sets=[{','.join(names)}]"])
    task = build_task(cfg.task)
    sizes = {name: len(task.test_records(name)) for name in names}
    assert sizes == {
        "AddSub": 395,
        "MultiArith": 600,
        "SingleEq": 508,
        "gsm8k": 1319,
        "AQuA": 254,
        "SVAMP": 1000,
        "boolq": 3270,
        "piqa": 1838,
        "social_i_qa": 1954,
        "winogrande": 1267,
        "ARC-Challenge": 1172,
        "ARC-Easy": 2376,
        "openbookqa": 500,
    }


def test_the_real_test_sets_are_the_pinned_commits_files(shared_llm_adapters, prepare_data):
    """What ``make data`` would fetch: every test set ../shared/data holds has the object id of the pinned commit."""
    test_dirs = sorted(p for p in (shared_llm_adapters / "test").iterdir() if p.is_dir())
    assert len(test_dirs) >= 13
    for test_dir in test_dirs:
        pinned = prepare_data.GIT_BLOBS[f"dataset/{test_dir.name}/test.json"]
        assert prepare_data.git_blob_id(test_dir / "test.json") == pinned, test_dir.name
