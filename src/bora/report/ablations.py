"""cpu-ablations: the paper's ablations (Table 9's r x b grid, Table 7's w/o Exp / w/o Norm, Figures 3(b) and 4) at
CPU scale, rendered from the committed result files of three sweeps:

- ``conf/experiment/cpu-ablations.yaml``: r in {2, 8} x {LoRA, BoRA b=2..32} x {MRPC, SST-2} x seeds 0-2;
- ``conf/experiment/cpu-ablations-table7.yaml``: BoRA r=8 b=16 and its w/o Exp / w/o Norm rows;
- ``conf/experiment/cpu-ablations-spectra.yaml``: cpu-glue's shared runs retrained at seed 0 (their records predate
  the singular values every run now records), which also tells whether a run reproduces bit for bit;
- ``conf/experiment/cpu-ablations-figure4.yaml``: BoRA r=8 b=16 and b=32 retrained with full spectra (records once
  kept the largest 64 values of each layer, the whole spectrum only up to a bound of 64), for Figure 4's measures.

A run enters when its identity is one the sweep plans and it succeeded, wherever it is stored (runs shared with
cpu-glue stay in ``results/cpu-glue``: ``reuse_from``). Scores x100 (MRPC and SST-2 accuracy). Costs are CPU time
(process time over all threads, ``train.cpu_time_s``) of quiet runs only (``cost_table``): a run that waited for
its core shows inflated wall time and, from shared caches, inflated CPU time too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bora.adapters.stats import PAPER_COUNT, PAPER_THRESHOLD, recorded_values
from bora.config.identity import run_identity
from bora.record import read_record
from bora.report import inference
from bora.report.aggregate import load_results, successful
from bora.report.claims import estimate_cells, estimate_columns, with_verdicts
from bora.report.paper import paper_table
from bora.report.render import MISSING, number
from bora.report.specs import planned, planned_seeds

NAME = "cpu-ablations"
GRID, TABLE7, SPECTRA = "cpu-ablations", "cpu-ablations-table7", "cpu-ablations-spectra"
FIGURE4 = "cpu-ablations-figure4"
SWEEPS = (GRID, TABLE7, SPECTRA, FIGURE4)
# experiment_names the runs are stored under
FOLDERS = ("cpu-ablations", "cpu-glue", "cpu-ablations-spectra", "cpu-ablations-figure4")
TASKS = (("MRPC", "mrpc"), ("SST-2", "sst2"))
WIDTH = 384  # MiniLM's hidden size: a query update is 384 x 384
RANK_TOLERANCE = 1e-2  # a singular value counts when above this fraction of the largest
FIGURE_DIR = "results/cpu-ablations/figures"  # relative to the project root; the study page shows the PNGs from here
PAPER_MODEL = "llama-3-8b"  # Table 9's only model
FIGURE4_BLOCKS = (16, 32)  # the BoRA rows whose rank the claims set against LoRA's
RANK_COLUMNS = ("query_layers", "rank", "entropy_rank", "normalised")
SPECTRAL = (
    *RANK_COLUMNS,
    "count_paper",
    "sum_squares",
    "layer_counts",
    "layer_sum_squares",
)  # a run's spectrum columns: from a rerun of the same identity where its own record lacks them


@dataclass(frozen=True)
class Runs:
    """The study's successful runs, one row each: ``grid``, ``table7``, ``spectra`` (the seed-0 reruns) and
    ``figure4`` (the full-spectrum reruns)."""

    grid: pd.DataFrame
    table7: pd.DataFrame
    spectra: pd.DataFrame
    planned: dict  # sweep -> number of runs it plans
    left_out: pd.DataFrame  # runs found in this study's folders that enter nothing: run_dir, status, reason
    figure4: pd.DataFrame = field(default_factory=pd.DataFrame)


def row_label(method: dict) -> str:
    if method["name"] == "lora":
        return "LoRA"
    label = f"BoRA b={method['blocks']}"
    if not method.get("use_exp", True):
        label += " w/o Exp"
    if not method.get("use_norm", True):
        label += " w/o Norm"
    return label


def _query_layers(spectrum: dict) -> list[dict]:
    return [layer for layer in spectrum.get("per_layer", []) if layer["layer"].endswith(".query")]


def paper_measures(layer: dict) -> tuple[float, float]:
    """(the count of singular values above 0.005, their sum of squares) of one layer record, the paper's Figure 4
    measures; NaN where the record cannot give them (it kept the largest 64 of more values)."""
    if PAPER_COUNT in layer:
        return float(layer[PAPER_COUNT]), float(layer["sum_squares"])
    values = recorded_values(layer)
    if layer.get("count", math.inf) > len(values):  # values beyond the recorded ones are unknown
        return math.nan, math.nan
    return float(sum(v > PAPER_THRESHOLD for v in values)), float(sum(v * v for v in values))


def _run_row(run: pd.Series) -> dict:
    method = run["config"]["method"]
    record = read_record(run["run_dir"])
    queries = _query_layers(record.adapter_stats.get("spectrum") or {})
    above = f"above_{RANK_TOLERANCE:g}"
    measures = [paper_measures(q) for q in queries]
    complete = bool(measures) and not any(math.isnan(count) for count, _ in measures)
    return {
        "stored_under": run["experiment"],
        "identity": run["identity"],
        "r": int(method["r"]),
        "b": int(method["blocks"]) if method["name"] == "bora" else 1,
        "row": row_label(method),
        "task": run["task"],
        "seed": int(run["seed"]),
        "score": 100 * float(run["value"]),
        "params": int(run["adapter_params"]),
        "cpu_s": record.train.cpu_time_s if record.train else None,
        "wall_s": run["train_s"],
        "query_layers": len(queries),
        "rank": float(np.median([q[above] for q in queries])) if queries else math.nan,
        "entropy_rank": float(np.median([q["effective_rank"] for q in queries])) if queries else math.nan,
        "bound": min(int(method["r"]) * (int(method["blocks"]) if method["name"] == "bora" else 1), WIDTH),
        "normalised": _median_normalised(queries),
        # Figure 4's measures, the mean over the query layers and per layer (NaN / empty: not in the record)
        "count_paper": float(np.mean([c for c, _ in measures])) if complete else math.nan,
        "sum_squares": float(np.mean([q for _, q in measures])) if complete else math.nan,
        "layer_counts": [c for c, _ in measures] if complete else [],
        "layer_sum_squares": [q for _, q in measures] if complete else [],
        "run_dir": run["run_dir"],
    }


def _median_normalised(queries: list[dict]) -> list[float]:
    """s_i / s_1 of the recorded top singular values, the median over the query layers, per index i."""
    if not queries:
        return []
    spectra = [recorded_values(q) for q in queries]
    length = min(len(values) for values in spectra)
    if not length:
        return []
    values = np.array([np.array(v[:length]) / v[0] for v in spectra if v[0] > 0])
    return [float(f"{v:.6g}") for v in np.median(values, axis=0)] if len(values) else []


def _chosen(runs: pd.DataFrame, sweep: str, stored_under: set[str]) -> pd.DataFrame:
    identities = {run_identity(config) for config in planned(sweep)}
    ok = successful(runs)
    ok = ok[ok["identity"].isin(identities) & ok["experiment"].isin(stored_under)]
    frame = pd.DataFrame([_run_row(run) for _, run in ok.iterrows()])
    return frame.drop_duplicates("identity") if len(frame) else frame


def study_runs(root: Path | str) -> Runs:
    """The runs under ``root`` (the project's ``results/``) that each of the four sweeps plans."""
    runs = load_results(root, list(FOLDERS))
    return Runs(
        grid=_chosen(runs, GRID, {GRID, "cpu-glue"}),
        table7=_chosen(runs, TABLE7, {GRID, "cpu-glue"}),
        spectra=_chosen(runs, SPECTRA, {SPECTRA}),
        planned={sweep: len(planned(sweep)) for sweep in SWEEPS},
        left_out=_left_out(runs),
        figure4=_chosen(runs, FIGURE4, {FIGURE4}),
    )


def _left_out(runs: pd.DataFrame) -> pd.DataFrame:
    """This study's own runs (not cpu-glue's) that no table takes: not a success, or not planned by its sweeps."""
    plans = {GRID: (GRID, TABLE7), SPECTRA: (SPECTRA,), FIGURE4: (FIGURE4,)}
    rows = []
    for folder, sweeps in plans.items():
        identities = {run_identity(config) for sweep in sweeps for config in planned(sweep)}
        for _, run in runs[runs["experiment"] == folder].iterrows():
            if run["status"] != "success":
                reason = f"{run['status']}: {run['error']}" if run["error"] else str(run["status"])
            elif run["identity"] not in identities:
                reason = "not planned by " + " or ".join(f"conf/experiment/{s}.yaml" for s in sweeps)
            else:
                continue
            rows.append({"run_dir": run["run_dir"], "status": run["status"], "reason": reason})
    return pd.DataFrame(rows, columns=["run_dir", "status", "reason"])


def _has(value) -> bool:
    if isinstance(value, list):
        return bool(value)
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def with_spectra(runs: Runs, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each spectrum column a run's record lacks taken from a rerun of the same identity (the
    full-spectrum reruns first, then the seed-0 reruns): cpu-glue's shared runs were recorded before spectra, and
    runs recorded before full spectra lack Figure 4's measures above a bound of 64."""
    reruns = [r.set_index("identity") for r in (runs.figure4, runs.spectra) if len(r)]
    if frame.empty or not reruns:
        return frame
    frame = frame.copy()
    recorded = frame["query_layers"] > 0  # (before the columns change below)
    for column in SPECTRAL:
        values = []
        for identity, value, has_spectrum in zip(frame["identity"], frame[column], recorded):
            # the rank columns are 0 / NaN / [] in a record without spectra; Figure 4's measures NaN / [] alone
            missing = not has_spectrum if column in RANK_COLUMNS else not _has(value)
            if missing:
                for rerun in reruns:
                    if identity in rerun.index and _has(rerun.at[identity, column]):
                        value = rerun.at[identity, column]
                        break
            values.append(value)
        frame[column] = values
    return frame


def per_seed_scores(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys`` x seed: each task's score and their mean (NaN unless the seed has both tasks)."""
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "seed", *[task for _, task in TASKS], "Avg"])
    wide = frame.pivot_table(index=[*keys, "seed"], columns="task", values="score").reset_index()
    for _, task in TASKS:
        if task not in wide:
            wide[task] = math.nan
    wide["Avg"] = wide[[task for _, task in TASKS]].mean(axis=1, skipna=False)
    return wide


