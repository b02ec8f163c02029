"""The paper's table layouts, and which runs a table takes: exactly the runs its experiment file plans.

A ``TableSpec`` names a paper table's columns, the experiment whose sweep makes its runs and the experiment_name
they are stored under. ``membership`` splits the runs found under that experiment_name into the ones whose identity
is one the sweep plans (they enter the table) and the others, each with the reason it stays out (not a success, or
a config the table does not plan: e.g. a rerun with another learning rate), so nothing is averaged in by accident.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bora.config.identity import differing_keys, identity_values, run_identity
from bora.config.resolvers import method_tag
from bora.report.aggregate import Column

GLUE = [
    ("RTE", "rte"),
    ("MRPC", "mrpc"),
    ("STS-B", "stsb"),
    ("CoLA", "cola"),
    ("SST-2", "sst2"),
    ("QNLI", "qnli"),
    ("MNLI", "mnli"),
    ("QQP", "qqp"),
]
MATH = [
    ("AddSub", "AddSub"),
    ("MultiArith", "MultiArith"),
    ("SingleEq", "SingleEq"),
    ("GSM8K", "gsm8k"),
    ("AQuA", "AQuA"),
    ("SVAMP", "SVAMP"),
]
COMMONSENSE = [
    ("BoolQ", "boolq"),
    ("PIQA", "piqa"),
    ("SIQA", "social_i_qa"),
    ("HellaSwag", "hellaswag"),
    ("WinoGrande", "winogrande"),
    ("ARC-c", "ARC-Challenge"),
    ("ARC-e", "ARC-Easy"),
    ("OBQA", "openbookqa"),
]
# A GLUE column is the headline value (the task's paper metric) of that task's runs.
GLUE_COLUMNS = tuple(Column(label, task=task, source="value") for label, task in GLUE)
MATH_COLUMNS = tuple(Column(label, subtask=name, task="math") for label, name in MATH)
COMMONSENSE_COLUMNS = tuple(Column(label, subtask=name, task="commonsense") for label, name in COMMONSENSE)
EFFICIENCY_COLUMNS = (
    Column("params_M", source="adapter_params", scale=1e-6),
    Column("memory_GB", source="peak_train_bytes", scale=2.0**-30),  # torch.cuda.max_memory_allocated, GiB
    Column("time_min", source="train_s", scale=1 / 60),
)
KEYS = ["model", "method_tag"]


@dataclass(frozen=True)
class TableSpec:
    """How a paper table is laid out and which runs feed it.

    ``experiment``: the conf/experiment file whose sweep makes the runs (its seeds are the planned seeds);
    ``experiment_name``: the one its runs are stored under (other experiments' results never enter);
    ``targets``: the paper's target modules of its rows;
    ``statistic``: ``mean`` (ours = mean ± std over seeds) or ``std`` (Tables 5 and 6: ours = the std).
    """

    name: str
    title: str
    paper_csv: str
    experiment: str
    experiment_name: str
    targets: str
    columns: tuple[Column, ...]
    average: str | None = "Avg"
    params: bool = True
    statistic: str = "mean"

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.columns] + ([self.average] if self.average else [])


def _math(name: str, title: str, csv: str, experiment: str, params: bool = True) -> TableSpec:
    return TableSpec(name, title, csv, experiment, "math", "QKV", MATH_COLUMNS, params=params)


SPECS = {
    spec.name: spec
    for spec in [
        TableSpec(
            "table1", "Table 1: GLUE, RoBERTa-base/large", "table1_glue.csv", "table1", "glue", "QV", GLUE_COLUMNS
        ),
        _math("table2", "Table 2: mathematical reasoning (Math10K)", "table2_math.csv", "table2"),
        TableSpec(
            "table3",
            "Table 3: commonsense reasoning (Commonsense170K)",
            "table3_commonsense.csv",
            "table3",
            "commonsense",
            "QKV",
            COMMONSENSE_COLUMNS,
        ),
        TableSpec(
            "table4",
            "Table 4: adapter parameters (M), peak training memory (GiB), training time of one epoch "
            "(min), LLaMA-3-8B on Math10K",
            "table4_efficiency.csv",
            "table4",
            "efficiency",
            "QKV",
            EFFICIENCY_COLUMNS,
            average=None,
            params=False,
        ),
        TableSpec(
            "table5",
            "Table 5: standard deviation over seeds, GLUE",
            "table5_glue_std.csv",
            "table1",
            "glue",
            "QV",
            GLUE_COLUMNS,
            average=None,
            params=False,
            statistic="std",
        ),
        _math(
            "table7",
            "Table 7: BoRA (r=8, b=16) without Exp / without Norm, Math10K",
            "table7_ablation_exp_norm.csv",
            "table7",
            params=False,
        ),
        _math("table8", "Table 8: target modules, LLaMA-3-8B on Math10K", "table8_target_modules.csv", "table8"),
        _math("table9", "Table 9: ranks x blocks, LLaMA-3-8B on Math10K", "table9_rank_blocks.csv", "table9"),
        # The SBoRA paper (arXiv 2407.05413), numbers as its repository's README reports them; its own protocol.
        TableSpec(
            "sbora-math",
            "SBoRA: arithmetic reasoning (math_10k), LLaMA-7B and LLaMA-3-8B, q k v up down",
            "sbora_math.csv",
            "sbora-math",
            "sbora-math",
            "QKVUD",
            MATH_COLUMNS,
        ),
        TableSpec(
            "sbora-commonsense",
            "SBoRA: commonsense reasoning (commonsense_170k), LLaMA-7B and LLaMA-3-8B, q k v up down",
            "sbora_commonsense.csv",
            "sbora-commonsense",
            "sbora-commonsense",
            "QKVUD",
            COMMONSENSE_COLUMNS,
        ),
    ]
}
# Table 6: the std of each reasoning table's Avg column, per model (columns <benchmark>_<model>).
TABLE6 = TableSpec(
    "table6",
    "Table 6: standard deviation of the average accuracy over seeds, math and commonsense",
    "table6_reasoning_avg_std.csv",
    "table2",
    "math",
    "QKV",
    (),
    params=False,
    statistic="std",
)
PAPER_TABLES = [*SPECS, "table6"]
COMPARE_COLUMNS = [
    "table",
    "row",
    "model",
    "label",
    "r",
    "b",
    "targets",
    "method_tag",
    "column",
    "paper",
    "ours",
    "spread",
    "n",
    "planned",
    "diff",
    "params_paper",
    "params_ours",
]


@functools.cache
def planned(experiment: str, overrides: tuple[str, ...] = ()) -> tuple[dict, ...]:
    """The resolved config of every run ``python -m bora.train -m experiment=<experiment> <overrides>`` launches."""
    from bora.config.sweep import compose_jobs, expand_sweep

    return tuple(compose_jobs(expand_sweep([f"experiment={experiment}", *overrides])))


def planned_seeds(experiment: str, overrides: Sequence[str] = ()) -> int:
    """How many seeds an experiment's sweep plans per configuration."""
    return len({config["seed"] for config in planned(experiment, tuple(overrides))}) or 1


def _key(config: dict) -> tuple:
    return config["model"]["name"], config["task"]["name"], method_tag(config["method"]), config["seed"]


def membership(
    runs: pd.DataFrame, experiment_name: str, experiment: str, overrides: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the successful runs of ``experiment_name`` whose identity ``experiment`` plans, the other runs found there
    with a ``reason`` each). Planning is skipped when there are no runs (an empty table costs nothing)."""
    found = runs[runs["experiment"] == experiment_name] if len(runs) else runs
    if found.empty:
        return found, pd.DataFrame(columns=["run_dir", "status", "reason"])
    configs = planned(experiment, tuple(overrides))
    identities = {run_identity(c) for c in configs}
    by_key = {_key(c): c for c in configs}
    inside = (found["status"] == "success") & found["identity"].isin(identities)
    outside = []
    for _, run in found[~inside].iterrows():
        if run["status"] != "success":
            reason = f"{run['status']}: {run['error']}" if run["error"] else str(run["status"])
        else:
            twin = by_key.get(_key(run["config"]))
            if twin is None:
                reason = f"not planned by conf/experiment/{experiment}.yaml (no run of this model, task, method, seed)"
            else:
                keys = differing_keys(identity_values(twin), identity_values(run["config"]))
                reason = f"not planned by conf/experiment/{experiment}.yaml: differs at {', '.join(keys[:6])}"
        outside.append({"run_dir": run["run_dir"], "status": run["status"], "reason": reason})
    return found[inside], pd.DataFrame(outside, columns=["run_dir", "status", "reason"])
