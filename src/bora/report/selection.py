"""A study's protocol selection (e.g. ``cpu-glue-protocol``): how its learning rate was chosen, from result files.

The selection runs score one baseline on a held-out part of each *training* set (``task.eval_split=heldout``), one
run per task and candidate learning rate. The table shows each candidate's held-out score per task and their mean,
and marks the learning rate the study's own committed runs used, so the study page shows the evidence beside the choice.
If the best mean is not the rate the study used (a rerun of the selection may land elsewhere: one seed each), the
note under the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bora.paths import PROJECT_ROOT
from bora.report.aggregate import load_results, successful
from bora.report.render import MISSING, number


@dataclass(frozen=True)
class Selection:
    name: str  # the study block and the experiment (conf/experiment/<name>.yaml, results/<name>/)
    study: str  # the experiment whose protocol it chose (its runs name the learning rate used)
    # the columns: (label, task name) scores a run's headline; (label, task name, part) its metrics[part][metric],
    # as for a task that scores several held-out parts (cpu-commonsense: one per training set it mixes)
    tasks: tuple[tuple[str, ...], ...]
    results: str = "results"
    metric: str = "accuracy"


SELECTIONS = {
    selection.name: selection
    for selection in [
        Selection(
            "cpu-glue-protocol",
            "cpu-glue",
            (("MRPC acc", "mrpc"), ("CoLA MCC", "cola"), ("STS-B Pearson", "stsb"), ("SST-2 acc", "sst2")),
        ),
        Selection(
            "cpu-commonsense-protocol",
            "cpu-commonsense",
            tuple(
                (f"{label} acc", "cpu-commonsense", f"{part}_heldout")
                for label, part in (
                    ("BoolQ", "boolq"),
                    ("ARC-c", "ARC-Challenge"),
                    ("ARC-e", "ARC-Easy"),
                    ("OBQA", "openbookqa"),
                )
            ),
        ),
    ]
}


def _lr(config: dict) -> float:
    return float(config["trainer"]["lr"])


def study_lrs(runs: pd.DataFrame) -> set[float]:
    """The learning rates the study's successful runs trained with."""
    return {_lr(config) for config in successful(runs)["config"]}


def selection_table(selection: Selection, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate learning rate: the held-out score of each task (NaN where no run finished) and their
    mean (NaN unless every task has one)."""
    ok = successful(runs)
    rows = []
    for lr in sorted({_lr(config) for config in ok["config"]}):
        at_lr = ok[[_lr(config) == lr for config in ok["config"]]]
        row = {"lr": lr}
        for label, task, *part in selection.tasks:
            at_task = at_lr[at_lr["task"] == task]
            if len(at_task) > 1:
                raise ValueError(f"{selection.name}: {len(at_task)} runs of {task} at lr {lr:g}; one expected")
            if part:
                values = at_task["metrics"].map(
                    lambda metrics, sub=part[0]: (metrics.get(sub) or {}).get(selection.metric)
                )
            else:
                values = at_task["value"]
            row[label] = float(values.iloc[0]) if len(values) and values.iloc[0] is not None else float("nan")
        row["mean"] = pd.Series([row[label] for label in _labels(selection)]).mean(skipna=False)
        rows.append(row)
    return pd.DataFrame(rows, columns=["lr", *_labels(selection), "mean"])


def _labels(selection: Selection) -> list[str]:
    return [column[0] for column in selection.tasks]


def render_selection(name: str, root=None) -> str:
    """The selection's Markdown table and note, from ``results/<name>/`` and ``results/<study>/``."""
    selection = SELECTIONS[name]
    root = root or PROJECT_ROOT / selection.results
    runs = load_results(root, [selection.name])
    table = selection_table(selection, runs)
    if table.empty:
        return f"(no finished run of conf/experiment/{name}.yaml under {selection.results}/{name}/ yet)"
    used = study_lrs(load_results(root, [selection.study]))
    best = table.loc[table["mean"].idxmax(), "lr"] if table["mean"].notna().any() else None
    display = []
    for _, row in table.iterrows():
        chosen = row["lr"] in used
        cells = {"held-out train": f"**lr {row['lr']:g}** (used)" if chosen else f"lr {row['lr']:g}"}
        cells.update({label: number(row[label], 3) for label in _labels(selection)})
        mean = number(row["mean"], 3)
        cells["mean"] = f"**{mean}**" if chosen and pd.notna(row["mean"]) else mean
        display.append(cells)
    note = (
        f"Held-out score of each run of conf/experiment/{name}.yaml (one seed; {MISSING}: not finished); "
        f"mean: of the {len(selection.tasks)} columns. (used): the learning rate of the committed "
        f"{selection.study} runs."
    )
    if best is not None and used and best not in used:
        rates = ", ".join(f"{v:g}" for v in sorted(used))
        note += (
            f" The best mean here is lr {best:g}, not the rate the study used ({rates}): the study's rate was "
            "chosen by the selection as first run (see the text above), and is kept."
        )
    elif best is not None and best in used:
        note += f" The best mean is the rate the study used (lr {best:g})."
    return pd.DataFrame(display).to_markdown(index=False, disable_numparse=True) + "\n\n" + note