def _cell(values: pd.Series, planned_seeds: int) -> str:
    values = values.dropna()
    if values.empty:
        return MISSING
    text = number(values.mean()) + ("" if len(values) < 2 else f" ±{number(values.std())}")
    return text + (f" [{len(values)}/{planned_seeds}]" if len(values) < planned_seeds else "")


def grid_table(runs: Runs) -> pd.DataFrame:
    """Table 9 at CPU scale: per r x row, #Params, each task and Avg (mean ±std over seeds), the paper's Avg."""
    seeds = planned_seeds(GRID)
    configs = sorted(
        {(c["method"]["r"], 1 if c["method"]["name"] == "lora" else c["method"]["blocks"]) for c in planned(GRID)}
    )
    paper = paper_table("table9_rank_blocks.csv")
    frame = runs.grid
    wide = per_seed_scores(frame, ["r", "b"])
    rows = []
    for r, b in configs:
        part = wide[(wide["r"] == r) & (wide["b"] == b)]
        params = frame[(frame["r"] == r) & (frame["b"] == b)]["params"] if len(frame) else pd.Series(dtype=int)
        paper_row = paper[
            (paper["model"] == PAPER_MODEL) & (paper["r"] == r) & ((paper["b"] == b) if b > 1 else paper["b"].isna())
        ]
        rows.append(
            {
                "r": r,
                "row": "LoRA" if b == 1 else f"BoRA b={b}",
                "#Params": f"{int(params.iloc[0]):,}" if len(params) else MISSING,
                **{label: _cell(part.get(task, pd.Series(dtype=float)), seeds) for label, task in TASKS},
                "Avg": _cell(part["Avg"], seeds),
                "paper Avg (LLaMA-3-8B, Math10K)": number(paper_row["Avg"].iloc[0]) if len(paper_row) else MISSING,
            }
        )
    return pd.DataFrame(rows)


