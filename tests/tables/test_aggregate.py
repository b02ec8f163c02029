"""Aggregation over synthetic result files with known means and standard deviations."""

import math

import pandas as pd
import pytest
from synthetic_results import MATH_SETS, math_metrics, method, uniform_math, write_run

from bora.report.aggregate import Column, load_results, per_seed, seed_stats, status_counts, summarize

BORA = method("bora", blocks=16)
LORA = method("lora")
COLUMNS = [Column(name, subtask=name, task="math") for name in MATH_SETS]


@pytest.fixture
def results(tmp_path):
    """BoRA: 3 seeds (AddSub 70/72/74, so mean 72, std 2); LoRA: seed 0 ok, seed 1 failed, seed 2 still running."""
    for seed, value in enumerate([0.70, 0.72, 0.74]):
        write_run(tmp_path, "math", "llama-3-8b", "math", BORA, seed, uniform_math(value))
    write_run(tmp_path, "math", "llama-3-8b", "math", LORA, 0, uniform_math(0.5))
    write_run(tmp_path, "math", "llama-3-8b", "math", LORA, 1, status="failed")
    write_run(tmp_path, "math", "llama-3-8b", "math", LORA, 2, status="running")
    (tmp_path / "math" / "broken").mkdir()
    (tmp_path / "math" / "broken" / "result.json").write_text("{not json")
    return tmp_path


def test_load_results_reads_every_status(results):
    runs = load_results(results)
    assert status_counts(runs) == {"success": 4, "failed": 1, "running": 1, "unreadable": 1}
    bora = runs[runs["method_tag"] == "bora_r8_b16_a16_d0.05_QKV"]
    assert sorted(bora["seed"]) == [0, 1, 2] and set(bora["blocks"]) == {16}
    assert runs.loc[runs["status"] == "failed", "error"].item() == "CUDA out of memory"


def test_load_results_can_limit_to_experiments(results, tmp_path):
    write_run(tmp_path, "other", "tiny-encoder", "toy-cls", LORA, 0, {"toy-cls": {"accuracy": 1.0}})
    assert set(load_results(results, ["math"])["experiment"].dropna()) == {"math"}
    assert load_results(results, ["absent"]).empty


def test_mean_std_and_seed_count_over_successful_runs_only(results):
    keys = ["model", "method_tag"]
    stats = seed_stats(per_seed(load_results(results), COLUMNS, keys, average="Avg"), keys)
    stats = stats.set_index(["method_tag", "column"])
    bora = stats.loc[("bora_r8_b16_a16_d0.05_QKV", "AddSub")]
    assert bora["mean"] == pytest.approx(72.0) and bora["std"] == pytest.approx(2.0) and bora["n"] == 3
    assert stats.loc[("bora_r8_b16_a16_d0.05_QKV", "Avg"), "mean"] == pytest.approx(72.0)
    lora = stats.loc[("lora_r8_a16_d0.05_QKV", "gsm8k")]
    assert lora["mean"] == pytest.approx(50.0) and lora["n"] == 1 and math.isnan(lora["std"])  # failed/running out


def test_a_missing_cell_is_missing_not_zero(tmp_path):
    """A seed without one sub-task: that cell has one seed fewer, and that seed's Avg is missing (not a lower mean)."""
    for seed in range(2):
        metrics = uniform_math(0.6)
        if seed == 1:
            del metrics["SVAMP"]
        write_run(tmp_path, "math", "llama-3-8b", "math", BORA, seed, metrics)
    seeds = per_seed(load_results(tmp_path), COLUMNS, ["model"], average="Avg")
    assert seeds.set_index("seed").loc[1, "SVAMP"] != 0 and math.isnan(seeds.set_index("seed").loc[1, "SVAMP"])
    assert math.isnan(seeds.set_index("seed").loc[1, "Avg"])
    stats = seed_stats(seeds, ["model"]).set_index("column")
    assert stats.loc["SVAMP", "n"] == 1 and stats.loc["AddSub", "n"] == 2 and stats.loc["Avg", "n"] == 1
    assert stats.loc["Avg", "mean"] == pytest.approx(60.0)


