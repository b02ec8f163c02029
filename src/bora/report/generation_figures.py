"""A generation study's figures (matplotlib, PNG), each with the numbers it plots as CSV beside it.

accuracy.png: per test set and Avg, every run's accuracy by method row (dots: seeds; bar: their mean ± one binomial
standard error of a single run), beside the set's majority answer and the untrained model: whether any row stands out
of the noise, and from the majority answer, at a glance.
training-loss.png: the training loss as logged, step by step, per method row (mean over seeds; faint: each seed).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bora.report.generation import GenerationStudy, binomial_se, loss_history
from bora.report.render import save_figure
from bora.report.specs import membership
from bora.report.study import STUDIES, study_table

ACCURACY_COLUMNS = ["row", "seed", "set", "accuracy", "n", "se"]
LOSS_COLUMNS = ["row", "seed", "step", "loss"]


def _labelled(name: str, runs: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s rows of the main table's method rows, labelled as there and in its order, then by seed."""
    table = study_table(STUDIES[name], runs)
    order = {tag: i for i, tag in enumerate(dict.fromkeys(table["method_tag"]))}
    labels = dict(zip(table["method_tag"], table["label"]))
    frame = frame[frame["method_tag"].isin(labels)]
    frame = frame.assign(row=frame["method_tag"].map(labels), order=frame["method_tag"].map(order))
    return frame.sort_values(["order", "seed"], kind="stable")


def accuracy_frame(study: GenerationStudy, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run and test set (and Avg, the mean of the sets): accuracy x100, the questions behind it and its binomial
    standard error x100; the untrained run and each set's majority share as rows of their own (seed -1)."""
    spec = STUDIES[study.name]
    trained = _labelled(study.name, runs, membership(runs, spec.experiment_name, spec.experiment)[0])
    rows = []

    def add(row: str, seed: int, metrics: dict, metric: str) -> None:
        scores, errors, counts = [], [], []
        for column in spec.columns:
            part = metrics.get(column.subtask) or {}
            accuracy, n = part.get(metric, math.nan), part.get("n") or math.nan
            scores.append(100 * accuracy)
            errors.append(100 * binomial_se(accuracy, n))
            counts.append(n)
            rows.append(
                {"row": row, "seed": seed, "set": column.label, "accuracy": scores[-1], "n": n, "se": errors[-1]}
            )
        # Avg, the mean of the sets' accuracies: its SE combines theirs (the sets' questions are independent)
        rows.append(
            {
                "row": row,
                "seed": seed,
                "set": "Avg",
                "accuracy": sum(scores) / len(scores),
                "n": sum(counts),
                "se": math.sqrt(sum(e * e for e in errors)) / len(errors),
            }
        )

    for _, run in trained.iterrows():
        add(run["row"], int(run["seed"]), run["metrics"], "accuracy")
    if len(trained):
        add("majority answer", -1, trained.iloc[0]["metrics"], "majority")
    untrained = membership(runs, study.untrained, study.untrained)[0]
    if len(untrained):
        add("untrained model", -1, untrained.iloc[0]["metrics"], "accuracy")
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def loss_frame(study: GenerationStudy, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run and logged step: the training loss, by the main table's row labels."""
    return _labelled(study.name, runs, loss_history(study, runs))[LOSS_COLUMNS]


def plot_accuracy(frame: pd.DataFrame, title: str, path: Path) -> Path:
    sets = list(dict.fromkeys(frame["set"]))
    methods = frame[frame["seed"] >= 0]
    rows = list(dict.fromkeys(methods["row"]))
    fig, axes = plt.subplots(1, max(len(sets), 1), figsize=(3.6 * max(len(sets), 1), 4.4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        part = methods[methods["set"] == name]
        for x, row in enumerate(rows):
            runs = part[part["row"] == row]
            ax.scatter([x] * len(runs), runs["accuracy"], color=f"C{x}", alpha=0.4, s=14)
            if len(runs):  # the mean over seeds, ± the mean binomial SE of one run
                ax.errorbar(
                    [x],
                    [runs["accuracy"].mean()],
                    yerr=[runs["se"].mean()],
                    color=f"C{x}",
                    marker="_",
                    markersize=14,
                    capsize=4,
                )
        for label, style in (("majority answer", "--"), ("untrained model", ":")):
            reference = frame[(frame["row"] == label) & (frame["set"] == name)]["accuracy"]
            if len(reference):
                ax.axhline(reference.iloc[0], color="grey", ls=style, lw=1, label=label)
        ax.set_xticks(range(len(rows)), rows, rotation=60, ha="right", fontsize=8)
        ax.set_title(name)
        ax.set_ylabel("accuracy x100")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{title}\ndots: seeds; bar: their mean ± one binomial SE of a single run")
    return save_figure(fig, path)


def plot_training_loss(frame: pd.DataFrame, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for index, (row, part) in enumerate(frame.groupby("row", sort=False)):
        for _, seed in part.groupby("seed"):
            ax.plot(seed["step"], seed["loss"], color=f"C{index}", alpha=0.25, lw=0.8)
        mean = part.groupby("step")["loss"].mean()
        ax.plot(mean.index, mean.values, color=f"C{index}", marker=".", label=row)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (logged: mean since the previous log)")
    ax.grid(alpha=0.3)
    if len(frame):
        ax.legend(fontsize=8)
    else:
        ax.text(0.02, 0.97, "no loss history in these runs", transform=ax.transAxes, va="top", fontsize=9)
    ax.set_title(title)
    return save_figure(fig, path)


def render_generation_figures(study: GenerationStudy, runs: pd.DataFrame, out_dir: Path) -> list[Path]:
    """accuracy.png / .csv and training-loss.png / .csv into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = STUDIES[study.name].title.split(":")[0]
    written = []
    for stem, frame, plot in (
        ("accuracy", accuracy_frame(study, runs), plot_accuracy),
        ("training-loss", loss_frame(study, runs), plot_training_loss),
    ):
        frame.to_csv(out_dir / f"{stem}.csv", index=False, float_format="%.6g")
        written += [plot(frame, title, out_dir / f"{stem}.png"), out_dir / f"{stem}.csv"]
    return written
