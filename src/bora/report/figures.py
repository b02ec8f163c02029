"""The paper's figures from our runs (matplotlib, PNG): Figure 4 (singular values) and Figure 3(b) (accuracy vs b).

Figure 4: for every query layer of a trained adapter, the number of singular values of its update ``dW`` above 0.005
(the effective rank, HiRA's threshold) and the sum of squared singular values (``||dW||_F^2``), LoRA vs BoRA across
ranks and block counts. Adapters are read from ``<run_dir>/adapter`` onto a meta-device model whose query layers get
weightless stand-ins, so no base weights are loaded.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import nn
from tqdm import tqdm

from bora.adapters.stats import singular_values
from bora.record import read_record
from bora.report.aggregate import successful
from bora.report.paper import METHODS

THRESHOLD = 0.005
PAPER_RESULTS = {"glue", "math", "commonsense", "efficiency"}  # experiment_names of the paper tables
DISPLAY_NAMES = {name: label for label, (name, _) in METHODS.items()}  # lora -> LoRA


def _weightless(linear: nn.Linear) -> None:
    """Give a meta-device linear a zero-storage CPU weight, so an adapter injected on it lives on the CPU."""
    shape = linear.weight.shape
    linear.weight = nn.Parameter(torch.empty_strided(shape, (0, 0)), requires_grad=False)


def query_layer_spectra(run_dir: Path | str) -> pd.DataFrame:
    """Per query layer of a run's saved adapter: layer index, singular values above ``THRESHOLD``, sum of squares."""
    from bora.adapters import adapter_layers, find_targets, load_adapters, target_patterns
    from bora.models import build_from_arch
    from bora.tasks import build_task

    run_dir = Path(run_dir)
    cfg = OmegaConf.create(read_record(run_dir).config)
    model = build_from_arch(cfg.model, build_task(cfg.task).num_labels, device="meta")
    queries = find_targets(model, target_patterns("Q", cfg.model.targets))
    for name in queries:
        _weightless(model.get_submodule(name))
    load_adapters(model, run_dir / "adapter")
    rows = []
    for index, (name, layer) in enumerate((n, layer) for n, layer in adapter_layers(model) if n in queries):
        values = singular_values(layer)
        rows.append(
            {
                "layer": index,
                "module": name,
                "above_threshold": int((values > THRESHOLD).sum()),
                "sum_squared": float((values.double() ** 2).sum()),
            }
        )
    return pd.DataFrame(rows)


def run_label(run: pd.Series) -> str:
    label = f"{DISPLAY_NAMES.get(run['method'], run['method'])} r={run['r']}"
    return label + (f" b={run['blocks']}" if not pd.isna(run["blocks"]) else "")


def spectra(runs: pd.DataFrame) -> pd.DataFrame:
    """``query_layer_spectra`` of every successful run that saved an adapter, with the run's identity."""
    chosen = successful(runs)
    chosen = chosen[[(Path(d) / "adapter").is_dir() for d in chosen["run_dir"]]]
    frames = []
    for _, run in tqdm(list(chosen.iterrows()), desc="singular values", disable=len(chosen) < 4):
        frame = query_layer_spectra(run["run_dir"])
        frame.insert(0, "label", run_label(run))
        for key in ["model", "task", "method", "r", "blocks", "seed", "run_dir"]:
            frame[key] = run[key]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


OUTLIER_FACTOR = 100.0  # a run's sum of squares this far above the median of its panel is drawn at the panel's edge


def _outlier_ceiling(values: pd.Series) -> float | None:
    """The y limit above which a point is an outlier (a Sigma blow-up): ``OUTLIER_FACTOR`` x the panel's median,
    or None when nothing is that far out."""
    positive = values[values > 0]
    if positive.empty:
        return None
    ceiling = float(positive.median()) * OUTLIER_FACTOR
    return ceiling if (positive > ceiling).any() else None


