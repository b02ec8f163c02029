"""The paper's tables as comparison frames: the paper's number, ours, its spread and seeds, the difference.

A table is a pure function of the ``result.json`` files: ``compare(spec, runs)`` gives one line per paper row x
column with the paper's value, our mean, standard deviation and number of seeds, the planned number of seeds and
the difference. Only runs the table's experiment plans enter (``bora.report.specs.membership``); cells without a
successful run stay NaN (rendered "—"), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bora.errors import BoraError
from bora.report.aggregate import per_seed, seed_stats, successful
from bora.report.paper import method_label, paper_table, paper_tag
from bora.report.specs import (
    COMPARE_COLUMNS,
    KEYS,
    PAPER_TABLES,
    SPECS,
    TABLE6,
    TableSpec,
    membership,
    planned_seeds,
)


def _stats(spec: TableSpec, runs: pd.DataFrame, overrides: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.Series]:
    runs = membership(runs, spec.experiment_name, spec.experiment, overrides)[0]
    stats = seed_stats(per_seed(runs, spec.columns, KEYS, spec.average), KEYS).set_index([*KEYS, "column"])
    params = successful(runs).dropna(subset=["adapter_params"]).groupby(KEYS)["adapter_params"].first()
    return stats, params


def _cell(spec: TableSpec, stats: pd.DataFrame, key: tuple) -> dict:
    if key not in stats.index:
        return {"ours": float("nan"), "spread": float("nan"), "n": 0}
    mean, std, n = stats.loc[key, ["mean", "std", "n"]]
    if spec.statistic == "std":
        return {"ours": std, "spread": float("nan"), "n": int(n)}
    return {"ours": mean, "spread": std, "n": int(n)}


def compare(spec: TableSpec, runs: pd.DataFrame, planned: int, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """One line per paper row x column, in the paper's order: paper value, ours, spread (std), seeds, difference."""
    stats, params = _stats(spec, runs, overrides)
    lines = []
    for index, row in paper_table(spec.paper_csv).iterrows():
        tag = paper_tag(row, spec.targets)
        for column in spec.labels:
            cell = _cell(spec, stats, (row["model"], tag, column))
            lines.append(
                {
                    "table": spec.name,
                    "row": index,
                    "model": row["model"],
                    "label": method_label(row),
                    "r": row["r"],
                    "b": row["b"],
                    "targets": row.get("target_modules", spec.targets),
                    "method_tag": tag,
                    "column": column,
                    "paper": float(row[column]),
                    **cell,
                    "planned": planned,
                    "diff": cell["ours"] - float(row[column]),
                    "params_paper": row.get("params_M"),
                    "params_ours": params.get((row["model"], tag)),
                }
            )
    return pd.DataFrame(lines, columns=COMPARE_COLUMNS)


def compare_table6(runs: pd.DataFrame, planned: int, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """Table 6: the std over seeds of Table 2's and Table 3's Avg, one column per benchmark x model."""
    sources = {"math": SPECS["table2"], "commonsense": SPECS["table3"]}
    stats = {bench: _stats(spec, runs, overrides)[0] for bench, spec in sources.items()}
    lines = []
    for index, row in paper_table(TABLE6.paper_csv).iterrows():
        tag = paper_tag(row, "QKV")
        for column in [c for c in row.index if "_" in c]:
            bench, model = column.split("_", 1)
            cell = _cell(TABLE6, stats[bench], (model, tag, "Avg"))
            lines.append(
                {
                    "table": "table6",
                    "row": index,
                    "model": "",
                    "label": method_label(row),
                    "r": row["r"],
                    "b": row["b"],
                    "targets": "QKV",
                    "method_tag": tag,
                    "column": column,
                    "paper": float(row[column]),
                    **cell,
                    "planned": planned,
                    "diff": cell["ours"] - float(row[column]),
                    "params_paper": None,
                    "params_ours": None,
                }
            )
    return pd.DataFrame(lines, columns=COMPARE_COLUMNS)


def paper_comparison(name: str, runs: pd.DataFrame, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """The comparison frame of one paper table (``table1`` ... ``table9``); ``overrides``: command-line overrides
    the table's sweep was run with (e.g. ``trainer.grad_accum=2``), so that its runs are the planned ones."""
    spec = table_spec(name)
    found = runs["experiment"].isin([spec.experiment_name, "math", "commonsense"]).any() if len(runs) else False
    seeds = planned_seeds(spec.experiment, overrides) if found else 0
    if name == "table6":
        return compare_table6(runs, seeds, overrides)
    return compare(spec, runs, seeds, overrides)


def excluded_runs(name: str, runs: pd.DataFrame, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """The runs found under a table's experiment_name that do not enter it, each with the reason."""
    spec = table_spec(name)
    sources = [SPECS["table2"], SPECS["table3"]] if name == "table6" else [spec]
    frames = [membership(runs, s.experiment_name, s.experiment, overrides)[1] for s in sources]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_dir", "status", "reason"])


def member_configs(name: str, runs: pd.DataFrame, overrides: Sequence[str] = ()) -> list[dict]:
    """The configs of the runs that enter a paper table (what its decoding line describes)."""
    spec = table_spec(name)
    sources = [SPECS["table2"], SPECS["table3"]] if name == "table6" else [spec]
    return [
        config for s in sources for config in membership(runs, s.experiment_name, s.experiment, overrides)[0]["config"]
    ]


def table_spec(name: str) -> TableSpec:
    if name == "table6":
        return TABLE6
    if name not in SPECS:
        raise BoraError(f"unknown table {name!r}; choose one of: {', '.join(PAPER_TABLES)}")
    return SPECS[name]
