"""The paper's tables, reproduced from result files next to the paper's numbers.

``python -m bora.tables``                    every table, figure and the claims check into ``<outputs>/tables/``
``python -m bora.tables --table table2``     one of them (table1-9, figure3b, figure4, claims), printed as well
``python -m bora.tables --experiment smoke`` the summary of one experiment's runs (every metric, mean ± std)

A table is a pure function of the ``result.json`` files: ``compare(spec, runs)`` gives one line per paper row x
column with the paper's value, our mean, standard deviation and number of seeds, the planned number of seeds and
the difference. Cells without a successful run stay NaN (rendered "—"), never 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bora.aggregate import Column, load_results, per_seed, seed_stats, status_counts, successful
from bora.errors import BoraError
from bora.paper import method_label, paper_table, paper_tag

GLUE = [("RTE", "rte"), ("MRPC", "mrpc"), ("STS-B", "stsb"), ("CoLA", "cola"), ("SST-2", "sst2"), ("QNLI", "qnli"),
        ("MNLI", "mnli"), ("QQP", "qqp")]
MATH = [("AddSub", "AddSub"), ("MultiArith", "MultiArith"), ("SingleEq", "SingleEq"), ("GSM8K", "gsm8k"),
        ("AQuA", "AQuA"), ("SVAMP", "SVAMP")]
COMMONSENSE = [("BoolQ", "boolq"), ("PIQA", "piqa"), ("SIQA", "social_i_qa"), ("HellaSwag", "hellaswag"),
               ("WinoGrande", "winogrande"), ("ARC-c", "ARC-Challenge"), ("ARC-e", "ARC-Easy"), ("OBQA", "openbookqa")]
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


SPECS = {spec.name: spec for spec in [
    TableSpec("table1", "Table 1: GLUE, RoBERTa-base/large", "table1_glue.csv", "table1", "glue", "QV", GLUE_COLUMNS),
    _math("table2", "Table 2: mathematical reasoning (Math10K)", "table2_math.csv", "table2"),
    TableSpec("table3", "Table 3: commonsense reasoning (Commonsense170K)", "table3_commonsense.csv", "table3",
              "commonsense", "QKV", COMMONSENSE_COLUMNS),
    TableSpec("table4", "Table 4: adapter parameters (M), peak training memory (GiB), training time of one epoch "
              "(min), LLaMA-3-8B on Math10K", "table4_efficiency.csv", "table4", "efficiency", "QKV",
              EFFICIENCY_COLUMNS, average=None, params=False),
    TableSpec("table5", "Table 5: standard deviation over seeds, GLUE", "table5_glue_std.csv", "table1", "glue", "QV",
              GLUE_COLUMNS, average=None, params=False, statistic="std"),
    _math("table7", "Table 7: BoRA (r=8, b=16) without Exp / without Norm, Math10K", "table7_ablation_exp_norm.csv",
          "table7", params=False),
    _math("table8", "Table 8: target modules, LLaMA-3-8B on Math10K", "table8_target_modules.csv", "table8"),
    _math("table9", "Table 9: ranks x blocks, LLaMA-3-8B on Math10K", "table9_rank_blocks.csv", "table9"),
]}
# Table 6: the std of each reasoning table's Avg column, per model (columns <benchmark>_<model>).
TABLE6 = TableSpec("table6", "Table 6: standard deviation of the average accuracy over seeds, math and commonsense",
                   "table6_reasoning_avg_std.csv", "table2", "math", "QKV", (), params=False, statistic="std")
PAPER_TABLES = [*SPECS, "table6"]
COMPARE_COLUMNS = ["table", "row", "model", "label", "r", "b", "targets", "method_tag", "column", "paper", "ours",
                   "spread", "n", "planned", "diff", "params_paper", "params_ours"]


def planned_seeds(experiment: str) -> int:
    """How many seeds an experiment file sweeps (``hydra.sweeper.params.seed``; 1 when it sweeps none)."""
    from bora.cli import load_config

    from hydra.core.override_parser.overrides_parser import OverridesParser

    seeds = (load_config([f"experiment={experiment}"], hydra=True).hydra.sweeper.params or {}).get("seed")
    if seeds is None:
        return 1
    override = OverridesParser.create().parse_override(f"seed={seeds}")
    return len(list(override.sweep_string_iterator())) if override.is_sweep_override() else 1


def _stats(spec: TableSpec, runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    runs = runs[runs["experiment"] == spec.experiment_name]
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


def compare(spec: TableSpec, runs: pd.DataFrame, planned: int) -> pd.DataFrame:
    """One line per paper row x column, in the paper's order: paper value, ours, spread (std), seeds, difference."""
    stats, params = _stats(spec, runs)
    lines = []
    for index, row in paper_table(spec.paper_csv).iterrows():
        tag = paper_tag(row, spec.targets)
        for column in spec.labels:
            cell = _cell(spec, stats, (row["model"], tag, column))
            lines.append({
                "table": spec.name, "row": index, "model": row["model"], "label": method_label(row), "r": row["r"],
                "b": row["b"],
                "targets": row.get("target_modules", spec.targets), "method_tag": tag, "column": column,
                "paper": float(row[column]), **cell, "planned": planned, "diff": cell["ours"] - float(row[column]),
                "params_paper": row.get("params_M"), "params_ours": params.get((row["model"], tag)),
            })
    return pd.DataFrame(lines, columns=COMPARE_COLUMNS)