def table7_table(runs: Runs) -> pd.DataFrame:
    """Table 7 at CPU scale: BoRA r=8 b=16 and its w/o Exp / w/o Norm rows, with the paper's Avg per LLM."""
    paper = paper_table("table7_ablation_exp_norm.csv")
    frame = runs.table7
    wide = per_seed_scores(frame, ["row"])
    rows, seeds = [], planned_seeds(TABLE7)
    for variant in ("BoRA", "BoRA w/o Exp", "BoRA w/o Norm"):
        label = "BoRA b=16" + variant[len("BoRA") :]
        part = wide[wide["row"] == label]
        theirs = paper[paper["variant"] == variant].set_index("model")["Avg"]
        rows.append(
            {
                "row": f"{variant} (r=8, b=16)",
                **{name: _cell(part.get(task, pd.Series(dtype=float)), seeds) for name, task in TASKS},
                "Avg": _cell(part["Avg"], seeds),
                **{f"paper Avg, {model}": number(value) for model, value in theirs.items()},
            }
        )
    return pd.DataFrame(rows)


def _paired(wide: pd.DataFrame, key: str, better, baseline, column: str = "Avg") -> pd.Series:
    a = wide[wide[key] == better].set_index("seed")[column]
    b = wide[wide[key] == baseline].set_index("seed")[column]
    return (a - b).dropna()


