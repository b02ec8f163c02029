"""Tables are pure functions of result.json files: load them, keep the successful runs, average over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bora.config.resolvers import method_tag
from bora.runs import RESULT_FILE

RUN_KEYS = ["experiment", "model", "task", "method_tag"]


def load_results(root: Path | str) -> pd.DataFrame:
    """One row per ``result.json`` under ``root``: identity, status, headline metric and costs."""
    rows = []
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError:
            rows.append({"run_dir": str(path.parent), "status": "unreadable"})
            continue
        config = result.get("config", {})
        headline = result.get("headline") or {}
        rows.append({
            "experiment": result.get("experiment"),
            "model": result.get("model"),
            "task": result.get("task"),
            "method": result.get("method"),
            "method_tag": method_tag(config["method"]) if "method" in config else result.get("method"),
            "seed": result.get("seed"),
            "status": result.get("status"),
            "metric": headline.get("metric"),
            "value": headline.get("value"),
            "adapter_params": result.get("adapter_params"),
            "train_s": (result.get("train") or {}).get("wall_time_s"),
            "eval_s": (result.get("eval") or {}).get("wall_time_s"),
            "run_dir": str(path.parent),
        })
    return pd.DataFrame(rows, columns=RUN_KEYS[:3] + ["method", "method_tag", "seed", "status", "metric", "value",
                                                     "adapter_params", "train_s", "eval_s", "run_dir"])


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) over the seeds of each run configuration; successful runs only."""
    ok = results[results["status"] == "success"]
    if ok.empty:
        return pd.DataFrame(columns=RUN_KEYS + ["metric", "mean", "std", "seeds", "adapter_params"])
    grouped = ok.groupby(RUN_KEYS + ["metric"], sort=True)
    return grouped.agg(
        mean=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique"), adapter_params=("adapter_params", "first")
    ).reset_index()


def status_counts(results: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in results["status"].value_counts().items()}
