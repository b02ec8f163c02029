"""The cpu-ablations figures (matplotlib, PNG), each with the numbers it plots as CSV beside it.

Figure 3(b): score against the block count b, one line per rank r (LoRA at the left end), mean ± std over seeds with
every seed drawn faintly; the paper's Table 9 (LLaMA-3-8B, Math10K) in its own panel, since its scale is another.
Figure 4: the normalised singular values s_i / s_1 of the query updates (the median over the 6 query layers) of
LoRA and BoRA b=4 / 16 at r=8, seed 0, one panel per task.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bora.report.ablations import (
    FIGURE4_BLOCKS,
    PAPER_MODEL,
    RANK_TOLERANCE,
    TASKS,
    Runs,
    per_seed_scores,
    with_spectra,
)
from bora.report.paper import paper_table
from bora.report.render import save_figure

FIGURE4_ROWS = ((1, "LoRA"), *((b, f"BoRA b={b}") for b in FIGURE4_BLOCKS))
FIGURE4_R = 8


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
    """Per task x row (r=8, seed 0): index i and the median over query layers of s_i / s_1."""
    frame = with_spectra(runs, runs.grid)
    rows = []
    if frame.empty:
        return pd.DataFrame(columns=["task", "row", "i", "normalised"])
    for b, label in FIGURE4_ROWS:
        chosen = frame[(frame["r"] == FIGURE4_R) & (frame["b"] == b) & (frame["seed"] == 0)]
        for _, run in chosen.iterrows():
            rows += [
                {"task": run["task"], "row": label, "i": i + 1, "normalised": value}
                for i, value in enumerate(run["normalised"])
                if value > 0
            ]
    return pd.DataFrame(rows, columns=["task", "row", "i", "normalised"])


def plot_figure4(frame: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4), squeeze=False)
    for ax, (label, task) in zip(axes[0], TASKS):
        part = frame[frame["task"] == task]
        for index, (_, row) in enumerate(FIGURE4_ROWS):
            line = part[part["row"] == row]
            ax.plot(
                line["i"],
                line["normalised"],
                "--" if row == "LoRA" else "-",
                marker=".",
                color=f"C{index}",
                label=f"{row} (r={FIGURE4_R})",
            )
        for tolerance, style in ((RANK_TOLERANCE, ":"), (1e-3, "-.")):
            ax.axhline(tolerance, color="grey", ls=style, lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("index i (top 64 recorded)")
        ax.set_ylabel("s_i / s_1, median over the 6 query layers")
        ax.set_title(f"{label}, seed 0")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if part.empty:
            ax.text(0.02, 0.97, "no spectra of these runs yet", transform=ax.transAxes, va="top", fontsize=9)
    fig.suptitle("Figure 4 at CPU scale: normalised singular values of the query updates (grey: 1e-2, 1e-3)")
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
