"""The cpu-ablations figures (matplotlib, PNG), each with the numbers it plots as CSV beside it.

Figure 3(b): score against the block count b, one line per rank r (LoRA at the left end), mean ± std over seeds with
every seed drawn faintly; the paper's Table 9 (LLaMA-3-8B, Math10K) in its own panel, since its scale is another.
Figure 4, as the paper draws it: per query layer, the count of singular values of dW above 0.005 and their sum of
squares, one line per row (LoRA, BoRA b=2..32), one column per rank r, the mean over the runs (tasks x seeds) whose
records give the full spectrum.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bora.report.ablations import PAPER_MODEL, TASKS, Runs, per_seed_scores, with_spectra
from bora.report.paper import paper_table
from bora.report.render import save_figure

FIGURE4_COLUMNS = ["r", "b", "row", "layer", "count", "sum_squares", "runs"]


def figure3b_frame(runs: Runs) -> pd.DataFrame:
    """Per r x b x seed: each task's score and the Avg (the plotted points)."""
    return per_seed_scores(runs.grid, ["r", "b"]).sort_values(["r", "b", "seed"]).reset_index(drop=True)


def _ticks(ax, blocks) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(blocks, ["LoRA" if b == 1 else str(b) for b in blocks])
    ax.set_xlabel("blocks b")
    ax.grid(alpha=0.3)


def plot_figure3b(frame: pd.DataFrame, path: Path) -> Path:
    panels = [("Avg", "Avg of MRPC and SST-2"), *[(task, label) for label, task in TASKS]]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 4))
    blocks = sorted(frame["b"].unique()) if len(frame) else [1]
    for ax, (column, title) in zip(axes, panels):
        for index, (r, part) in enumerate(frame.groupby("r")):
            color = f"C{index}"
            ax.scatter(part["b"], part[column], color=color, alpha=0.3, s=12)
            stats = part.groupby("b")[column].agg(["mean", "std"]).reset_index()
            ax.errorbar(
                stats["b"],
                stats["mean"],
                yerr=stats["std"].fillna(0),
                color=color,
                marker="o",
                capsize=3,
                label=f"r={r}",
            )
        ax.set_title(f"ours: {title}")
        ax.set_ylabel("accuracy x100 (mean ±std; dots: seeds)")
        _ticks(ax, blocks)
        ax.legend(fontsize=8)
    paper = paper_table("table9_rank_blocks.csv")
    paper = paper[(paper["model"] == PAPER_MODEL) & paper["r"].isin(frame["r"].unique())].assign(
        b=lambda f: f["b"].fillna(1).astype(int)
    )
    for index, (r, part) in enumerate(paper.sort_values("b").groupby("r")):
        axes[-1].plot(part["b"], part["Avg"], "--x", color=f"C{index}", label=f"r={r}")
    axes[-1].set_title("paper Table 9: LLaMA-3-8B, Math10K Avg")
    axes[-1].set_ylabel("accuracy (%)")
    _ticks(axes[-1], sorted(paper["b"].unique()))
    axes[-1].legend(fontsize=8)
    fig.suptitle("Figure 3(b) at CPU scale: all-MiniLM-L6-v2, GLUE dev, Q and V adapted; score against b per rank")
    return save_figure(fig, path)


def figure4_frame(runs: Runs) -> pd.DataFrame:
    """Per r x row x query layer (1-6): the mean count above 0.005 and sum of squared singular values over the
    runs whose records give them."""
    frame = with_spectra(runs, runs.grid)
    if frame.empty:
        return pd.DataFrame(columns=FIGURE4_COLUMNS)
    rows = []
    for (r, b, row), part in frame.groupby(["r", "b", "row"], sort=True):
        complete = part[part["layer_counts"].map(len) > 0]
        if complete.empty:
            continue
        counts = pd.DataFrame(list(complete["layer_counts"])).mean()
        squares = pd.DataFrame(list(complete["layer_sum_squares"])).mean()
        rows += [
            {
                "r": r,
                "b": b,
                "row": row,
                "layer": i + 1,
                "count": counts[i],
                "sum_squares": squares[i],
                "runs": len(complete),
            }
            for i in range(len(counts))
        ]
    return pd.DataFrame(rows, columns=FIGURE4_COLUMNS)


def plot_figure4(frame: pd.DataFrame, path: Path) -> Path:
    ranks = sorted(frame["r"].unique()) or [8]
    fig, axes = plt.subplots(2, len(ranks), figsize=(6 * len(ranks), 7), squeeze=False)
    for column, r in enumerate(ranks):
        part = frame[frame["r"] == r]
        for top, (measure, label) in enumerate(
            (("count", "singular values > 0.005"), ("sum_squares", "sum of squared singular values"))
        ):
            ax = axes[top][column]
            for index, (b, row) in enumerate(sorted({(b, row) for b, row in zip(part["b"], part["row"])})):
                line = part[part["row"] == row]
                ax.plot(
                    line["layer"],
                    line[measure],
                    "--" if b == 1 else "-",
                    marker="o",
                    color=f"C{index}",
                    label=f"{row} (n={int(line['runs'].iloc[0])})",
                )
            ax.set_xlabel("query layer")
            ax.set_ylabel(label)
            ax.set_title(f"r={r}")
            ax.grid(alpha=0.3)
            if measure == "count":
                ax.set_yscale("log", base=2)
                ax.legend(fontsize=8)
            if part.empty:
                ax.text(0.02, 0.97, "no full spectra of these runs yet", transform=ax.transAxes, va="top", fontsize=9)
    fig.suptitle("Figure 4 at CPU scale: the paper's measures of the query updates, mean over tasks x seeds (n runs)")
    return save_figure(fig, path)


def render_figures(runs: Runs, out_dir: Path) -> list[Path]:
    """figure3b.png / .csv and figure4.png / .csv into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame, plot in (
        ("figure3b", figure3b_frame(runs), plot_figure3b),
        ("figure4", figure4_frame(runs), plot_figure4),
    ):
        frame.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.6g")
        written += [plot(frame, out_dir / f"{name}.png"), out_dir / f"{name}.csv"]
    return written
