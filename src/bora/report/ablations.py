"""cpu-ablations: the paper's ablations (Table 9's r x b grid, Table 7's w/o Exp / w/o Norm, Figures 3(b) and 4) at
CPU scale, rendered from the committed result files of three sweeps:

- ``conf/experiment/cpu-ablations.yaml``: r in {2, 8} x {LoRA, BoRA b=2..32} x {MRPC, SST-2} x seeds 0-2;
- ``conf/experiment/cpu-ablations-table7.yaml``: BoRA r=8 b=16 and its w/o Exp / w/o Norm rows;
- ``conf/experiment/cpu-ablations-spectra.yaml``: cpu-glue's shared runs retrained at seed 0 (their records predate
  the singular values every run now records), which also tells whether a run reproduces bit for bit.

A run enters when its identity is one the sweep plans and it succeeded, wherever it is stored (runs shared with
cpu-glue stay in ``results/cpu-glue``: ``reuse_from``). Scores x100 (MRPC and SST-2 accuracy). Costs are CPU time
(process time over all threads, ``train.cpu_time_s``) of quiet runs only (``cost_table``): a run that waited for
its core shows inflated wall time and, from shared caches, inflated CPU time too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bora.config.identity import run_identity
from bora.record import read_record
from bora.report.aggregate import load_results, successful
from bora.report.claims import verdict
from bora.report.paper import paper_table
from bora.report.render import MISSING, number
from bora.report.specs import planned, planned_seeds

NAME = "cpu-ablations"
GRID, TABLE7, SPECTRA = "cpu-ablations", "cpu-ablations-table7", "cpu-ablations-spectra"
FOLDERS = ("cpu-ablations", "cpu-glue", "cpu-ablations-spectra")  # experiment_names the runs are stored under
TASKS = (("MRPC", "mrpc"), ("SST-2", "sst2"))
WIDTH = 384  # MiniLM's hidden size: a query update is 384 x 384
RANK_TOLERANCE = 1e-2  # a singular value counts when above this fraction of the largest
FIGURE_DIR = "results/cpu-ablations/figures"  # relative to the project root; the README shows the PNGs from here
PAPER_MODEL = "llama-3-8b"  # Table 9's only model
FIGURE4_BLOCKS = (4, 16)  # the BoRA rows Figure 4 sets against LoRA


@dataclass(frozen=True)
class Runs:
    """The study's successful runs, one row each: ``grid``, ``table7`` and ``spectra`` (the seed-0 reruns)."""

    grid: pd.DataFrame
    table7: pd.DataFrame
    spectra: pd.DataFrame
    planned: dict  # sweep -> number of runs it plans
    left_out: pd.DataFrame  # runs found in this study's folders that enter nothing: run_dir, status, reason


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


def _run_row(run: pd.Series) -> dict:
    method = run["config"]["method"]
    record = read_record(run["run_dir"])
    queries = _query_layers(record.adapter_stats.get("spectrum") or {})
    above = f"above_{RANK_TOLERANCE:g}"
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
        "run_dir": run["run_dir"],
    }


def _median_normalised(queries: list[dict]) -> list[float]:
    """s_i / s_1 of the recorded top singular values, the median over the query layers, per index i."""
    if not queries:
        return []
    length = min(len(q["top"]) for q in queries)
    values = np.array([np.array(q["top"][:length]) / q["top"][0] for q in queries if q["top"][0] > 0])
    return [float(f"{v:.6g}") for v in np.median(values, axis=0)] if len(values) else []


def _chosen(runs: pd.DataFrame, sweep: str, stored_under: set[str]) -> pd.DataFrame:
    identities = {run_identity(config) for config in planned(sweep)}
    ok = successful(runs)
    ok = ok[ok["identity"].isin(identities) & ok["experiment"].isin(stored_under)]
    frame = pd.DataFrame([_run_row(run) for _, run in ok.iterrows()])
    return frame.drop_duplicates("identity") if len(frame) else frame


def study_runs(root: Path | str) -> Runs:
    """The runs under ``root`` (the project's ``results/``) that each of the three sweeps plans."""
    runs = load_results(root, list(FOLDERS))
    return Runs(
        grid=_chosen(runs, GRID, {GRID, "cpu-glue"}),
        table7=_chosen(runs, TABLE7, {GRID, "cpu-glue"}),
        spectra=_chosen(runs, SPECTRA, {SPECTRA}),
        planned={sweep: len(planned(sweep)) for sweep in (GRID, TABLE7, SPECTRA)},
        left_out=_left_out(runs),
    )


def _left_out(runs: pd.DataFrame) -> pd.DataFrame:
    """This study's own runs (not cpu-glue's) that no table takes: not a success, or not planned by its sweeps."""
    plans = {GRID: (GRID, TABLE7), SPECTRA: (SPECTRA,)}
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


