"""The cpu-ablations report (Table 9 / 7 and Figures 3(b) / 4 at CPU scale) from synthetic result files."""

import math

import pytest
from scipy import stats
from synthetic_results import method, write_run

from bora.adapters.stats import spectrum_of
from bora.report import ablations, ablations_page

TASKS = {"cpu/mrpc": "mrpc", "cpu/sst2": "sst2"}


def spectrum(rank: int, ratio: float = 0.5, full: bool = False) -> dict:
    """Six query layers whose updates have ``rank`` singular values, falling by ``ratio`` from 1: as recorded today
    (``full``: every value, the paper's measures) or before full spectra (the largest 64 as ``top``)."""
    import torch

    values = [ratio**i for i in range(rank)]
    if full:
        layer = spectrum_of(torch.tensor(values, dtype=torch.float64))
    else:
        layer = {"top": values[:64], "count": rank, "above_0.001": rank, "above_0.01": rank}
        layer["effective_rank"] = rank - 0.5
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
        for b in (4, 8, 32):  # rising with log2(b), the paper's shape, by 1 or 1.2 a doubling (b=8 a seed's noise)
            _run(
                root,
                method("bora", r=2, blocks=b, targets="QV"),
                seed,
                0.70 + 0.01 * math.log2(b) + 0.001 * seed + (0.004 * seed if b == 8 else 0),
                stats={4: spectrum(8), 32: spectrum(64, ratio=0.9, full=True)}.get(b),
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


def test_claims_are_judged_by_paired_intervals_over_seeds(report):
    claims = ablations.claims(report[3]).set_index("claim")
    trend = claims.loc["r=2: Avg per doubling of b, BoRA b=2..32 (slope on log2 b, per seed)"]
    slopes = [ablations.slope_per_doubling([4, 8, 32], [70 + 2 + s, 70 + 3 + s + 0.4 * s, 70 + 5 + s]) for s in (0, 1)]
    assert trend["seeds"] == 2 and trend["ours"] == pytest.approx(sum(slopes) / 2)
    assert (trend["low"], trend["high"]) == pytest.approx(tuple(stats.ttest_1samp(slopes, 0).confidence_interval()))
    assert trend["paper"] > 0 and trend["verdict"] == "replicated"  # two seeds, but slopes of 1.00 and 1.03
    gain = claims.loc["r=2: BoRA b=32 minus LoRA, Avg (paired by seed)"]  # +5 in both seeds: no spread to test
    assert gain["ours"] == pytest.approx(5.0) and gain["verdict"] == "inconclusive (no spread: no interval)"
    exp = claims.loc["BoRA (r=8, b=16) minus BoRA w/o Exp, Avg (paired by seed)"]  # +2 and +3: t(1) holds 0
    assert exp["ours"] == pytest.approx(2.5) and exp["low"] < 0 and exp["verdict"] == "inconclusive"
    assert claims.loc["BoRA (r=8, b=16) minus BoRA w/o Norm, Avg (paired by seed)", "verdict"] == "no runs"
    # Holm over the claims with a p: the trend and w/o Exp
    assert claims["p_holm"].notna().sum() == 2 and trend["p_holm"] == pytest.approx(min(1, 2 * trend["p"]))


def test_figure4_counts_come_only_from_records_that_hold_the_whole_spectrum(report):
    runs = report[3]
    ranks = ablations.rank_table(runs).set_index(["r", "row"])
    # 0.9^i > 0.005 for i <= 50: 51 values; sum of squares of 0.9^(2i), i < 64
    assert ranks.loc[(2, "BoRA b=32"), "count_paper"] == 51 and ranks.loc[(2, "BoRA b=32"), "runs"] == 4
    assert ranks.loc[(2, "BoRA b=32"), "sum_squares"] == pytest.approx((1 - 0.81**64) / (1 - 0.81), rel=1e-5)
    # an old record of 8 values holds its whole spectrum (0.5^7 > 0.005 > 0.5^8): all 8 count
    assert ranks.loc[(2, "BoRA b=4"), "count_paper"] == 8 and ranks.loc[(2, "LoRA"), "count_paper"] == 2
    old = {"top": [1.0] * 64, "count": 128}  # an old record of a bound-128 update: the largest 64 only
    assert all(math.isnan(v) for v in ablations.paper_measures(old))
    rank = ablations.rank_claims(runs).set_index("claim")
    b32 = rank.loc["r=2: BoRA b=32 minus LoRA, singular values > 0.005 (query layers)"]
    assert (b32["seeds"], b32["ours"]) == (4, 49)  # 4 runs (2 tasks x 2 seeds), 51 - 2 each: no spread
    assert b32["verdict"] == "inconclusive (no spread: no interval)"
    assert rank.loc["r=2: BoRA b=16 minus LoRA, singular values > 0.005 (query layers)", "verdict"] == "no runs"


def test_rank_table_figures_and_left_out_runs(report):
    root, markdown, written, runs = report
    ranks = ablations.rank_table(runs).set_index(["r", "row"])
    assert ranks.loc[(2, "BoRA b=4"), ["bound", "rank", "runs", "spectra"]].tolist() == [8, 8.0, 4, 4]
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
    cost = ablations.cost_table(ablations.Runs(grid, empty, empty, {}, empty, empty)).set_index("row")
    assert cost.loc["LoRA", ["MRPC (s)", "quiet runs", "x LoRA (same r)"]].tolist() == ["400", "1 of 2", "1.000"]
    assert cost.loc["BoRA b=4", ["SST-2 (s)", "x LoRA (same r)"]].tolist() == ["250", "0.980"]  # MRPC only vs LoRA
