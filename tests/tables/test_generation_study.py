"""A generation study (cpu-commonsense: Table 3's rows on SmolLM2) from synthetic result files: the main table with
the untrained and majority rows, the claims, the binomial errors and the decoding shares."""

import json
import math
from pathlib import Path

import pytest
from synthetic_results import method, write_commonsense_study_runs, write_run

from bora.report.aggregate import load_results
from bora.report.generation import (
    GENERATION_STUDIES,
    above_guessing,
    binomial_se,
    decoding_table,
    favourite_share,
    paired_question_se,
    paired_question_variance,
    prediction_rows,
    reference_rows,
    render_generation_study,
    training_table,
    unanswered_share,
)
from bora.report.generation_figures import accuracy_frame, render_generation_figures
from bora.report.specs import membership
from bora.report.study import STUDIES, check_study_claims

STUDY = GENERATION_STUDIES["cpu-commonsense"]
SETS = ["boolq", "ARC-Challenge", "ARC-Easy", "openbookqa"]
MAJORITY = {"boolq": 0.62, "ARC-Challenge": 0.27, "ARC-Easy": 0.27, "openbookqa": 0.276}


def metrics(accuracy: float, n: int = 500, at_limit: float = 0.0, repeated: float = 0.0) -> dict:
    values = {
        name: {
            "accuracy": accuracy,
            "n": float(n),
            "majority": MAJORITY[name],
            "at_limit": at_limit,
            "repeated_marker": repeated,
        }
        for name in SETS
    }
    values["average"] = {"accuracy": accuracy}
    return values


def _runs(root, method_cfg, per_seed, **kwargs):
    write_commonsense_study_runs(root, method_cfg, [metrics(value, **kwargs) for value in per_seed])


@pytest.fixture
def study_runs(tmp_path):
    _runs(tmp_path, method("lora"), [0.41, 0.43], repeated=0.02)  # the plan: seeds 0 and 1
    _runs(tmp_path, method("bora", blocks=8), [0.42, 0.45])  # +1, +2
    write_run(
        tmp_path,
        "cpu-commonsense-untrained",
        "smollm2-135m",
        "cpu/commonsense",
        method("lora"),
        0,
        metrics(0.05, n=100, at_limit=0.9, repeated=0.5),
        plan="cpu-commonsense-untrained",
    )
    write_run(
        tmp_path,
        "cpu-commonsense",
        "smollm2-135m",
        "cpu/commonsense",
        method("lora"),
        0,
        metrics(0.9),
        plan="cpu-commonsense",
        extra=("trainer.lr=0.5",),
    )  # not planned: left out
    return load_results(tmp_path)


def test_binomial_standard_error():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert math.isnan(binomial_se(0.5, 0)) and math.isnan(binomial_se(float("nan"), 10))


def test_above_guessing_counts_an_unanswered_question_as_a_guess_that_is_never_right(tmp_path):
    (tmp_path / "predictions").mkdir()
    rows = [("true", "true"), (None, "true"), (None, "false"), ("false", "false")]  # 2 of 4 right
    (tmp_path / "predictions" / "boolq.jsonl").write_text(
        "".join(json.dumps({"prediction": p, "answer": a, "correct": p == a}) + "\n" for p, a in rows)
    )
    # guessing in the run's proportions (1/4 "true", 1/4 "false", 1/2 none) against gold 1/2, 1/2: 1/4 right
    assert above_guessing(prediction_rows(tmp_path, "boolq")) == pytest.approx(0.5 - 0.25)
    assert prediction_rows(tmp_path, "piqa") is None and math.isnan(above_guessing(None))


def test_reference_rows_show_the_untrained_model_and_the_majority_share(study_runs):
    rows = reference_rows(STUDY, study_runs).set_index("row")
    assert rows.loc["untrained model", "BoolQ"] == pytest.approx(5.0)
    assert rows.loc["untrained model", "BoolQ n"] == 100
    assert rows.loc["majority answer", "BoolQ"] == pytest.approx(62.0)
    assert rows.loc["majority answer", "OBQA n"] == 500


