"""``bora power``: the seeds (and questions) that would make each claim of a study detectable, from its runs."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from synthetic_results import method, write_commonsense_study_runs, write_glue_study_runs

from bora.report import inference
from bora.report.aggregate import load_results
from bora.report.power import NEVER_SEEDS, display, main, plan
from bora.report.specs import membership
from bora.report.study import CLAIMS, STUDIES, check_study_claims

ROOT = Path(__file__).resolve().parents[2]
SETS = ["boolq", "ARC-Challenge", "ARC-Easy", "openbookqa"]


def _power(capsys, *args: str) -> dict[str, dict[str, str]]:
    """``bora power`` run on ``args``: its table, per claim statement the printed cells by column."""
    main(list(args))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["claim"]: row for row in rows}


def test_the_seeds_printed_as_needed_are_the_fewest_that_detect_the_effect(tmp_path, capsys):
    write_glue_study_runs(tmp_path, method("lora", targets="QV"), [0.70, 0.72, 0.74])
    write_glue_study_runs(tmp_path, method("lora", r=32, targets="QV"), [0.73, 0.75])
    write_glue_study_runs(
        tmp_path, method("bora", blocks=8, targets="QV"), [0.72, 0.741, 0.759]
    )  # sd 0.1 against LoRA r=8
    write_glue_study_runs(tmp_path, method("bora", blocks=16, targets="QV"), [0.67, 0.685, 0.715])  # sd 0.5
    claims = check_study_claims(STUDIES["cpu-glue"], load_results(tmp_path))
    effect = 0.5
    printed = _power(capsys, "--study", "cpu-glue", "--results", str(tmp_path), "--effect", str(effect))
    assert len(printed) == len(CLAIMS)
    for _, claim in claims.iterrows():
        row = printed[claim["statement"]]
        assert row["seeds now"] == str(claim["seeds"]) and row["detectable now"] == f"{claim['detectable']:.2f}"
        # a gain claim must resolve the effect itself; a not-worse claim its distance from the margin
        size = effect + inference.NOT_WORSE_MARGIN if claim["kind"] == "not_worse" else effect
        n = int(row["seeds needed"])
        detectable = [inference.detectable_effect(claim["std"] / math.sqrt(k), k - 1) for k in (n - 1, n)]
        assert detectable[1] <= size and (n == 2 or detectable[0] > size), claim["claim"]


def _commonsense_runs(root: Path, method_cfg: dict, per_seed: list[float], correct_per_seed: list[list[int]]):
    """Runs with every set at ``per_seed[s]`` and the predictions ``correct_per_seed[s]`` (the same on each set)."""
    metrics = [{name: {"accuracy": v, "n": float(len(c))} for name in SETS} for v, c in zip(per_seed, correct_per_seed)]
    write_commonsense_study_runs(
        root, method_cfg, [{**m, "average": {"accuracy": v}} for m, v in zip(metrics, per_seed)]
    )
    runs = membership(load_results(root), "cpu-commonsense", "cpu-commonsense")[0]
    for _, run in runs[runs["method"] == method_cfg["name"]].iterrows():
        folder = Path(run["run_dir"]) / "predictions"
        folder.mkdir()
        correct = correct_per_seed[int(run["seed"])]
        lines = [
            json.dumps({"id": i, "prediction": "a", "answer": "a" if c else "b", "correct": bool(c)})
            for i, c in enumerate(correct)
        ]
        for name in SETS:
            (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def test_a_claim_the_question_draw_hides_needs_questions_not_seeds(tmp_path, capsys):
    _commonsense_runs(tmp_path, method("lora"), [0.41, 0.43], [[1, 0, 1, 0], [1, 1, 0, 0]])
    _commonsense_runs(tmp_path, method("bora", blocks=8), [0.42, 0.45], [[1, 1, 1, 0], [1, 1, 0, 1]])
    effect = 10.0  # points: above what 2 seeds of sd 0.71 hide, below 2.8 x the question SE of 16 questions
    question_se = 100 * math.sqrt(4 * (1 / 12) / 4) / 4  # tests/tables/test_generation_study.py derives it
    assert question_se > effect / 2.8
    printed = _power(capsys, "--study", "cpu-commonsense", "--results", str(tmp_path), "--effect", str(effect))
    row = printed["BoRA (r=8, b=8) minus LoRA (r=8), Avg"]
    assert row["question SE"] == f"{question_se:.2f} (16 q.)" and row["seeds now"] == "2"
    assert row["seeds needed"] == NEVER_SEEDS
    questions = int(row["questions needed"])
    assert questions > 16
    # at that many questions (the question variance scaling as 1 / questions) and 2 seeds, and not at one fewer,
    # the effect is detectable

    def detectable(count: int) -> float:
        seed_var, question_var = 0.5 / 2, question_se**2 * 16 / count  # per-seed differences +1, +2: variance 0.5
        df = inference.welch_df(seed_var, 2, question_var, count)
        return inference.detectable_effect(math.sqrt(seed_var + question_var), df)

    assert detectable(questions) <= effect < detectable(questions - 1)
    # LoRA (r=32) has no runs: nothing to plan with
    assert printed["BoRA (r=8, b=8) minus LoRA (r=32), Avg"]["seeds needed"] == "unknown: no runs"


def test_an_unknown_study_is_a_one_line_error_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--study", "cpu-nothing"])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cpu-nothing" in error and "cpu-glue" in error


@pytest.mark.skipif(not (ROOT / "results" / "cpu-glue").is_dir(), reason="no committed cpu-glue results")
def test_the_committed_cpu_glue_runs_give_one_row_per_claim(capsys):
    printed = _power(capsys, "--study", "cpu-glue", "--results", str(ROOT / "results"))
    assert list(printed) == [claim.statement for claim in CLAIMS]
    assert all(row["seeds now"] != "0" and row["seeds needed"] for row in printed.values())


def test_a_claim_without_a_measured_spread_is_not_planned_and_says_why():
    # an ablation-shaped frame: no statement or question columns, the paper's effect in "paper"
    claims = pd.DataFrame(
        {
            "claim": ["one seed", "no spread", "no number", "plannable"],
            "kind": ["gain"] * 4,
            "paper": [1.0, 1.0, math.nan, 1.0],
            "std": [math.nan, 0.0, 0.5, 0.5],
            "seeds": [1, 3, 3, 3],
        }
    )
    shown = display(plan(claims, "paper")).set_index("claim")["seeds needed"]
    assert list(shown) == ["unknown: 1 seed", "unknown: no spread", "unknown: no paper number", shown["plannable"]]
    assert int(shown["plannable"]) == inference.seeds_needed(0.5, 0.0, 1.0)
