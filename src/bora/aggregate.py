"""Tables are pure functions of ``result.json`` files: load them, keep the successful runs, average over seeds.

Three steps, each a plain function on a pandas frame:
``load_results`` (one row per run) -> ``per_seed`` (one row per configuration x seed, one column per table column,
in the table's units) -> ``seed_stats`` (mean, standard deviation and number of seeds per cell).
A cell no successful run feeds is NaN all the way through (shown as missing), never 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from bora.config.resolvers import method_tag
from bora.runs import RESULT_FILE

# Fields of ``config.method`` copied into the run frame (together they identify a table row).
METHOD_FIELDS = ["r", "alpha", "dropout", "blocks", "heads", "targets", "use_exp", "use_norm"]
RUN_COLUMNS = ["experiment", "model", "task", "method", *METHOD_FIELDS, "method_tag", "seed", "status", "metric",
               "value", "metrics", "adapter_params", "train_s", "eval_s", "peak_train_bytes", "error", "run_dir"]
CONFIG_KEYS = ["experiment", "model", "task", "method_tag"]


def _run_row(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"status": "unreadable", "run_dir": str(path.parent)}
    method = (result.get("config") or {}).get("method") or {}
    headline = result.get("headline") or {}
    peak = ((result.get("peak_memory") or {}).get("train") or {})
    return {
        "experiment": result.get("experiment"),
        "model": result.get("model"),
        "task": result.get("task"),
        "method": result.get("method"),
        **{key: method.get(key) for key in METHOD_FIELDS},
        "method_tag": method_tag(method) if method else result.get("method"),
        "seed": result.get("seed"),
        "status": result.get("status"),
        "metric": headline.get("metric"),
        "value": headline.get("value"),
        "metrics": result.get("metrics") or {},
        "adapter_params": result.get("adapter_params"),
        "train_s": (result.get("train") or {}).get("wall_time_s"),
        "eval_s": (result.get("eval") or {}).get("wall_time_s"),
        "peak_train_bytes": peak.get("bytes"),
        "error": (result.get("error") or {}).get("message"),
        "run_dir": str(path.parent),
    }


def load_results(root: Path | str, experiments: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per ``result.json`` under ``root`` (all statuses; unreadable files get status ``unreadable``).

    ``experiments`` limits the search to ``root/<name>/`` folders (the run directory layout) for speed.
    """
    root = Path(root)
    folders = [root / name for name in experiments] if experiments else [root]
    paths = sorted(p for folder in folders if folder.is_dir() for p in folder.rglob(RESULT_FILE))
    frame = pd.DataFrame([_run_row(p) for p in paths], columns=RUN_COLUMNS)
    return frame.astype({"seed": "Int64", "r": "Int64", "blocks": "Int64", "heads": "Int64"})


def successful(runs: pd.DataFrame) -> pd.DataFrame:
    """Only runs whose result says success: failed, running (or killed) and unreadable runs never enter a table."""
    return runs[runs["status"] == "success"]


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in runs["status"].value_counts().items()}


@dataclass(frozen=True)
class Column:
    """One table column: where its number comes from in a run, and its unit.

    ``source`` is ``"metrics"`` (``metrics[subtask][metric]`` of runs of ``task``; ``task`` None = any task) or a run
    field (``adapter_params``, ``train_s``, ``peak_train_bytes``, ...). The value shown is ``raw * scale``.
    """

    label: str
    subtask: str | None = None
    metric: str = "accuracy"
    task: str | None = None
    source: str = "metrics"
    scale: float = 100.0

    def value(self, run: pd.Series) -> float:
        if self.task is not None and run["task"] != self.task:
            return math.nan
        if self.source == "metrics":
            raw = (run["metrics"].get(self.subtask) or {}).get(self.metric)
        else:
            raw = run[self.source]
        return math.nan if raw is None or pd.isna(raw) else float(raw) * self.scale


def per_seed(runs: pd.DataFrame, columns: Sequence[Column], keys: Sequence[str], average: str | None = None
             ) -> pd.DataFrame:
    """One row per ``keys`` x seed over the successful runs, one column per ``Column`` (NaN where no run feeds it).

    With ``average``, a column of that name holds each seed's mean over ``columns``, or NaN unless the seed has
    every column (the paper's Avg: a plain mean of the sub-task columns, computed per seed, then over seeds).
    """
    labels = [c.label for c in columns]
    ok = successful(runs)
    rows = []
    for _, run in ok.iterrows():
        values = {c.label: c.value(run) for c in columns}
        if any(not math.isnan(v) for v in values.values()):
            rows.append({**{k: run[k] for k in keys}, "seed": run["seed"], **values})
    frame = pd.DataFrame(rows, columns=[*keys, "seed", *labels])
    # Several runs can feed one seed's row (Table 1: one run per GLUE task); keep each run's own cells.
    frame = frame.groupby([*keys, "seed"], dropna=False, sort=False)[labels].first().reset_index()
    if average:
        frame[average] = frame[labels].mean(axis=1, skipna=False)
    return frame


def seed_stats(seeds: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Long frame: ``keys`` x column -> ``mean``, ``std`` (sample std, ddof=1; NaN with one seed), ``n`` seeds."""
    value_columns = [c for c in seeds.columns if c not in (*keys, "seed")]
    long = seeds.melt(id_vars=[*keys, "seed"], value_vars=value_columns, var_name="column", value_name="value")
    long = long.dropna(subset=["value"])
    stats = long.groupby([*keys, "column"], dropna=False, sort=False)["value"].agg(["mean", "std", "count"])
    return stats.rename(columns={"count": "n"}).reset_index()


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Every sub-task metric of every configuration: mean, std and seeds over the successful runs.

    Long frame with ``experiment, model, task, method_tag, subtask, metric, mean, std, n, adapter_params``
    (natural units, as in result.json).
    """
    ok = successful(runs)
    rows = [
        {**{k: run[k] for k in CONFIG_KEYS}, "seed": run["seed"], "subtask": subtask, "metric": metric,
         "value": value, "adapter_params": run["adapter_params"]}
        for _, run in ok.iterrows()
        for subtask, values in run["metrics"].items()
        for metric, value in values.items()
        if value is not None
    ]
    columns = [*CONFIG_KEYS, "subtask", "metric", "mean", "std", "n", "adapter_params"]
    if not rows:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(rows)
    grouped = long.groupby([*CONFIG_KEYS, "subtask", "metric"], sort=True)
    stats = grouped.agg(mean=("value", "mean"), std=("value", "std"), n=("seed", "nunique"),
                        adapter_params=("adapter_params", "first"))
    return stats.reset_index()[columns]