def with_spectra(runs: Runs, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the spectrum of each reused run (recorded before spectra were) taken from its seed-0 rerun."""
    if frame.empty or runs.spectra.empty:
        return frame
    reruns = runs.spectra.set_index("identity")
    frame = frame.copy()
    for column in ("rank", "entropy_rank", "normalised", "query_layers"):
        frame[column] = [
            reruns.at[i, column] if i in reruns.index and not row_has else value
            for i, value, row_has in zip(frame["identity"], frame[column], frame["query_layers"] > 0)
        ]
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


def _p_value(p: float) -> str:
    return "p<0.001" if p < 1e-3 else f"p={p:.2g}"


def _spearman_verdict(rho: float, p: float, n: int) -> str:
    if n < 3 or math.isnan(rho):
        return "no runs" if n == 0 else "too few runs"
    if p >= 0.05:
        return "within noise"
    return "supported" if rho > 0 else "contradicted"


def _gain_row(claim: str, paper_value: float, values: pd.Series) -> dict:
    mean, std, n = values.mean(), values.std(), len(values)
    return {
        "claim": claim,
        "paper": number(paper_value),
        "ours": MISSING if n == 0 else number(mean) + ("" if pd.isna(std) else f" ±{number(std)}"),
        "n": str(n),
        "verdict": verdict("gain", mean, std, n),
    }


def verdicts(runs: Runs) -> pd.DataFrame:
    """The paper's ablation claims, measured: one row each, with the paper's own value and a verdict."""
    rows = []
    grid = per_seed_scores(runs.grid, ["r", "b"])
    paper = paper_table("table9_rank_blocks.csv")
    paper = paper[paper["model"] == PAPER_MODEL].assign(b=lambda f: f["b"].fillna(1))
    for r in sorted(grid["r"].dropna().unique()):
        part = grid[(grid["r"] == r)].dropna(subset=["Avg"])
        theirs = paper[paper["r"] == r]
        rho, p = (
            scipy_stats.spearmanr(part["b"], part["Avg"])
            if len(part) >= 3 and part["Avg"].nunique() > 1
            else (math.nan, math.nan)
        )
        paper_rho = scipy_stats.spearmanr(theirs["b"], theirs["Avg"])[0]
        rows.append(
            {
                "claim": f"r={r}: Avg rises with b (Spearman over b in LoRA=1..32, every seed)",
                "paper": number(paper_rho),
                "ours": MISSING if math.isnan(rho) else f"{rho:+.2f} ({_p_value(p)})",
                "n": str(len(part)),
                "verdict": _spearman_verdict(rho, p, len(part)),
            }
        )
        top = max(c["method"].get("blocks") or 1 for c in planned(GRID))
        gain = _paired(grid[grid["r"] == r], "b", top, 1)
        rows.append(
            _gain_row(
                f"r={r}: BoRA b={top} minus LoRA, Avg (paired by seed)",
                float(theirs[theirs["b"] == top]["Avg"].mean() - theirs[theirs["b"] == 1]["Avg"].mean()),
                gain,
            )
        )
    table7 = per_seed_scores(runs.table7, ["row"])
    paper7 = paper_table("table7_ablation_exp_norm.csv").pivot(index="model", columns="variant", values="Avg")
    for variant in ("w/o Exp", "w/o Norm"):
        rows.append(
            _gain_row(
                f"BoRA (r=8, b=16) minus BoRA {variant}, Avg (paired by seed)",
                float((paper7["BoRA"] - paper7[f"BoRA {variant}"]).mean()),
                _paired(table7, "row", "BoRA b=16", f"BoRA b=16 {variant}"),
            )
        )
    spectra = with_spectra(runs, runs.grid)
    spectra = spectra.dropna(subset=["rank"]) if len(spectra) else spectra
    for r in sorted(spectra["r"].unique()) if len(spectra) else []:
        mine = spectra[spectra["r"] == r]
        lora = mine[mine["b"] == 1].set_index(["task", "seed"])["rank"]
        for b in FIGURE4_BLOCKS:
            bora = mine[mine["b"] == b].set_index(["task", "seed"])["rank"]
            diff = (bora - lora).dropna()
            row = _gain_row(
                f"r={r}: BoRA b={b} minus LoRA, query updates' numerical rank (median layer; per task and seed)",
                math.nan,
                diff,
            )
            rows.append({**row, "paper": "more (Fig. 4)"})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "n", "verdict"])


def rank_table(runs: Runs) -> pd.DataFrame:
    """Per r x row: the bound min(b r, 384) (LoRA: r) and the measured rank of the query updates (median layer;
    count above 1e-2 of the largest, and the entropy effective rank), mean over the runs that recorded them."""
    frame = with_spectra(runs, runs.grid)
    if frame.empty:
        return pd.DataFrame(columns=["r", "row", "bound", "rank", "entropy_rank", "runs"])
    frame = frame.dropna(subset=["rank"])
    grouped = frame.groupby(["r", "b", "row"], sort=True)
    return (
        grouped.agg(
            bound=("bound", "first"),
            rank=("rank", "mean"),
            entropy_rank=("entropy_rank", "mean"),
            runs=("rank", "size"),
        )
        .reset_index()
        .drop(columns="b")
    )


QUIET = 1.10  # wall time at most this much over CPU time: the run had its core to itself (one thread per run)


def cost_table(runs: Runs) -> pd.DataFrame:
    """CPU time of training per row and task over the runs that had a core to themselves (wall <= QUIET x CPU: a
    run descheduled by a third busy process on the 2-core machine also shows inflated CPU time, from shared caches
    and cores), its ratio to LoRA at the same r (of the per-task means, then their mean over tasks), and how many of
    the row's runs were quiet."""
    frame = pd.concat([runs.grid, runs.table7, runs.spectra], ignore_index=True)
    if frame.empty:
        return pd.DataFrame(columns=["r", "row", "quiet runs"])
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
