"""Tables are pure functions of ``result.json`` files: load them, keep the runs that belong, average over seeds.

Three steps, each a plain function on a pandas frame:
``load_results`` (one row per run, read through ``bora.record``) -> ``per_seed`` (one row per configuration x seed,
one column per table column, in the table's units) -> ``seed_stats`` (mean, standard deviation and number of seeds
per cell). A cell no successful run feeds is NaN all the way through (shown as missing), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bora.config.identity import differing_keys, identity_values
from bora.config.resolvers import method_tag
from bora.record import RESULT_FILE, Unreadable, read_record

# Fields of ``config.method`` copied into the run frame (together they identify a table row).
METHOD_FIELDS = ["r", "alpha", "dropout", "blocks", "heads", "targets", "use_exp", "use_norm"]
RUN_COLUMNS = [
    "experiment",
    "model",
    "task",
    "method",
    *METHOD_FIELDS,
    "method_tag",
    "seed",
    "identity",
    "group",
    "status",
    "metric",
    "value",
    "sigma_max",
    "metrics",
    "undefined",
    "adapter_params",
    "train_s",
    "eval_s",
    "peak_train_bytes",
    "memory_measure",
    "notices",
    "error",
    "config",
    "run_dir",
]
CONFIG_KEYS = ["experiment", "model", "task", "method_tag"]
UNREADABLE = "unreadable"


def _run_row(path: Path) -> dict:
    try:
        record = read_record(path)
    except Unreadable as error:
        return {
            "status": UNREADABLE,
            "error": error.reason,
            "run_dir": str(path.parent),
            "metrics": {},
            "notices": [],
            "undefined": {},
        }
    method = record.config.get("method") or {}
    peak = record.peak_memory.get("train")
    return {
        "experiment": record.experiment,
        "model": record.model,
        "task": record.task,
        "method": record.method,
        **{key: method.get(key) for key in METHOD_FIELDS},
        "method_tag": method_tag(method) if method else record.method,
        "seed": record.seed,
        "identity": record.identity,
        "group": record.group,
        "status": str(record.status),
        "metric": record.headline.metric if record.headline else None,
        "value": record.headline.value if record.headline else None,
        # BoRA's largest Sigma entry over its layers (bora.adapters.stats), None for other methods
        "sigma_max": ((record.adapter_stats or {}).get("sigma") or {}).get("summary", {}).get("sigma_max"),
        "metrics": record.metrics or {},
        "undefined": record.undefined_metrics,
        "adapter_params": record.adapter_params,
        "train_s": record.train.wall_time_s if record.train else None,
        "eval_s": (record.eval or {}).get("wall_time_s"),
        "peak_train_bytes": peak.bytes if peak else None,
        "memory_measure": peak.measure if peak else None,
        "notices": record.notices,
        "error": record.error.message if record.error else None,
        "config": record.config,
        "run_dir": str(path.parent),
    }


def result_files(root: Path) -> list[Path]:
    """Every run's result.json under ``root``: not the ones a forced rerun is still writing (``.attempt/``)."""
    return sorted(
        p for p in Path(root).rglob(RESULT_FILE) if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_results(root: Path | str, experiments: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per ``result.json`` under ``root`` (all statuses; a file that cannot be trusted gets status
    ``unreadable`` and the reason in ``error``). ``experiments`` limits the search to ``root/<name>/``."""
    root = Path(root)
    folders = [root / name for name in experiments] if experiments else [root]
    paths = [p for folder in folders if folder.is_dir() for p in result_files(folder)]
    frame = pd.DataFrame([_run_row(p) for p in paths], columns=RUN_COLUMNS)
    return frame.astype({"seed": "Int64", "r": "Int64", "blocks": "Int64", "heads": "Int64"})


def successful(runs: pd.DataFrame) -> pd.DataFrame:
    """Only runs whose result says success: failed, interrupted, running (or killed) and unreadable runs never
    enter a table."""
    return runs[runs["status"] == "success"]


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in runs["status"].value_counts().items()}


def problems(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are not successes, with their one-line error: ``run_dir, status, error``."""
    bad = runs[runs["status"] != "success"]
    return bad[["run_dir", "status", "error"]].reset_index(drop=True)


@dataclass(frozen=True)
class Column:
    """One table column: where its number comes from in a run, and its unit.

    ``source`` is ``"metrics"`` (``metrics[subtask][metric]`` of runs of ``task``; ``task`` None = any task) or a run
    field (``value`` = the headline, ``adapter_params``, ``train_s``, ``peak_train_bytes``, ...). The value shown is
    ``raw * scale``.
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


def per_seed(
    runs: pd.DataFrame, columns: Sequence[Column], keys: Sequence[str], average: str | None = None
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


DISPLAY_NAMES = {
    "lora": "LoRA",
    "dora": "DoRA",
    "melora": "MELoRA",
    "hydralora": "HydraLoRA",
    "bora": "BoRA",
    "sbora-fa": "SBoRA-FA",
    "sbora-fb": "SBoRA-FB",
    "peft": "PEFT",
}


def method_name(method: dict) -> str:
    """A method as a paper prints it: ``BoRA (r=8, b=16, QKV)``, ``BoRA w/o Exp (r=8, b=16, QV)``,
    ``MELoRA (r=8, N=4, QV)``, ``HydraLoRA (r=4, 3 heads, QV)``, ``PEFT ADALORA (r=8, QKV)``."""
    name = DISPLAY_NAMES.get(method.get("name"), str(method.get("name")))
    if method.get("name") == "peft":
        name = f"PEFT {(method.get('peft') or {}).get('peft_type', '')}".strip()
    if method.get("name") == "bora" and not method.get("use_exp", True):
        name += " w/o Exp"
    if method.get("name") == "bora" and not method.get("use_norm", True):
        name += " w/o Norm"
    parts = [f"r={method.get('r')}"]
    if method.get("blocks"):
        parts.append(f"{'N' if method.get('name') == 'melora' else 'b'}={method['blocks']}")
    if method.get("heads"):
        parts.append(f"{method['heads']} heads")
    parts.append(str(method.get("targets")))
    return f"{name} ({', '.join(parts)})"


def varying_keys(configs: Sequence[dict]) -> list[str]:
    """The identity keys whose values differ between some of ``configs`` (an lr sweep: ``trainer.lr``)."""
    values = [identity_values(c, drop_seed=True) for c in configs]
    keys: set[str] = set()
    for other in values[1:]:
        keys |= set(differing_keys(values[0], other))
    return sorted(keys)


def dotted(config: dict, key: str):
    """The value at a dotted key of a nested config (None where a part is missing)."""
    node = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Every sub-task metric of every configuration (``group``: identity without the seed): mean, std and seeds
    over the successful runs. Runs of different configs are never averaged together.

    Long frame with ``experiment, model, task, method_tag, group, setting, subtask, metric, mean, std, n,
    adapter_params``; ``setting`` names the config values that tell groups of one model x task apart (e.g.
    ``trainer.lr=0.001``) beyond the method, empty when the method alone does.
    """
    ok = successful(runs)
    columns = [
        *CONFIG_KEYS,
        "method_name",
        "group",
        "setting",
        "subtask",
        "metric",
        "mean",
        "std",
        "n",
        "adapter_params",
    ]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    settings: dict[str, str] = {}
    for _, part in ok.groupby(["experiment", "model", "task"], sort=False):
        firsts = part.drop_duplicates("group")
        keys = [k for k in varying_keys(list(firsts["config"])) if not k.startswith("method.")]
        for _, run in firsts.iterrows():
            settings[run["group"]] = " ".join(f"{k}={dotted(run['config'], k)}" for k in keys)
    rows = [
        {
            **{k: run[k] for k in CONFIG_KEYS},
            "method_name": method_name(run["config"]["method"]),
            "group": run["group"],
            "setting": settings[run["group"]],
            "seed": run["seed"],
            "subtask": subtask,
            "metric": metric,
            "value": value,
            "adapter_params": run["adapter_params"],
        }
        for _, run in ok.iterrows()
        for subtask, values in run["metrics"].items()
        for metric, value in values.items()
        if value is not None
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(rows)
    grouped = long.groupby(
        [*CONFIG_KEYS, "method_name", "group", "setting", "subtask", "metric"], sort=True, dropna=False
    )
    stats = grouped.agg(
        mean=("value", "mean"), std=("value", "std"), n=("seed", "nunique"), adapter_params=("adapter_params", "first")
    )
    return stats.reset_index()[columns]