def test_decoding_table_pools_questions_per_row(study_runs):
    planned_runs = membership(study_runs, "cpu-commonsense", "cpu-commonsense")[0]
    first = Path(planned_runs.loc[planned_runs["method"] == "lora", "run_dir"].iloc[0])
    (first / "predictions").mkdir()
    for name in SETS:  # one run answers "true" to 3 of 4 questions; the other has no predictions: left out
        lines = [
            json.dumps({"prediction": p, "answer": a, "correct": p == a})
            for p, a in zip(("true", "true", "false", "true"), ("true", "false", "false", "false"))
        ]
        (first / "predictions" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    table = decoding_table(STUDY, study_runs).set_index("method_tag")
    assert table.loc["lora_r8_a16_d0.05_QKV", "favourite_pct"] == pytest.approx(75.0)
    # 2 of 4 right; guessing "true" 3/4 and "false" 1/4 of the time against gold 1/4 "true" scores 3/8
    assert table.loc["lora_r8_a16_d0.05_QKV", "above_guessing"] == pytest.approx(100 * (0.5 - 0.375))
    assert math.isnan(table.loc["bora_r8_b8_a16_d0.05_QKV", "above_guessing"])
    assert math.isnan(table.loc["bora_r8_b8_a16_d0.05_QKV", "favourite_pct"])
    assert table.loc["untrained", "at_limit_pct"] == pytest.approx(90.0)
    assert table.loc["untrained", "repeated_marker_pct"] == pytest.approx(50.0)
    lora = table.loc["lora_r8_a16_d0.05_QKV"]
    assert lora["runs"] == 2 and lora["questions"] == 2 * 4 * 500  # the left-out run is not counted
    assert lora["repeated_marker_pct"] == pytest.approx(2.0)
    expected = 100 * sum(binomial_se(p, 500) for p in (0.41, 0.43)) / 2
    assert lora["binomial_se"] == pytest.approx(expected)


def _write_predictions(runs, method_name: str, correct_per_seed: list[list[int]]):
    planned_runs = membership(runs, "cpu-commonsense", "cpu-commonsense")[0]
    for seed, correct in enumerate(correct_per_seed):
        run = planned_runs[(planned_runs["method"] == method_name) & (planned_runs["seed"] == seed)]
        folder = Path(run["run_dir"].iloc[0]) / "predictions"
        folder.mkdir()
        for name in SETS:
            lines = [
                json.dumps({"id": i, "prediction": "true", "answer": "true" if c else "false", "correct": bool(c)})
                for i, c in enumerate(correct)
            ]
            (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


LORA, BORA8 = "lora_r8_a16_d0.05_QKV", "bora_r8_b8_a16_d0.05_QKV"


def test_a_claims_question_se_pairs_the_questions_and_averages_the_seeds_per_question(study_runs):
    _write_predictions(study_runs, "lora", [[1, 0, 1, 0], [1, 1, 0, 0]])
    assert math.isnan(paired_question_se(STUDY, study_runs, BORA8, LORA))  # BoRA's predictions are missing
    _write_predictions(study_runs, "bora", [[1, 1, 1, 0], [1, 1, 0, 1]])
    # per question, BoRA minus LoRA averaged over the two seeds: 0, 0.5, 0, 0.5 (sample variance 1/12), in each of
    # the 4 sets of 4 questions; Avg is the mean of the 4 sets
    expected = 100 * math.sqrt(4 * (1 / 12) / 4) / 4
    assert paired_question_se(STUDY, study_runs, BORA8, LORA) == pytest.approx(expected)
    assert paired_question_se(STUDY, study_runs, LORA, BORA8) == pytest.approx(expected)


def test_render_puts_the_question_se_beside_its_claim_and_adds_it_to_the_interval(study_runs, tmp_path):
    _write_predictions(study_runs, "lora", [[1, 0, 1, 0], [1, 1, 0, 0]])
    _write_predictions(study_runs, "bora", [[1, 1, 1, 0], [1, 1, 0, 1]])
    question_se = 100 * math.sqrt(4 * (1 / 12) / 4) / 4
    assert paired_question_variance(STUDY, study_runs, BORA8, LORA) == pytest.approx((question_se**2, 16))
    markdown = render_generation_study("cpu-commonsense", study_runs, tmp_path / "tables", tmp_path)[0]
    bora_claim = next(line for line in markdown.splitlines() if line.startswith("| BoRA (r=8, b=8) minus LoRA (r=8)"))
    assert f"| {question_se:.2f} " in bora_claim
    claims = check_study_claims(
        STUDIES["cpu-commonsense"],
        study_runs,
        lambda better, baseline, seeds: paired_question_variance(STUDY, study_runs, better, baseline, seeds),
    ).set_index("claim")
    claim = claims.loc["bora8_vs_lora8"]  # per-seed Avg differences +1, +2 (std 0.71) and the questions' variance
    assert claim["se"] == pytest.approx(math.sqrt(0.5 / 2 + question_se**2))
    assert claim["question_se"] == pytest.approx(question_se)


def test_the_favourite_answer_leaves_out_unanswered_questions_and_their_share_is_shown():
    rows = [{"prediction": p} for p in (None, None, None, "true", "false", "true")]
    assert favourite_share(rows) == pytest.approx(2 / 3)  # "true" in 2 of the 3 answered, not None in 3 of 6
    assert unanswered_share(rows) == pytest.approx(0.5)
    assert math.isnan(favourite_share([{"prediction": None}])) and unanswered_share([{"prediction": None}]) == 1


def test_training_table_averages_each_logged_step_over_a_rows_runs(study_runs, tmp_path):
    planned_runs = membership(study_runs, "cpu-commonsense", "cpu-commonsense")[0]
    for (_, run), losses in zip(
        planned_runs.sort_values(["method", "seed"]).iterrows(),
        ([2.6, 0.8, 0.2], [2.6, 1.0, 0.4], [2.6, 1.4, 0.3], [2.6, 1.6, 0.5]),
    ):
        path = Path(run["run_dir"]) / "result.json"
        record = json.loads(path.read_text())
        record["train"]["loss_history"] = [{"step": step, "loss": loss} for step, loss in zip((1, 10, 12), losses)]
        record["train"]["mean_loss"] = sum(losses) / 3
        path.write_text(json.dumps(record))
    table = training_table(STUDY, study_runs).set_index("method_tag")
    assert table.loc[BORA8, "step 10"] == pytest.approx(0.9) and table.loc[BORA8, "step 12"] == pytest.approx(0.3)
    assert table.loc[LORA, "step 10"] == pytest.approx(1.5) and table.loc[LORA, "runs"] == 2
    assert table.loc[LORA, "mean_loss"] == pytest.approx((4.3 + 4.7) / 6)
    markdown = render_generation_study("cpu-commonsense", study_runs, tmp_path / "tables", tmp_path)[0]
    section = markdown.split("#### Training loss")[1].splitlines()
    assert any(line.startswith("| BoRA (r=8, b=8)") and "| 0.900 " in line and "| 0.300 " in line for line in section)
    assert not any("step 1 " in line for line in section)  # the untrained loss, the same for every row


def test_accuracy_figure_plots_every_run_the_references_and_each_accuracys_binomial_se(study_runs, tmp_path):
    frame = accuracy_frame(STUDY, study_runs)
    lora = frame[(frame["row"] == "LoRA (r=8)") & (frame["set"] == "BoolQ")]
    assert list(lora["seed"]) == [0, 1] and list(lora["accuracy"]) == pytest.approx([41.0, 43.0])
    assert lora["se"].iloc[0] == pytest.approx(100 * binomial_se(0.41, 500))
    average = frame[(frame["row"] == "LoRA (r=8)") & (frame["set"] == "Avg") & (frame["seed"] == 0)].iloc[0]
    assert average["n"] == 2000 and average["se"] == pytest.approx(100 * binomial_se(0.41, 500) / 2)  # 4 sets
    majority = frame[(frame["row"] == "majority answer") & (frame["set"] == "BoolQ")]
    assert majority["accuracy"].iloc[0] == pytest.approx(62.0)
    assert frame[frame["row"] == "untrained model"]["n"].iloc[0] == 100
    assert "LoRA (r=8)" in set(frame["row"]) and len(frame[frame["row"] == "LoRA (r=8)"]) == 2 * 5  # not left-out
    written = render_generation_figures(STUDY, study_runs, tmp_path)
    assert sorted(p.name for p in written) == ["accuracy.csv", "accuracy.png", "training-loss.csv", "training-loss.png"]
    assert all(p.stat().st_size > 0 for p in written)


def test_render_shows_rows_references_claims_and_the_left_out_run(study_runs, tmp_path):
    markdown, written = render_generation_study("cpu-commonsense", study_runs, tmp_path / "tables", tmp_path)
    lines = markdown.splitlines()
    assert any(line.startswith("| LoRA (r=8)") and "42.00 ±1.41" in line for line in lines)
    assert any(line.startswith("| untrained model") and "5.00" in line for line in lines)
    assert any(line.startswith("| majority answer ") and "62.00" in line for line in lines)
    bora_claim = next(line for line in lines if line.startswith("| BoRA (r=8, b=8) minus LoRA (r=8)"))
    # 2 seeds: +1.50 with a std of 0.71 is a t(1) interval of +-6.35, holding 0 and the paper's +0.71
    assert "+1.50 [-4.85, +7.85]" in bora_claim and bora_claim.rstrip(" |").endswith("inconclusive")
    assert "SE from the questions" in markdown and "| —" in bora_claim  # no predictions in this fixture
    assert "Not in the table (1 runs" in markdown and "trainer.lr" in markdown
    assert "task.protocol=bora_authors" in markdown  # the decoding line names the protocol
    # the paper's row the study's plan cut is named, not shown as an empty row; planned rows without runs stay
    assert not any(line.startswith("| LoRA (r=16)") for line in lines)
    assert "Not in this study (cut to fit the CPU budget): LoRA (r=16)." in markdown
    assert any(line.startswith("| DoRA (r=8)") and "—" in line for line in lines)
    decoding = markdown.split("#### Decoding")[1].splitlines()
    assert any(line.startswith("| LoRA (r=8) ") and "| 2 " in line for line in decoding)  # rows by their labels
    assert any(line.startswith("| untrained model ") for line in decoding)
    assert all(path.exists() for path in written)
