"""The cpu-ablations report (Table 9 / 7 and Figures 3(b) / 4 at CPU scale) from synthetic result files."""

import math

import pytest
from synthetic_results import method, write_run

from bora.report import ablations, ablations_page

TASKS = {"cpu/mrpc": "mrpc", "cpu/sst2": "sst2"}


def spectrum(rank: int) -> dict:
    """Six query layers whose updates have ``rank`` singular values, halving from 1."""
    top = [0.5**i for i in range(rank)]
    layer = {"top": top, "count": rank, "above_0.001": rank, "above_0.01": rank, "effective_rank": rank - 0.5}
    return {
        "spectrum": {
            "tolerances": [1e-3, 1e-2],
            "per_layer": [
                {"layer": f"bert.encoder.layer.{i}.attention.self.{kind}", "shape": [384, 384], **layer}
                for i in range(6)
                for kind in ("query", "value")
            ],
        }
    }


def _run(root, method_cfg, seed, score, plan="cpu-ablations", status="success", stats=None):
    for config, name in TASKS.items():
        write_run(
            root,
            "cpu-ablations",
            "minilm",
            config,
            method_cfg,
            seed,
            {name: {"accuracy": score}},
            headline=score,
            plan=plan,
            status=status,
            adapter_stats=stats,
        )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for seed in (0, 1):
        _run(root, method("lora", r=2, targets="QV"), seed, 0.70 + 0.001 * seed, stats=spectrum(2))
        for b in (4, 32):  # rising with log2(b), the paper's shape
            _run(
                root,
                method("bora", r=2, blocks=b, targets="QV"),
                seed,
                0.70 + 0.01 * math.log2(b) + 0.001 * seed,
                stats=spectrum(2 * b) if b == 4 else None,
            )  # rank b r
        _run(root, method("bora", blocks=16, targets="QV"), seed, 0.80, plan="cpu-ablations-table7")
        _run(
            root,
            method("bora", blocks=16, targets="QV", use_exp=False),
            seed,
            0.78 - 0.01 * seed,
            plan="cpu-ablations-table7",
        )
    _run(root, method("bora", r=2, blocks=4, targets="QV"), 2, 0.0, status="failed")
    markdown, written = ablations_page.render_ablations(root, root / "tables", root / "figures")
    return root, markdown, written, ablations.study_runs(root)


def test_grid_cells_are_seed_means_of_the_task_average(report):
    runs = report[3]
    grid = ablations.grid_table(runs).set_index(["r", "row"])
    assert grid.loc[(2, "BoRA b=32"), "Avg"] == "75.05 ±0.07 [2/3]"  # 70 + 5 (log2 32) + 0.05 (seeds 0, 1)
    assert grid.loc[(2, "LoRA"), "paper Avg (LLaMA-3-8B, Math10K)"] == "65.70"
    assert grid.loc[(8, "LoRA"), "Avg"] == "—"  # no run of it here


def test_verdicts_follow_the_measured_direction(report):
    verdicts = ablations.verdicts(report[3]).set_index("claim")
    rises = verdicts.loc["r=2: Avg rises with b (Spearman over b in LoRA=1..32, every seed)"]
    assert rises["verdict"] == "supported" and rises["n"] == "6" and rises["paper"] == "1.00"
    gain = verdicts.loc["r=2: BoRA b=32 minus LoRA, Avg (paired by seed)"]
    assert gain["ours"] == "5.00 ±0.00" and gain["verdict"] == "supported"
    exp = verdicts.loc["BoRA (r=8, b=16) minus BoRA w/o Exp, Avg (paired by seed)"]
    assert exp["ours"] == "2.50 ±0.71" and exp["verdict"] == "supported"
    assert verdicts.loc["BoRA (r=8, b=16) minus BoRA w/o Norm, Avg (paired by seed)", "verdict"] == "no runs"
    rank = verdicts.loc["r=2: BoRA b=4 minus LoRA, query updates' numerical rank (median layer; per task and seed)"]
    assert rank["ours"] == "6.00 ±0.00" and rank["n"] == "4" and rank["verdict"] == "supported"


def test_rank_table_figures_and_left_out_runs(report):
    root, markdown, written, runs = report
    ranks = ablations.rank_table(runs).set_index(["r", "row"])
    assert ranks.loc[(2, "BoRA b=4"), ["bound", "rank", "runs"]].tolist() == [8, 8.0, 4]
    assert ranks.loc[(2, "LoRA"), "bound"] == 2
    assert {p.name for p in written} >= {"figure3b.png", "figure3b.csv", "figure4.png", "cpu-ablations-grid.csv"}
    assert "Not in the table (2 runs found in its folders)" in markdown  # the failed run, on both tasks
    assert "bora_r2_b4_a4_d0.05_QV/seed=2-" in markdown and ": failed" in markdown


def test_cost_comes_from_quiet_runs_only():
    import pandas as pd

    def run(identity, b, task, cpu, wall):
        return {
            "identity": identity,
            "stored_under": "cpu-ablations",
            "r": 2,
            "b": b,
            "row": "LoRA" if b == 1 else f"BoRA b={b}",
            "task": task,
            "cpu_s": cpu,
            "wall_s": wall,
        }

    grid = pd.DataFrame(
        [
            run("a", 1, "mrpc", 400, 410),
            run("b", 1, "mrpc", 500, 900),  # b: descheduled, left out
            run("c", 4, "mrpc", 392, 400),
            run("d", 4, "sst2", 250, 260),
        ]
    )
    empty = grid.iloc[:0]
    cost = ablations.cost_table(ablations.Runs(grid, empty, empty, {}, empty)).set_index("row")
    assert cost.loc["LoRA", ["MRPC (s)", "quiet runs", "x LoRA (same r)"]].tolist() == ["400", "1 of 2", "1.000"]
    assert cost.loc["BoRA b=4", ["SST-2 (s)", "x LoRA (same r)"]].tolist() == ["250", "0.980"]  # MRPC only vs LoRA
