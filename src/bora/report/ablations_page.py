"""The cpu-ablations study as its docs page shows it: every table of ``bora.report.ablations`` and the figures of
``bora.report.ablations_figures`` as one Markdown page, their CSV files beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bora.record import read_record
from bora.report import inference
from bora.report.ablations import (
    FIGURE4,
    FIGURE_DIR,
    GRID,
    NAME,
    QUIET,
    RANK_TOLERANCE,
    SPECTRA,
    TABLE7,
    Runs,
    claims,
    claims_display,
    cost_table,
    grid_table,
    rank_claims,
    rank_table,
    study_runs,
    table7_table,
)
from bora.report.ablations_figures import render_figures
from bora.report.render import excluded_markdown, number


def reproducibility(runs: Runs) -> tuple[int, int, list[str]]:
    """(how many reruns (seed-0 spectra and full-spectrum reruns) score exactly what the run of the same identity
    in the grid recorded, how many have such a twin, and for each that does not: the run and the package versions
    its two records differ in)."""
    frames = [frame for frame in (runs.spectra, runs.figure4) if len(frame)]
    if not frames or runs.grid.empty:
        return 0, 0, []
    shared = pd.concat(frames, ignore_index=True).merge(runs.grid, on="identity", suffixes=("", "_grid"))
    differing = []
    for _, pair in shared[shared["score"] != shared["score_grid"]].iterrows():
        now, then = (read_record(pair[column]).versions for column in ("run_dir", "run_dir_grid"))
        changed = [
            f"{name} {then.get(name)} then, {now.get(name)} now" for name in sorted(now) if now[name] != then.get(name)
        ]
        differing.append(
            f"{pair['task']} {pair['row']} seed {pair['seed']}: {number(pair['score'])} against "
            f"{number(pair['score_grid'])}, " + ("; ".join(changed) if changed else "the same package versions")
        )
    return int((shared["score"] == shared["score_grid"]).sum()), len(shared), differing


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "No runs yet."


def render_ablations(root: Path | str, out_dir: Path, figure_dir: Path) -> tuple[str, list[Path]]:
    """The study's Markdown (what its docs page shows) and its files: CSV per section into ``out_dir``, the figures
    (PNG and their plotted numbers as CSV) into ``figure_dir``."""
    runs = study_runs(root)
    grid, table7, measured, ranks, rank_verdicts, cost = (
        grid_table(runs),
        table7_table(runs),
        claims(runs),
        rank_table(runs),
        rank_claims(runs),
        cost_table(runs),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part, frame in (
        ("grid", grid),
        ("table7", table7),
        ("claims", measured),
        ("ranks", ranks),
        ("rank-claims", rank_verdicts),
        ("cost", cost),
    ):
        frame.to_csv(out_dir / f"{NAME}-{part}.csv", index=False)
        written.append(out_dir / f"{NAME}-{part}.csv")
    written += render_figures(runs, figure_dir)
    done = {sweep: len(frame) for sweep, frame in ((GRID, runs.grid), (TABLE7, runs.table7), (SPECTRA, runs.spectra))}
    done[FIGURE4] = len(runs.figure4)
    same, twins, differing = reproducibility(runs)
    ranks_shown = pd.DataFrame(
        {
            "r": ranks["r"],
            "row": ranks["row"],
            "bound min(b r, 384)": ranks["bound"],
            "singular values > 0.005": ranks["count_paper"].map(lambda v: number(v, 1)),
            "sum of squared singular values": ranks["sum_squares"].map(lambda v: number(v, 3)),
            "runs": ranks["runs"],
            f"rank (> {RANK_TOLERANCE:g} s_1)": ranks["rank"].map(lambda v: number(v, 1)),
            "entropy rank": ranks["entropy_rank"].map(lambda v: number(v, 1)),
        }
    )
    parts = [
        "### Table 9 at CPU scale: ranks x blocks, all-MiniLM-L6-v2 on MRPC and SST-2 (GLUE dev), 3 seeds",
        _markdown(grid),
        "Accuracy x100, mean ±std over seeds (ddof=1); Avg: the mean of the two tasks, per seed; [n/3]: seeds "
        "finished so far. #Params: adapter parameters (no task head). The paper's column is Table 9's Avg on another "
        "model and task family: compare the direction along b, not the level. Runs: "
        + ", ".join(f"{done[s]} of {runs.planned[s]} planned by conf/experiment/{s}.yaml" for s in (GRID, TABLE7))
        + f"; Figure 4's seed-0 reruns {done[SPECTRA]} of {runs.planned[SPECTRA]}, its full-spectrum reruns "
        f"{done[FIGURE4]} of {runs.planned[FIGURE4]} (conf/experiment/{FIGURE4}.yaml)."
        + excluded_markdown(runs.left_out, Path(root)),
        f"![Figure 3(b) at CPU scale]({FIGURE_DIR}/figure3b.png)",
        "#### Table 7 at CPU scale: BoRA (r=8, b=16) without Exp / without Norm",
        _markdown(table7),
        "#### The paper's ablation claims, measured",
        _markdown(claims_display(measured)),
        "Paper: the same statistic of Table 9 (LLaMA-3-8B, Math10K; the slope over its BoRA rows b=2..64) or of Table "
        "7 (mean over its LLMs). Ours: per seed, the slope of the Avg on log2(b) over BoRA's rows (LoRA is not a "
        "block count and stays out of the trend) or the difference of Avg, paired by seed; mean and 95% paired t "
        f"interval over the seeds; Holm over this table's {len(measured)} claims. {inference.RULES}",
        "#### Figure 4 at CPU scale: the rank BoRA's updates reach",
        f"![Figure 4 at CPU scale]({FIGURE_DIR}/figure4.png)",
        _markdown(ranks_shown),
        "The paper's measures (sec. 4.5, after HiRA) of the trained query updates dW (384 x 384): how many singular "
        "values exceed 0.005 and their sum of squares (||dW||_F^2), the mean over the 6 query layers, then over the "
        "runs (tasks x seeds) whose records give them (runs): every value of each layer's spectrum is recorded since "
        "the full-spectrum reruns; older records kept the largest 64, the whole spectrum up to a bound of 64 but not "
        "of BoRA r=8 b=16 (128) or b=32 (256), whose measures come from their full-spectrum reruns "
        f"(conf/experiment/{FIGURE4}.yaml). Beside them, over every run with a spectrum: the count above 1e-2 of the "
        "largest and the entropy effective rank exp(H(s / sum s)) (median layer). The bound is what the factor "
        "shapes allow: BoRA min(b r, 384), LoRA r. cpu-glue's shared runs (LoRA r=8, BoRA r=8 b=8 / 16) predate "
        "spectra: theirs come from reruns of the same identity"
        + (f", which scored exactly what the grid's run recorded in {same} of {twins} cases" if twins else "")
        + (f" (not: {'; '.join(differing)})." if differing else "."),
        _markdown(claims_display(rank_verdicts).rename(columns={"seeds": "runs"}).assign(paper="more (Fig. 4)")),
        "BoRA minus LoRA in the count above 0.005 (the query layers' mean), over the runs paired by task and seed "
        "where both records give it: mean and 95% paired t interval, Holm over these claims, verdicts as above "
        "(the paper gives no number: its side is more).",
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