def compare_table6(runs: pd.DataFrame, planned: int) -> pd.DataFrame:
    """Table 6: the std over seeds of Table 2's and Table 3's Avg, one column per benchmark x model."""
    sources = {"math": SPECS["table2"], "commonsense": SPECS["table3"]}
    stats = {bench: _stats(spec, runs)[0] for bench, spec in sources.items()}
    lines = []
    for index, row in paper_table(TABLE6.paper_csv).iterrows():
        tag = paper_tag(row, "QKV")
        for column in [c for c in row.index if "_" in c]:
            bench, model = column.split("_", 1)
            cell = _cell(TABLE6, stats[bench], (model, tag, "Avg"))
            lines.append({
                "table": "table6", "row": index, "model": "", "label": method_label(row), "r": row["r"],
                "b": row["b"], "targets": "QKV",
                "method_tag": tag, "column": column, "paper": float(row[column]), **cell, "planned": planned,
                "diff": cell["ours"] - float(row[column]), "params_paper": None, "params_ours": None,
            })
    return pd.DataFrame(lines, columns=COMPARE_COLUMNS)


def paper_comparison(name: str, runs: pd.DataFrame) -> pd.DataFrame:
    """The comparison frame of one paper table (``table1`` ... ``table9``)."""
    if name == "table6":
        return compare_table6(runs, planned_seeds(TABLE6.experiment))
    if name not in SPECS:
        raise BoraError(f"unknown table {name!r}; choose one of: {', '.join(PAPER_TABLES)}")
    spec = SPECS[name]
    return compare(spec, runs, planned_seeds(spec.experiment))


def table_spec(name: str) -> TableSpec:
    return TABLE6 if name == "table6" else SPECS[name]


def write_outputs(stem: Path, markdown: str, latex: str, frame: pd.DataFrame) -> list[Path]:
    """``<stem>.md``, ``<stem>.tex`` and ``<stem>.csv``; returns the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".md"), stem.with_suffix(".tex"), stem.with_suffix(".csv")]
    paths[0].write_text(markdown + "\n")
    paths[1].write_text(latex + "\n")
    frame.to_csv(paths[2], index=False)
    return paths


def render_paper_table(name: str, runs: pd.DataFrame, out_dir: Path) -> tuple[str, list[Path]]:
    from bora import render

    spec = table_spec(name)
    frame = paper_comparison(name, runs)
    markdown = render.comparison_markdown(frame, spec)
    return markdown, write_outputs(out_dir / name, markdown, render.comparison_latex(frame, spec), frame)


def render_experiment(experiment: str, runs: pd.DataFrame, out_dir: Path) -> tuple[str, list[Path]]:
    from bora import render
    from bora.aggregate import summarize

    chosen = runs[runs["experiment"] == experiment]
    summary = summarize(chosen)
    markdown = render.summary_markdown(summary, chosen)
    return markdown, write_outputs(out_dir / f"summary-{experiment}", markdown, render.summary_latex(summary), summary)


def render_all(outputs: Path, out_dir: Path) -> list[Path]:
    """Every paper table, the summary of every experiment found, the figures and the claims check."""
    from bora import claims, figures

    runs = load_results(outputs)
    written: list[Path] = []
    for name in PAPER_TABLES:
        written += render_paper_table(name, runs, out_dir)[1]
    for experiment in sorted(runs["experiment"].dropna().unique()):
        written += render_experiment(experiment, runs, out_dir)[1]
    written += figures.render_figures(runs, out_dir, outputs)
    written += claims.render_claims(runs, out_dir)[1]
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", default=os.environ.get("BORA_OUTPUT_DIR", "outputs"), help="the runs' root")
    parser.add_argument("--out", default=None, help="where tables go (default: <outputs>/tables)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--experiment", help="summarise one experiment_name's runs (printed)")
    group.add_argument("--table", help=f"one of {', '.join(PAPER_TABLES)}, figure3b, figure4, claims (printed)")
    args = parser.parse_args(argv)
    outputs = Path(args.outputs)
    out_dir = Path(args.out) if args.out else outputs / "tables"
    try:
        text, written = _run(args, outputs, out_dir)
    except BoraError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {len(written)} files into {out_dir}: {', '.join(p.name for p in written)}\n")
    print(text)


def _run(args, outputs: Path, out_dir: Path) -> tuple[str, list[Path]]:
    """(the text to print, the files written) of one command line."""
    from bora import claims, figures

    if args.experiment:
        runs = load_results(outputs, [args.experiment])
        if runs.empty:
            raise BoraError(f"no result.json under {outputs / args.experiment}; run the experiment first "
                            f"(python -m bora.train -m experiment=...) or pass --outputs DIR")
        markdown, written = render_experiment(args.experiment, runs, out_dir)
        return f"{markdown}\n\nruns by status: {status_counts(runs)} (only successful runs enter the table)", written
    runs = load_results(outputs)
    if args.table in PAPER_TABLES:
        return render_paper_table(args.table, runs, out_dir)
    if args.table in figures.FIGURES:
        written = figures.render_figure(args.table, runs, out_dir, outputs)
        return f"{args.table}: {', '.join(str(p) for p in written) or 'nothing to plot yet'}", written
    if args.table == "claims":
        return claims.render_claims(runs, out_dir)
    if args.table:
        raise BoraError(f"unknown table {args.table!r}; choose one of: {', '.join(PAPER_TABLES)}, "
                        f"{', '.join(figures.FIGURES)}, claims")
    written = render_all(outputs, out_dir)
    counts = status_counts(runs) if not runs.empty else {}
    return (f"rendered {len(PAPER_TABLES)} paper tables, the figures, the claims check and each experiment's summary "
            f"from {len(runs)} runs under {outputs} (by status: {counts})"), written


if __name__ == "__main__":
    main()