def slope_per_doubling(blocks, scores) -> float:
    """The least-squares slope of ``scores`` on log2(``blocks``): points of Avg per doubling of b (NaN under 3 b)."""
    points = pd.DataFrame({"x": np.log2(np.asarray(blocks, dtype=float)), "y": np.asarray(scores, dtype=float)})
    points = points.dropna()
    if points["x"].nunique() < 3:
        return math.nan
    return float(scipy_stats.linregress(points["x"], points["y"]).slope)


def _slopes(grid: pd.DataFrame, r: int) -> pd.Series:
    """Per seed: the slope of Avg on log2(b) over BoRA's rows at rank ``r`` (LoRA left out: b = 1 is another
    method, not a block count)."""
    bora = grid[(grid["r"] == r) & (grid["b"] > 1)].dropna(subset=["Avg"])
    return pd.Series({seed: slope_per_doubling(part["b"], part["Avg"]) for seed, part in bora.groupby("seed")}).dropna()


CLAIM_COLUMNS = ["claim", "kind", "paper", "ours", "low", "high", "p", "p_holm", "detectable", "seeds", "verdict"]


def claims(runs: Runs) -> pd.DataFrame:
    """The paper's ablation claims on accuracy, measured: per claim the paper's own value (Table 9 on LLaMA-3-8B,
    Table 7 over its LLMs), ours (the per-seed statistic: mean, 95% paired t interval, p, Holm over these claims,
    the smallest detectable effect) and the verdict (``bora.report.inference``)."""
    rows = []
    grid = per_seed_scores(runs.grid, ["r", "b"])
    paper = paper_table("table9_rank_blocks.csv")
    paper = paper[paper["model"] == PAPER_MODEL].assign(b=lambda f: f["b"].fillna(1))
    top = max(c["method"].get("blocks") or 1 for c in planned(GRID))

    def row(claim: str, paper_value: float, values: pd.Series) -> dict:
        return {"claim": claim, "kind": "gain", "paper": paper_value, **estimate_columns(inference.estimate(values))}

    for r in sorted(grid["r"].dropna().unique()):
        theirs = paper[paper["r"] == r]
        bora = theirs[theirs["b"] > 1]
        rows.append(
            row(
                f"r={r}: Avg per doubling of b, BoRA b=2..{top} (slope on log2 b, per seed)",
                slope_per_doubling(bora["b"], bora["Avg"]),
                _slopes(grid, r),
            )
        )
        rows.append(
            row(
                f"r={r}: BoRA b={top} minus LoRA, Avg (paired by seed)",
                float(theirs[theirs["b"] == top]["Avg"].mean() - theirs[theirs["b"] == 1]["Avg"].mean()),
                _paired(grid[grid["r"] == r], "b", top, 1),
            )
        )
    table7 = per_seed_scores(runs.table7, ["row"])
    paper7 = paper_table("table7_ablation_exp_norm.csv").pivot(index="model", columns="variant", values="Avg")
    for variant in ("w/o Exp", "w/o Norm"):
        rows.append(
            row(
                f"BoRA (r=8, b=16) minus BoRA {variant}, Avg (paired by seed)",
                float((paper7["BoRA"] - paper7[f"BoRA {variant}"]).mean()),
                _paired(table7, "row", "BoRA b=16", f"BoRA b=16 {variant}"),
            )
        )
    if not rows:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    return with_verdicts(pd.DataFrame(rows))[CLAIM_COLUMNS + ["std"]]


def claims_display(frame: pd.DataFrame) -> pd.DataFrame:
    paper = [MISSING if pd.isna(v) else f"{v:+.2f}" for v in frame["paper"]]
    return pd.DataFrame({"claim": frame["claim"], "paper": paper, **estimate_cells(frame)})


