"""A study (cpu-glue: Table 1's rows on MiniLM) from synthetic result files: its table, claims, Sigma and cost."""

import math

import pytest
from scipy import stats
from synthetic_results import GLUE_TASKS, method, write_glue_study_runs, write_run

from bora.report.aggregate import load_results
from bora.report.study import STUDIES, check_study_claims, efficiency_table, render_study, sigma_table, study_table

STUDY = STUDIES["cpu-glue"]
TASKS = GLUE_TASKS
LORA8, LORA32 = method("lora", targets="QV"), method("lora", r=32, targets="QV")
BORA8, BORA16 = method("bora", blocks=8, targets="QV"), method("bora", blocks=16, targets="QV")


def sigma(top: float) -> dict:
    return {
        "sigma": {
            "summary": {
                "layers": 12,
                "sigma_max": top,
                "sigma_max_median": top / 2,
                "mav_min": 0.03,
                "mav_max": 0.05,
                "layers_over_warn": int(top > 1e4),
                "warn_threshold": 1e4,
            },
            "per_layer": [],
        }
    }


def _runs(root, method_cfg, per_seed: list[float], train_s: float = 60.0, top: float | None = None, tasks=TASKS):
    """``per_seed[s]``: the score of every task at seed ``s`` (so its Avg too); ``top``: Sigma's largest entry."""
    stats = (lambda seed: sigma(top * (1 + seed))) if top else None
    write_glue_study_runs(root, method_cfg, per_seed, tasks, stats, train_s=train_s)


@pytest.fixture
def study_runs(tmp_path):
    _runs(tmp_path, LORA8, [0.70, 0.72, 0.74])
    _runs(tmp_path, LORA32, [0.73, 0.75])  # 2 seeds
    _runs(tmp_path, BORA8, [0.72, 0.741, 0.759], train_s=66.0, top=20.0)  # gains 2, 2.1, 1.9
    _runs(tmp_path, BORA16, [0.67, 0.685, 0.715], train_s=63.0, top=50.0)  # LoRA r=8 minus 3, 3.5, 2.5
    return load_results(tmp_path)


def test_main_table_mean_std_and_seeds(study_runs):
    table = study_table(STUDY, study_runs).set_index(["label", "column"])
    bora8 = table.loc[("BoRA (r=8, b=8)", "Avg")]
    assert (bora8["ours"], bora8["spread"], bora8["n"], bora8["planned"]) == pytest.approx(
        (
            100 * 2.22 / 3,
            100 * math.sqrt(((0.72 - 2.22 / 3) ** 2 + (0.741 - 2.22 / 3) ** 2 + (0.759 - 2.22 / 3) ** 2) / 2),
            3,
            3,
        )
    )
    assert table.loc[("LoRA (r=32)", "MRPC"), "n"] == 2 and math.isnan(table.loc[("DoRA (r=8)", "Avg"), "ours"])


def test_claims_pair_seeds_and_give_verdicts(study_runs):
    claims = check_study_claims(STUDY, study_runs).set_index("claim")
    gain = claims.loc["bora8_vs_lora8"]  # +2, +2.1, +1.9: a planted gain far above its noise
    assert (gain["ours"], gain["std"], gain["seeds"]) == pytest.approx((2.0, 0.1, 3))
    expected = stats.ttest_1samp([2.0, 2.1, 1.9], 0.0)
    assert (gain["low"], gain["high"]) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert gain["verdict"] == "replicated"
    loss = claims.loc["bora16_vs_lora8"]  # -3, -3.5, -2.5 where the paper gains +0.85 on these 4 tasks
    assert loss["high"] < 0 < loss["paper_our_tasks"] and loss["verdict"] == "opposite"
    # -5, -5.6, -4.4: on the paper's side, for on these 4 tasks its own Table 1 has doubling b lose 0.17
    doubling = claims.loc["bora16_vs_bora8"]
    assert doubling["high"] < 0 and doubling["paper_our_tasks"] < 0 < doubling["paper_8_tasks"]
    assert doubling["verdict"] == "replicated"
    # Holm over the gain claims with a p (bora16_vs_best_similar is bora16_vs_lora8 again: 4 tests)
    gains = claims[claims["kind"] == "gain"]
    assert gains["p_holm"].notna().sum() == 4 and (gains["p_holm"] >= gains["p"]).all()
    assert claims.loc["bora16_vs_lora32", "seeds"] == 2  # only the seeds both have
    assert claims.loc["bora16_vs_best_similar", "baseline_ours"] == "LoRA (r=8)"  # the only similar baseline run
    assert claims.loc["bora16_vs_lora8", "paper_8_tasks"] == pytest.approx(
        ((83.78 - 82.55) + (86.51 - 84.38)) / 2, abs=0.01
    )
    # the detectable effect: (t_0.975 + t_0.80) at 2 df times the standard error
    assert gain["detectable"] == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * 0.1 / math.sqrt(3))


def test_sigma_and_its_correlation_with_the_score(study_runs):
    frame, correlation = sigma_table(STUDY, study_runs)
    assert len(frame) == 24 and frame["sigma_max"].max() == pytest.approx(150.0)
    rho, n = correlation["mrpc"]
    assert n == 6 and -1 <= rho <= 1


def test_efficiency_needs_every_task_and_compares_to_lora(study_runs, tmp_path):
    frame = efficiency_table(STUDY, study_runs).set_index("label")
    assert frame.loc["BoRA (r=8, b=8)", "time_min"] == pytest.approx(4 * 66 / 60)
    assert frame.loc["BoRA (r=8, b=8)", "time_x_lora"] == pytest.approx(1.1)
    assert pd_isna(frame.loc["DoRA (r=8)", "time_min"])
    markdown, paths = render_study("cpu-glue", study_runs, tmp_path / "out")
    assert "| BoRA (r=8, b=8)  | 1,000 " in markdown and "| replicated " in markdown and "| opposite " in markdown
    assert "Holm-adjusted over the 4 gain claims" in markdown
    assert {p.name for p in paths} >= {"cpu-glue.md", "cpu-glue-claims.csv", "cpu-glue-sigma.csv"}


def pd_isna(value) -> bool:
    return value is None or value != value


def test_the_study_lists_the_runs_it_leaves_out_with_the_reason(study_runs, tmp_path):
    write_run(
        tmp_path,
        "cpu-glue",
        "minilm",
        "cpu/mrpc",
        LORA8,
        0,
        {"mrpc": {"accuracy": 0.9}},
        headline=0.9,
        plan="cpu-glue",
        extra=("trainer.lr=0.5",),
    )  # a rerun at another learning rate
    write_run(tmp_path, "cpu-glue", "minilm", "cpu/sst2", BORA8, 3, status="failed", plan="cpu-glue")
    markdown, _ = render_study("cpu-glue", load_results(tmp_path), tmp_path / "out", tmp_path)
    assert "Not in the table (2 runs found in its folders)" in markdown
    assert "not planned by conf/experiment/cpu-glue.yaml: differs at trainer.lr" in markdown
    assert "- `cpu-glue/minilm/sst2/bora_r8_b8_a16_d0.05_QV/seed=3-" in markdown and ": failed" in markdown
    assert "| LoRA (r=8)  " in markdown and "90.00" not in markdown  # the stray run did not enter the table