def test_columns_from_separate_runs_join_per_seed(tmp_path):
    """GLUE: one run per task; a table row joins them seed by seed, its Avg needs every task of that seed."""
    columns = [Column("RTE", task="rte", source="value"), Column("MRPC", task="mrpc", source="value")]
    write_run(tmp_path, "glue", "roberta-base", "rte", LORA, 0, {"rte": {"accuracy": 0.7}}, headline=0.7)
    write_run(tmp_path, "glue", "roberta-base", "mrpc", LORA, 0, {"mrpc": {"accuracy": 0.9}}, headline=0.9)
    write_run(tmp_path, "glue", "roberta-base", "rte", LORA, 1, {"rte": {"accuracy": 0.8}}, headline=0.8)
    seeds = per_seed(load_results(tmp_path), columns, ["model", "method_tag"], average="Avg").set_index("seed")
    assert seeds.loc[0, "RTE"] == pytest.approx(70) and seeds.loc[0, "MRPC"] == pytest.approx(90)
    assert seeds.loc[0, "Avg"] == pytest.approx(80) and math.isnan(seeds.loc[1, "Avg"])


def test_run_fields_in_table_units(tmp_path):
    write_run(
        tmp_path,
        "efficiency",
        "llama-3-8b",
        "math",
        LORA,
        0,
        math_metrics({"AddSub": 0.5}),
        adapter_params=4_718_592,
        train_s=1110.0,
        peak_bytes=3 * 2**30,
    )
    columns = [
        Column("params_M", source="adapter_params", scale=1e-6),
        Column("time_min", source="train_s", scale=1 / 60),
        Column("memory_GB", source="peak_train_bytes", scale=2.0**-30),
    ]
    row = per_seed(load_results(tmp_path), columns, ["model"]).iloc[0]
    assert (row["params_M"], row["time_min"], row["memory_GB"]) == pytest.approx((4.718592, 18.5, 3.0))


def test_summarize_every_metric(results):
    summary = summarize(load_results(results))
    addsub = summary[(summary["subtask"] == "AddSub") & (summary["method_tag"] == "bora_r8_b16_a16_d0.05_QKV")]
    assert addsub[["mean", "std", "n"]].values.tolist()[0] == pytest.approx([0.72, 0.02, 3])
    assert set(summary["subtask"]) == {*MATH_SETS, "average"}
    assert summarize(load_results(results).assign(status="failed")).empty
    assert isinstance(summarize(pd.DataFrame(columns=load_results(results).columns)), pd.DataFrame)


def test_runs_of_different_configs_are_never_averaged(tmp_path):
    """A seed-0 run with 1 epoch and a seed-1 run with 3 epochs and lr 1e-2 are two configurations of one seed each,
    told apart by the keys that differ (an lr sweep reads side by side)."""
    write_run(
        tmp_path,
        "default",
        "tiny-encoder",
        "toy-cls",
        LORA,
        0,
        {"toy-cls": {"accuracy": 0.6}},
        extra=("trainer.epochs=1",),
    )
    write_run(
        tmp_path,
        "default",
        "tiny-encoder",
        "toy-cls",
        LORA,
        1,
        {"toy-cls": {"accuracy": 0.9}},
        extra=("trainer.epochs=3", "trainer.lr=1e-2"),
    )
    summary = summarize(load_results(tmp_path)).set_index("setting")
    assert list(summary["n"]) == [1, 1]
    assert summary.loc["trainer.epochs=1.0 trainer.lr=0.003", "mean"] == pytest.approx(0.6)
    assert summary.loc["trainer.epochs=3.0 trainer.lr=0.01", "mean"] == pytest.approx(0.9)


def test_unreadable_files_are_listed_with_the_reason(tmp_path):
    for name, text in [
        ("a", "[]"),
        ("b", '{"schema_version": 9}'),
        ("c", '{"schema_version": 2, "metrics": "oops"}'),
        ("d", '{"status": "succ'),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(text)
    runs = load_results(tmp_path)
    assert list(runs["status"]) == ["unreadable"] * 4
    assert [
        "list" in runs["error"][0],
        "schema_version 9" in runs["error"][1],
        "Field required" in runs["error"][2],
        "truncated" in runs["error"][3],
    ] == [True] * 4


def test_a_forced_rerun_in_progress_is_not_a_result(tmp_path):
    run_dir = write_run(tmp_path, "math", "llama-3-8b", "math", LORA, 0, uniform_math(0.5))
    (run_dir / ".attempt").mkdir()
    (run_dir / ".attempt" / "result.json").write_text((run_dir / "result.json").read_text())
    assert len(load_results(tmp_path)) == 1