def _log_axis(ax) -> None:
    """Log scale with plain tick labels (0.01, 1, 100), not 1.12x10^-2 mantissas on minor ticks."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_spectra(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Two panels per model x task: effective rank and sum of squared singular values against the layer index, each
    with its own legend. A layer whose sum of squares is more than ``OUTLIER_FACTOR`` x the panel's median (a Sigma
    blow-up) is drawn on the panel's upper edge as a red triangle with its value, so it does not flatten the rest."""
    groups = list(frame.groupby(["model", "task"], sort=True))
    fig, axes = plt.subplots(len(groups), 2, figsize=(13, 4.2 * len(groups)), squeeze=False)
    for row, ((model, task), part) in enumerate(groups):
        ceiling = _outlier_ceiling(part["sum_squared"])
        for label, run in part.sort_values(["method", "r", "blocks"]).groupby("label", sort=False):
            style = "-" if run["method"].iloc[0] == "bora" else "--"
            (line,) = axes[row, 0].plot(run["layer"], run["above_threshold"], style, marker="o", ms=3, label=label)
            values = run["sum_squared"] if ceiling is None else run["sum_squared"].clip(upper=ceiling)
            axes[row, 1].plot(run["layer"], values, style, marker="o", ms=3, color=line.get_color(), label=label)
            if ceiling is not None:
                for layer, value in zip(run["layer"], run["sum_squared"]):
                    if value > ceiling:
                        axes[row, 1].plot([layer], [ceiling], "^", color="red", ms=8)
                        axes[row, 1].annotate(
                            f"{value:.2g}",
                            (layer, ceiling),
                            textcoords="offset points",
                            xytext=(0, -12),
                            ha="center",
                            fontsize=7,
                            color="red",
                        )
        axes[row, 0].set_ylabel(f"singular values > {THRESHOLD}")
        axes[row, 1].set_ylabel("sum of squared singular values")
        _log_axis(axes[row, 1])  # spans orders of magnitude across r, b and layers
        if ceiling is not None:
            axes[row, 1].text(
                0.01,
                0.99,
                f"red: clipped at {ceiling:.2g} ({OUTLIER_FACTOR:g}x the median), true value below it",
                transform=axes[row, 1].transAxes,
                va="top",
                fontsize=7,
                color="red",
            )
        for ax in axes[row]:
            ax.set_title(f"{model} on {task}")
            ax.set_xlabel("query layer")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2, title="LoRA dashed, BoRA solid", title_fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figure4_runs(runs: pd.DataFrame, outputs: Path) -> pd.DataFrame:
    """The runs of conf/experiment/figure4.yaml (stored under experiment_name math, with its identities)."""
    from bora.report.specs import membership

    return membership(runs, "math", "figure4")[0]


def plot_figure3b(frame: pd.DataFrame, path: Path) -> Path:
    """Table 9's Avg against b, one colour per r: ours (mean ± std over seeds, solid, circles), the paper's (dashed,
    crosses); the legend draws each entry as its lines are drawn.

    ``frame`` is ``bora.report.tables.compare`` of Table 9; LoRA sits at the left end (x = "LoRA").
    """
    from matplotlib.lines import Line2D

    avg = frame[frame["column"] == "Avg"].copy()
    avg["b"] = avg["b"].fillna(1).astype(int)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    handles = []
    for index, (r, part) in enumerate(avg.sort_values("b").groupby("r")):
        color = f"C{index}"
        ax.plot(part["b"], part["paper"], "--", color=color, alpha=0.6, marker="x")
        ours = part.dropna(subset=["ours"])
        if len(ours):
            ax.errorbar(ours["b"], ours["ours"], yerr=ours["spread"].fillna(0), color=color, marker="o", capsize=3)
        handles.append(Line2D([], [], color=color, lw=6, label=f"r={r}"))
    if avg["ours"].isna().all():
        ax.text(0.02, 0.97, "no runs of ours yet (make reproduce-table9)", transform=ax.transAxes, va="top", fontsize=9)
    handles += [
        Line2D([], [], color="k", ls="--", marker="x", alpha=0.6, label="paper"),
        Line2D([], [], color="k", ls="-", marker="o", label="ours (±std)"),
    ]
    ax.set_xscale("log", base=2)
    ticks = sorted(avg["b"].unique())
    ax.set_xticks(ticks, ["LoRA" if b == 1 else str(b) for b in ticks])
    ax.set_xlabel("blocks b")
    ax.set_ylabel("Avg accuracy (%)")
    ax.set_title("Figure 3(b): LLaMA-3-8B on Math10K, accuracy vs blocks per rank")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render_figure(name: str, runs: pd.DataFrame, out_dir: Path, outputs: Path) -> list[Path]:
    """``figure3b`` or ``figure4`` into ``out_dir`` (PNG, plus the plotted numbers as CSV); ``outputs``: the runs'
    root. Returns the paths written."""
    from bora.report.tables import paper_comparison

    out_dir = Path(out_dir)
    if name == "figure3b":
        return [plot_figure3b(paper_comparison("table9", runs), out_dir / "figure3b.png")]
    frame = spectra(figure4_runs(runs, outputs))
    if frame.empty:
        print("figure4: no trained adapters of conf/experiment/figure4.yaml yet (make reproduce-figure4)")
        return []
    frame.to_csv(out_dir / "figure4.csv", index=False)
    title = "Figure 4: singular values of the query-layer updates, LoRA (dashed) vs BoRA (solid)"
    return [plot_spectra(frame, out_dir / "figure4.png", title), out_dir / "figure4.csv"]


def render_figures(runs: pd.DataFrame, out_dir: Path, outputs: Path) -> list[Path]:
    """Both paper figures, plus a singular-value figure of each other experiment's first-seed runs (e.g. smoke)."""
    written = render_figure("figure3b", runs, out_dir, outputs) + render_figure("figure4", runs, out_dir, outputs)
    for experiment in sorted(set(runs["experiment"].dropna()) - PAPER_RESULTS):
        chosen = runs[runs["experiment"] == experiment]
        chosen = chosen[chosen["seed"] == successful(chosen)["seed"].min()]
        frame = spectra(chosen)
        if not frame.empty:
            stem = Path(out_dir) / f"singular-values-{experiment}"
            frame.to_csv(stem.with_suffix(".csv"), index=False)
            title = f"{experiment}: singular values of the query-layer updates (seed {frame['seed'].iloc[0]})"
            written += [plot_spectra(frame, stem.with_suffix(".png"), title), stem.with_suffix(".csv")]
    return written
