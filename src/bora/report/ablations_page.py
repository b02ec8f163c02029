"""The cpu-ablations study as the README shows it: every table of ``bora.report.ablations`` and the figures of
``bora.report.ablations_figures`` as one Markdown page, their CSV files beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bora.report.ablations import (
    FIGURE_DIR,
    GRID,
    NAME,
    QUIET,
    RANK_TOLERANCE,
    SPECTRA,
    TABLE7,
    Runs,
    cost_table,
    grid_table,
    rank_table,
    study_runs,
    table7_table,
    verdicts,
)
from bora.report.ablations_figures import render_figures
from bora.report.render import excluded_markdown, number


def reproducibility(runs: Runs) -> tuple[int, int]:
    """(how many seed-0 reruns score exactly what the reused cpu-glue run recorded, how many have a twin)."""
    if runs.spectra.empty:
        return 0, 0
    shared = runs.spectra.merge(runs.grid, on="identity", suffixes=("", "_glue"))
    return int((shared["score"] == shared["score_glue"]).sum()), len(shared)


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "No runs yet."


def render_ablations(root: Path | str, out_dir: Path, figure_dir: Path) -> tuple[str, list[Path]]:
    """The study's Markdown (what the README shows) and its files: CSV per section into ``out_dir``, the figures
    (PNG and their plotted numbers as CSV) into ``figure_dir``."""
    runs = study_runs(root)
    grid, table7, claims, ranks, cost = (
        grid_table(runs),
        table7_table(runs),
        verdicts(runs),
        rank_table(runs),
        cost_table(runs),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part, frame in (("grid", grid), ("table7", table7), ("verdicts", claims), ("ranks", ranks), ("cost", cost)):
        frame.to_csv(out_dir / f"{NAME}-{part}.csv", index=False)
        written.append(out_dir / f"{NAME}-{part}.csv")
    written += render_figures(runs, figure_dir)
    done = {sweep: len(frame) for sweep, frame in ((GRID, runs.grid), (TABLE7, runs.table7), (SPECTRA, runs.spectra))}
    same, twins = reproducibility(runs)
    ranks_shown = ranks.assign(
        rank=ranks["rank"].map(lambda v: number(v, 1)), entropy_rank=ranks["entropy_rank"].map(lambda v: number(v, 1))
    ).rename(
        columns={
            "bound": "bound min(b r, 384)",
            "rank": f"rank (> {RANK_TOLERANCE:g} s_1)",
            "entropy_rank": "entropy rank",
        }
    )
    parts = [
        "### Table 9 at CPU scale: ranks x blocks, all-MiniLM-L6-v2 on MRPC and SST-2 (GLUE dev), 3 seeds",
        _markdown(grid),
        "Accuracy x100, mean ±std over seeds (ddof=1); Avg: the mean of the two tasks, per seed; [n/3]: seeds "
        "finished so far. #Params: adapter parameters (no task head). The paper's column is Table 9's Avg on another "
        "model and task family: compare the direction along b, not the level. Runs: "
        + ", ".join(f"{done[s]} of {runs.planned[s]} planned by conf/experiment/{s}.yaml" for s in (GRID, TABLE7))
        + f"; Figure 4's seed-0 reruns {done[SPECTRA]} of {runs.planned[SPECTRA]}."
        + excluded_markdown(runs.left_out, Path(root)),
        f"![Figure 3(b) at CPU scale]({FIGURE_DIR}/figure3b.png)",
        "#### Table 7 at CPU scale: BoRA (r=8, b=16) without Exp / without Norm",
        _markdown(table7),
        "#### The paper's ablation claims, measured",
        _markdown(claims),
        "Spearman: the rank correlation of the Avg with b over every (b, seed) point of one r, LoRA at b=1 (paper: "
        "over its Table 9 row). Verdicts: Spearman supported / contradicted when p < 0.05 with that sign, else within "
        "noise; differences supported when the mean exceeds its std, within noise when positive but not, "
        "contradicted when not positive.",
        "#### Figure 4 at CPU scale: the rank BoRA's updates reach",
        f"![Figure 4 at CPU scale]({FIGURE_DIR}/figure4.png)",
        _markdown(ranks_shown),
        "Measured on the query updates dW (384 x 384) at the end of training, the median over the 6 query layers, "
        "then the mean over the runs that recorded it: how many singular values exceed 1e-2 of the largest, and the "
        "entropy effective rank exp(H(s / sum s)). The bound is what the factor shapes allow: BoRA min(b r, 384), "
        "LoRA r. cpu-glue's shared runs (LoRA r=8, BoRA r=8 b=8 / 16) predate these records: their spectra come "
        "from their seed-0 reruns (conf/experiment/cpu-ablations-spectra.yaml)"
        + (f", which scored exactly what the reused run recorded in {same} of {twins} cases." if twins else "."),
        "#### Cost: CPU time of training",
        _markdown(cost),
        "CPU time (process time, all threads) of the training loop, mean over the quiet runs: those whose wall time "
        f"is within {QUIET - 1:.0%} of their CPU time, i.e. that had a core to themselves (two runs side by side, "
        "one thread each, on 2 cores). A run that shared its core with a third busy process (tests, benchmarks) "
        "waited, and its CPU time grew too (shared caches): in this study wall time reached 1.0-2.3x CPU time, so "
        "neither is a cost measure then, and those runs are left out here. cpu-glue's records predate CPU time: "
        "its shared configs count their seed-0 reruns only. x LoRA: the ratio of the per-task means to LoRA's at "
        "the same r, averaged over the tasks; the interleaved step benchmark (`python -m bora.bench`) measures the "
        "same ratio in one process.",
    ]
    return "\n\n".join(parts), written
