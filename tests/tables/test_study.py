"""A study (cpu-glue: Table 1's rows on MiniLM) from synthetic result files: its table, claims, Sigma and cost."""

import math

import pytest
from synthetic_results import method, write_run

from bora.report.aggregate import load_results
from bora.report.study import STUDIES, check_study_claims, efficiency_table, render_study, sigma_table, study_table

STUDY = STUDIES["cpu-glue"]
TASKS = {"cpu/mrpc": "mrpc", "cpu/stsb": "stsb", "cpu/cola": "cola", "cpu/sst2": "sst2"}
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
    """``per_seed[s]``: the score of every task at seed ``s`` (so its Avg too)."""
    for seed, value in enumerate(per_seed):
        for config, name in tasks.items():
            write_run(
                root,
                "cpu-glue",
                "minilm",
                config,
                method_cfg,
                seed,
                {name: {"accuracy": value}},
                headline=value,
                plan="cpu-glue",
                train_s=train_s,
                adapter_stats=sigma(top * (1 + seed)) if top else None,
            )


@pytest.fixture
def study_runs(tmp_path):
    _runs(tmp_path, LORA8, [0.70, 0.72, 0.74])
    _runs(tmp_path, LORA32, [0.73, 0.75])  # 2 seeds
    _runs(tmp_path, BORA8, [0.71, 0.74, 0.75], train_s=66.0, top=20.0)  # gains 1, 2, 1
    _runs(tmp_path, BORA16, [0.69, 0.71, 0.73], train_s=63.0, top=50.0)  # losses of 1 each
    return load_results(tmp_path)


def test_main_table_mean_std_and_seeds(study_runs):
    table = study_table(STUDY, study_runs).set_index(["label", "column"])
    bora8 = table.loc[("BoRA (r=8, b=8)", "Avg")]
    assert (bora8["ours"], bora8["spread"], bora8["n"], bora8["planned"]) == pytest.approx(
        (
            100 * 2.20 / 3,
            100 * math.sqrt(((0.71 - 2.2 / 3) ** 2 + (0.74 - 2.2 / 3) ** 2 + (0.75 - 2.2 / 3) ** 2) / 2),
            3,
            3,
        )
    )
    assert table.loc[("LoRA (r=32)", "MRPC"), "n"] == 2 and math.isnan(table.loc[("DoRA (r=8)", "Avg"), "ours"])


def test_claims_pair_seeds_and_give_verdicts(study_runs):
    claims = check_study_claims(STUDY, study_runs).set_index("claim")
    gain = claims.loc["bora8_vs_lora8"]
    assert (gain["ours"], gain["std"], gain["seeds"]) == pytest.approx((100 * 4 / 300, 100 * math.sqrt(1 / 30000), 3))
    assert gain["verdict"] == "supported"
    assert claims.loc["bora16_vs_lora8", "verdict"] == "contradicted"
    assert claims.loc["bora16_vs_lora32", "seeds"] == 2  # only the seeds both have
    assert claims.loc["bora16_vs_best_similar", "baseline_ours"] == "LoRA (r=8)"  # the only similar baseline run
    assert claims.loc["bora16_vs_lora8", "paper_8_tasks"] == pytest.approx(
        ((83.78 - 82.55) + (86.51 - 84.38)) / 2, abs=0.01
    )


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
    assert "| BoRA (r=8, b=8)  | 1,000 " in markdown and "supported" in markdown and "contradicted" in markdown
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
