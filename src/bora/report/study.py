"""A study: a paper table's method rows rerun on another model (e.g. ``cpu-glue``: Table 1 on MiniLM, on a CPU).

Its numbers cannot be compared with the paper's cell by cell (another model, another protocol), but its *claims*
can: the paper's headline deltas (BoRA minus LoRA, ...) are recomputed on the study's runs, seed by seed, beside the
paper's own deltas on the same columns. Rendered from the committed result files (``results/<study>/``):

- the main table: per method row, #Params and mean ±std over seeds per task, and the Avg of the tasks;
- the claims: the estimate with its 95% interval, p (Holm-adjusted over the claims), the smallest effect the design
  detects, and a verdict against 0 and the paper's effect (``bora.report.inference``);
- BoRA's Sigma statistics per run (largest entry, Mav(sigma)), and whether they track the score;
- Table 4's columns on this machine: training time and peak memory per method, and their ratio to LoRA (r=8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bora.report import inference
from bora.report.aggregate import Column, per_seed, seed_stats
from bora.report.claims import estimate_cells, estimate_columns, with_verdicts
from bora.report.paper import method_label, paper_table, paper_tag
from bora.report.render import MISSING, excluded_markdown, latex_table, number, ours_cell, write_outputs
from bora.report.specs import KEYS, membership, planned_seeds


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    experiment: str  # conf/experiment/<experiment>.yaml plans its runs
    experiment_name: str
    model: str
    paper_csv: str
    paper_models: tuple[str, ...]
    targets: str
    columns: tuple[Column, ...]
    results: str  # where its result files are committed, relative to the project root


COMMONSENSE4 = (("BoolQ", "boolq"), ("ARC-c", "ARC-Challenge"), ("ARC-e", "ARC-Easy"), ("OBQA", "openbookqa"))
GLUE4 = (("MRPC", "mrpc"), ("STS-B", "stsb"), ("CoLA", "cola"), ("SST-2", "sst2"))
STUDIES = {
    study.name: study
    for study in [
        Study(
            "cpu-glue",
            "Table 1 at CPU scale: all-MiniLM-L6-v2 on GLUE dev sets (MRPC, STS-B, CoLA, SST-2), 3 seeds",
            "cpu-glue",
            "cpu-glue",
            "minilm",
            "table1_glue.csv",
            ("roberta-base", "roberta-large"),
            "QV",
            tuple(Column(label, task=task, source="value") for label, task in GLUE4),
            "results",
        ),
        # rendered by bora.report.generation (adds the untrained and majority rows and the decoding table)
        Study(
            "cpu-commonsense",
            "Table 3 at CPU scale: SmolLM2-135M-Instruct on BoolQ, ARC-c, ARC-e, OBQA (a seeded 500 of each), 2 seeds",
            "cpu-commonsense",
            "cpu-commonsense",
            "smollm2-135m",
            "table3_commonsense.csv",
            ("gemma-7b", "llama-3-8b", "qwen2.5-14b"),
            "QKV",
            tuple(Column(label, subtask=name, task="cpu-commonsense") for label, name in COMMONSENSE4),
            "results",
        ),
    ]
}
BORA8, BORA16 = {"method": "BoRA", "r": 8, "b": 8}, {"method": "BoRA", "r": 8, "b": 16}
LORA8, LORA32 = {"method": "LoRA", "r": 8}, {"method": "LoRA", "r": 32}
SIMILAR_PARAMS = [
    LORA8,
    {"method": "DoRA", "r": 8},
    {"method": "MELoRA", "r": 8, "b": 4},
    {"method": "HydraLoRA", "r": 4},
]  # the other methods of Table 1 with at most BoRA's #Params


def _row(fields: dict) -> pd.Series:
    return pd.Series({"b": float("nan"), **fields})


class StudyCells:
    """Per-seed Avg (over the study's columns) of each method row: ours from the runs, the paper's from its table."""

    def __init__(self, study: Study, runs: pd.DataFrame):
        self.study = study
        chosen = membership(runs, study.experiment_name, study.experiment)[0]
        self.seeds = per_seed(chosen, study.columns, KEYS, average="Avg")
        self.paper = paper_table(study.paper_csv)
        labels = [c.label for c in study.columns]
        self.paper["Avg4"] = self.paper[labels].mean(axis=1)

    def ours(self, fields: dict) -> pd.Series:
        tag = paper_tag(_row(fields), self.study.targets)
        cells = self.seeds[(self.seeds["model"] == self.study.model) & (self.seeds["method_tag"] == tag)]
        return pd.Series(cells["Avg"].astype(float).values, index=cells["seed"].astype(int).values).dropna()

    def paper_value(self, fields: dict, column: str) -> float:
        """The paper's ``column`` (``Avg``: its 8 tasks; ``Avg4``: ours) of a row, averaged over its models."""
        tag = paper_tag(_row(fields), self.study.targets)
        rows = self.paper[[paper_tag(row, self.study.targets) == tag for _, row in self.paper.iterrows()]]
        rows = rows[rows["model"].isin(self.study.paper_models)]
        return float(rows[column].mean()) if len(rows) else float("nan")


@dataclass(frozen=True)
class StudyClaim:
    name: str
    statement: str
    text: str  # what the paper's text says
    kind: str  # gain | not_worse (bora.report.inference.verdict)
    better: dict
    baseline: dict | Callable[[StudyCells, str], dict]  # a row, or a function picking one (the best baseline)


def _best_similar(cells: StudyCells, source: str) -> dict:
    """The best of ``SIMILAR_PARAMS`` by mean Avg: in our runs (``ours``) or in the paper (``Avg`` / ``Avg4``)."""

    def score(fields: dict) -> float:
        if source == "ours":
            values = cells.ours(fields)
            return values.mean() if len(values) else -math.inf
        return cells.paper_value(fields, source)

    return max(SIMILAR_PARAMS, key=score)


CLAIMS = [
    StudyClaim("bora8_vs_lora8", "BoRA (r=8, b=8) minus LoRA (r=8), Avg", "about +2", "gain", BORA8, LORA8),
    StudyClaim("bora16_vs_lora8", "BoRA (r=8, b=16) minus LoRA (r=8), Avg", "about +2", "gain", BORA16, LORA8),
    StudyClaim(
        "bora16_vs_lora32",
        "BoRA (r=8, b=16) minus LoRA (r=32), Avg",
        "comparable or superior",
        "not_worse",
        BORA16,
        LORA32,
    ),
    StudyClaim(
        "bora8_vs_lora32",
        "BoRA (r=8, b=8) minus LoRA (r=32), Avg",
        "comparable or superior",
        "not_worse",
        BORA8,
        LORA32,
    ),
    StudyClaim(
        "bora16_vs_best_similar",
        "BoRA (r=8, b=16) minus the best of LoRA (r=8), DoRA, MELoRA, HydraLoRA (similar #Params), Avg",
        "up to +1 (base), +2 (large)",
        "gain",
        BORA16,
        _best_similar,
    ),
    StudyClaim(
        "bora16_vs_bora8", "BoRA (r=8, b=16) minus BoRA (r=8, b=8), Avg", "doubling b helps", "gain", BORA16, BORA8
    ),
]


def _baseline(claim, cells: StudyCells, source: str) -> dict:
    """The claim's baseline row: fixed, or chosen from ``source``'s numbers (``ours`` or a paper column)."""
    return claim.baseline(cells, source) if callable(claim.baseline) else claim.baseline


def _label(fields: dict) -> str:
    return method_label(_row(fields))


QuestionVariance = Callable[[str, str, list[int]], tuple[float, int]]


def check_study_claims(
    study: Study, runs: pd.DataFrame, question_variance: QuestionVariance | None = None
) -> pd.DataFrame:
    """One row per claim: the paper's delta on its 8 tasks and on the study's tasks (mean over its models), ours
    (the per-seed paired difference: mean, 95% interval, p, Holm's p, the smallest detectable effect), the verdict
    against 0 and the paper's delta on the study's tasks, and the two rows' method tags. ``question_variance``
    (generation studies): the variance the draw of test questions puts on the mean difference of two rows over the
    given seeds and how many questions it rests on (``bora.report.generation.paired_question_variance``)."""
    cells = StudyCells(study, runs)
    rows = []
    for claim in CLAIMS:
        ours_base = _baseline(claim, cells, "ours")
        values = (cells.ours(claim.better) - cells.ours(ours_base)).dropna()
        better_tag, baseline_tag = (paper_tag(_row(fields), study.targets) for fields in (claim.better, ours_base))
        question_var, questions = (
            question_variance(better_tag, baseline_tag, sorted(int(s) for s in values.index))
            if question_variance is not None and len(values)
            else (0.0, 0)
        )
        est = inference.estimate(list(values), 0.0 if math.isnan(question_var) else question_var, questions)
        paper = {
            column: cells.paper_value(claim.better, column) - cells.paper_value(_baseline(claim, cells, column), column)
            for column in ("Avg", "Avg4")
        }
        rows.append(
            {
                "claim": claim.name,
                "kind": claim.kind,
                "statement": claim.statement,
                "paper_text": claim.text,
                "paper_8_tasks": paper["Avg"],
                "paper_our_tasks": paper["Avg4"],
                **estimate_columns(est),
                "baseline_ours": _label(ours_base),
                "better_tag": better_tag,
                "baseline_tag": baseline_tag,
            }
        )
    return with_verdicts(pd.DataFrame(rows), paper_column="paper_our_tasks")


def claims_display(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims table as a study shows it (cpu-glue and the generation studies alike)."""
    return pd.DataFrame(
        {
            "claim": claims["statement"],
            "paper, 8 tasks": claims["paper_8_tasks"].map(lambda v: f"{v:+.2f}"),
            "paper, our 4 tasks": claims["paper_our_tasks"].map(lambda v: f"{v:+.2f}"),
            **estimate_cells(claims),
        }
    )


def claims_note(claims: pd.DataFrame, sources: str) -> str:
    """The text under a claims table: what the columns are, Holm's family, the verdict rules, and which gain claims
    the design could ever resolve (the paper's effect on the study's tasks at or above the detectable size)."""
    gains = claims[claims["kind"] == "gain"]
    resolvable = gains[gains["paper_our_tasks"].abs() >= gains["detectable"]]
    can = (
        f"Of the {len(gains)} gain claims this design could detect the paper's effect on these tasks for "
        + (f"{len(resolvable)}: " + "; ".join(resolvable["statement"]) if len(resolvable) else "none")
        + "."
    )
    return (
        f"Ours: the per-seed difference of Avg (paired by seed), its mean and 95% confidence interval from {sources}; "
        f"p: two-sided, Holm-adjusted over the {len(gains)} gain claims in brackets. {inference.RULES} {can}"
    )


def study_table(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """One line per method row (the paper's order) x column: ours (mean, std, seeds), with #Params."""
    chosen = membership(runs, study.experiment_name, study.experiment)[0]
    seeds = per_seed(chosen, study.columns, KEYS, average="Avg")
    stats = seed_stats(seeds, KEYS).set_index([*KEYS, "column"])
    params = chosen.dropna(subset=["adapter_params"]).groupby("method_tag")["adapter_params"].first()
    planned = planned_seeds(study.experiment) if len(chosen) else 0
    paper = paper_table(study.paper_csv)
    first_model = paper[paper["model"] == study.paper_models[0]]
    lines = []
    for _, row in first_model.iterrows():
        tag = paper_tag(row, study.targets)
        for column in [c.label for c in study.columns] + ["Avg"]:
            key = (study.model, tag, column)
            mean, std, n = stats.loc[key, ["mean", "std", "n"]] if key in stats.index else (math.nan, math.nan, 0)
            lines.append(
                {
                    "label": method_label(row),
                    "method_tag": tag,
                    "column": column,
                    "ours": mean,
                    "spread": std,
                    "n": int(n),
                    "planned": planned,
                    "params": params.get(tag),
                }
            )
    return pd.DataFrame(lines)


def sigma_table(study: Study, runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per BoRA run: the largest Sigma entry over its layers, the smallest Mav(sigma), the layers above the warning
    threshold, and its score; plus, per task, the Spearman correlation of log(largest Sigma) with the score."""
    chosen = membership(runs, study.experiment_name, study.experiment)[0]
    chosen = chosen[chosen["method"] == "bora"]
    rows = []
    for _, run in chosen.iterrows():
        from bora.record import read_record

        summary = read_record(run["run_dir"]).adapter_stats.get("sigma", {}).get("summary", {})
        rows.append(
            {
                "method_tag": run["method_tag"],
                "task": run["task"],
                "seed": run["seed"],
                "score": run["value"],
                "sigma_max": summary.get("sigma_max"),
                "sigma_max_median_layer": summary.get("sigma_max_median"),
                "mav_min": summary.get("mav_min"),
                "layers_over_warn": summary.get("layers_over_warn"),
                "warn": summary.get("warn_threshold"),
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "method_tag",
            "task",
            "seed",
            "score",
            "sigma_max",
            "sigma_max_median_layer",
            "mav_min",
            "layers_over_warn",
            "warn",
        ],
    )
    correlation = {}
    for task, part in frame.groupby("task"):
        part = part.dropna(subset=["sigma_max", "score"])
        if len(part) >= 3 and part["sigma_max"].nunique() > 1 and part["score"].nunique() > 1:
            rho = scipy_stats.spearmanr(np.log(part["sigma_max"].astype(float)), part["score"].astype(float))[0]
            correlation[task] = (float(rho), len(part))
    return frame, correlation


def efficiency_table(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """Table 4's columns per method: adapter #Params, training time summed over the study's tasks (each task's mean
    over seeds), peak memory (the largest over its runs), and both as a ratio to LoRA (r=8). A method missing a
    task has no time or memory yet (a partial sum would not compare)."""
    columns = ["label", "params", "time_min", "time_x_lora", "memory_GiB", "memory_x_lora"]
    chosen = membership(runs, study.experiment_name, study.experiment)[0]
    if chosen.empty:
        return pd.DataFrame(columns=columns)
    tasks = {c.task for c in study.columns}
    per_task = chosen.groupby(["method_tag", "task"])["train_s"].mean().unstack()
    complete = per_task.reindex(columns=sorted(tasks)).notna().all(axis=1)
    time_min = (per_task.sum(axis=1) / 60).where(complete)
    memory = (chosen.groupby("method_tag")["peak_train_bytes"].max() / 2**30).where(complete)
    params = chosen.groupby("method_tag")["adapter_params"].first()
    paper = paper_table(study.paper_csv)
    first_model = paper[paper["model"] == study.paper_models[0]]
    lora = paper_tag(_row(LORA8), study.targets)

    def ratio(values: pd.Series, tag: str):
        value, base = values.get(tag), values.get(lora)
        return value / base if value is not None and base is not None and not pd.isna(value) and base else None

    rows = []
    for _, row in first_model.iterrows():
        tag = paper_tag(row, study.targets)
        rows.append(
            {
                "label": method_label(row),
                "params": params.get(tag),
                "time_min": time_min.get(tag),
                "time_x_lora": ratio(time_min, tag),
                "memory_GiB": memory.get(tag),
                "memory_x_lora": ratio(memory, tag),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _params(value) -> str:
    return MISSING if value is None or pd.isna(value) else f"{int(value):,}"


def render_study(name: str, runs: pd.DataFrame, out_dir: Path, root: Path | None = None) -> tuple[str, list[Path]]:
    """The study's Markdown (main table, the runs it leaves out, claims, Sigma, efficiency) and its files (md, tex,
    csv per section); ``root``: the results folder (left-out runs are shown relative to it)."""
    study = STUDIES[name]
    left_out = membership(runs, study.experiment_name, study.experiment)[1]
    table = study_table(study, runs)
    display = []
    for label, lines in table.groupby("label", sort=False):
        row = {"method": label, "#Params": _params(lines["params"].iloc[0])}
        row.update({line["column"]: ours_cell(line) for _, line in lines.iterrows()})
        display.append(row)
    main = pd.DataFrame(display)
    claims = check_study_claims(study, runs)
    shown = claims_display(claims)
    shown.insert(1, "paper (text)", claims["paper_text"])
    sigma, correlation = sigma_table(study, runs)
    efficiency = efficiency_table(study, runs)
    parts = [
        f"### {study.title}",
        main.to_markdown(index=False, disable_numparse=True),
        "Scores x100 (accuracy; STS-B Pearson; CoLA Matthews correlation), mean ±std over seeds (ddof=1) of our "
        f"runs of conf/experiment/{study.experiment}.yaml; Avg: the mean of the four, per seed; #Params: adapter "
        "parameters (no task head); [n/planned]: fewer seeds finished than planned."
        + excluded_markdown(left_out, root),
        "#### The paper's Table 1 claims, recomputed",
        shown.to_markdown(index=False, disable_numparse=True),
        "Paper: the same difference in the paper's Table 1, averaged over RoBERTa-base and -large, on its 8 tasks "
        "and on our 4 (the verdicts compare with the latter). Best of the similar-#Params baselines in our runs: "
        f"{claims['baseline_ours'].iloc[4]}. " + claims_note(claims, "the seeds (paired t)"),
    ]
    parts += [_sigma_markdown(sigma, correlation), _efficiency_markdown(efficiency)]
    markdown = "\n\n".join(parts)
    out_dir = Path(out_dir)
    written = write_outputs(out_dir / name, markdown, latex_table(main, study.title), table)
    claims.to_csv(out_dir / f"{name}-claims.csv", index=False)
    sigma.to_csv(out_dir / f"{name}-sigma.csv", index=False)
    efficiency.to_csv(out_dir / f"{name}-efficiency.csv", index=False)
    written += [out_dir / f"{name}-{part}.csv" for part in ("claims", "sigma", "efficiency")]
    return markdown, written


def _sigma_markdown(sigma: pd.DataFrame, correlation: dict) -> str:
    if sigma.empty:
        return "#### BoRA's Sigma\n\nNo BoRA run yet."
    rows = []
    for (tag, task), part in sigma.groupby(["method_tag", "task"], sort=True):
        rows.append(
            {
                "BoRA": tag.split("_")[2],
                "task": task,
                "runs": len(part),
                "largest Sigma entry (max over runs)": f"{part['sigma_max'].max():.3g}",
                "median layer's largest entry (median)": f"{part['sigma_max_median_layer'].median():.3g}",
                "smallest Mav(sigma)": f"{part['mav_min'].min():.3g}",
                "runs with a layer above 1e4": str(int((part["layers_over_warn"] > 0).sum())),
            }
        )
    text = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    tracks = ", ".join(f"{task} {rho:+.2f} (n={n})" for task, (rho, n) in sorted(correlation.items()))
    return (
        f"#### BoRA's Sigma: does it blow up, and does that track the score?\n\n{text}\n\n"
        f"Sigma entries start in [0.14, 7.4]; the warning threshold is 1e4. Spearman correlation between log(largest "
        f"Sigma entry) and the score over the BoRA runs of each task: {tracks or 'not enough runs'}."
    )


def _efficiency_markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "#### Time and memory on this CPU\n\nNo runs yet."
    shown = pd.DataFrame(
        {
            "method": frame["label"],
            "#Params": frame["params"].map(_params),
            "train time, 4 tasks (min)": frame["time_min"].map(lambda v: number(v, 1)),
            "time / LoRA (r=8)": frame["time_x_lora"].map(lambda v: number(v, 3)),
            "peak memory (GiB)": frame["memory_GiB"].map(lambda v: number(v, 2)),
            "memory / LoRA (r=8)": frame["memory_x_lora"].map(lambda v: number(v, 3)),
        }
    )
    return (
        "#### Time and memory on this CPU (Table 4's columns)\n\n"
        + shown.to_markdown(index=False, disable_numparse=True)
        + "\n\nTraining wall time summed over the four tasks, mean over seeds; peak resident memory of a training "
        "run (largest over the runs of the method). The time columns are not a cost measure: wall time of "
        "runs that shared the 2-core machine with each other and with whatever else ran then, so the same "
        "config took up to 6x longer on one seed than on another; memory is unaffected. "
        "The cost comparison is the interleaved step benchmark (`python -m bora.bench`) and the CPU time of "
        "quiet runs in the cpu-ablations study."
    )