def rank_claims(runs: Runs) -> pd.DataFrame:
    """Figure 4's claim, that BoRA's updates have more singular values above 0.005 than LoRA's (the paper:
    "significantly more"; LoRA's count is its r), per r and b in ``FIGURE4_BLOCKS``: BoRA's count minus LoRA's
    (each the mean over the query layers) over the runs paired by task and seed where both records give it, judged
    as the accuracy claims are (paired t interval, Holm over these claims, ``bora.report.inference``)."""
    frame = with_spectra(runs, runs.grid)
    rows = []
    for r in sorted(frame["r"].unique()) if len(frame) else []:
        mine = frame[frame["r"] == r]
        lora = mine[mine["b"] == 1].set_index(["task", "seed"])["count_paper"]
        for b in FIGURE4_BLOCKS:
            bora = mine[mine["b"] == b].set_index(["task", "seed"])["count_paper"]
            rows.append(
                {
                    "claim": f"r={r}: BoRA b={b} minus LoRA, singular values > {PAPER_THRESHOLD:g} (query layers)",
                    "kind": "gain",
                    "paper": math.nan,  # "significantly more", no number
                    **estimate_columns(inference.estimate(list((bora - lora).dropna()))),
                }
            )
    if not rows:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    return with_verdicts(pd.DataFrame(rows))[CLAIM_COLUMNS + ["std"]]


def rank_table(runs: Runs) -> pd.DataFrame:
    """Figure 4 at CPU scale, per r x row: the bound min(b r, 384) (LoRA: r), the paper's measures of the query
    updates (the count of singular values above 0.005 and their sum of squares, the mean over the 6 query layers,
    then over the runs whose records give them: ``runs``), and two more measures of rank (median layer, every run
    with a spectrum: the count above 1e-2 of the largest, and the entropy effective rank)."""
    columns = ["r", "row", "bound", "count_paper", "sum_squares", "runs", "rank", "entropy_rank", "spectra"]
    frame = with_spectra(runs, runs.grid)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.dropna(subset=["rank"])
    grouped = frame.groupby(["r", "b", "row"], sort=True)
    return (
        grouped.agg(
            bound=("bound", "first"),
            count_paper=("count_paper", "mean"),
            sum_squares=("sum_squares", "mean"),
            runs=("count_paper", "count"),
            rank=("rank", "mean"),
            entropy_rank=("entropy_rank", "mean"),
            spectra=("rank", "size"),
        )
        .reset_index()
        .drop(columns="b")[columns]
    )


QUIET = 1.10  # wall time at most this much over CPU time: the run had its core to itself (one thread per run)


def cost_table(runs: Runs) -> pd.DataFrame:
    """CPU time of training per row and task over the runs that had a core to themselves (wall <= QUIET x CPU: a
    run descheduled by a third busy process on the 2-core machine also shows inflated CPU time, from shared caches
    and cores), its ratio to LoRA at the same r (of the per-task means, then their mean over tasks), and how many of
    the row's runs were quiet."""
    frames = [f for f in (runs.grid, runs.table7, runs.spectra, runs.figure4) if len(f)]
    if not frames:
        return pd.DataFrame(columns=["r", "row", "quiet runs"])
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.dropna(subset=["cpu_s"]).drop_duplicates(["identity", "stored_under"])
    frame = frame.assign(quiet=frame["wall_s"] <= QUIET * frame["cpu_s"])
    counts = frame.groupby(["r", "b", "row"])["quiet"].agg(["sum", "size"])
    means = frame[frame["quiet"]].groupby(["r", "b", "row", "task"])["cpu_s"].mean().rename("mean").reset_index()
    rows = []
    for (r, b, row), (quiet, total) in counts.iterrows():
        lora = means[(means["r"] == r) & (means["row"] == "LoRA")].set_index("task")["mean"]
        by_task = means[(means["r"] == r) & (means["b"] == b) & (means["row"] == row)].set_index("task")["mean"]
        ratios = [by_task[t] / lora[t] for t in by_task.index if t in lora.index]
        rows.append(
            {
                "r": r,
                "row": row,
                **{f"{label} (s)": number(by_task.get(task), 0) for label, task in TASKS},
                "quiet runs": f"{int(quiet)} of {int(total)}",
                "x LoRA (same r)": number(np.mean(ratios), 3) if ratios else MISSING,
            }
        )
    return pd.DataFrame(rows)
