"""The paper's headline statements, recomputed from its own tables and from our runs, side by side.

Each claim is a statistic of table cells (e.g. BoRA's Avg minus LoRA's, averaged over the three LLMs). It is computed
once per seed (cells paired by seed; only seeds every cell has count) and reported as the mean with its 95% paired t
interval over those seeds, a Holm-adjusted p-value over the claims, and the smallest effect the seeds could detect.
The paper's value comes from the same function applied to its tables (one "seed"), next to the number its text states;
the verdict compares our interval with 0 and with it (``bora.report.inference``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bora.report import inference
from bora.report.aggregate import per_seed
from bora.report.paper import paper_table, paper_tag
from bora.report.render import MISSING, latex_table, number, write_outputs
from bora.report.specs import KEYS, SPECS, membership

LLMS = ["gemma-7b", "llama-3-8b", "qwen2.5-14b"]
ROBERTA = ["roberta-base", "roberta-large"]
VERDICT_RULES = inference.RULES


class Cells:
    """Per-seed values of one cell of a paper table: from our runs (``runs`` given) or from the paper (one seed)."""

    def __init__(self, runs: pd.DataFrame | None = None, overrides: Sequence[str] = ()):
        self.runs = runs
        self.overrides = tuple(overrides)
        self._frames: dict[str, pd.DataFrame] = {}

    def _frame(self, table: str) -> pd.DataFrame:
        if table not in self._frames:
            spec = SPECS[table]
            if self.runs is None:
                frame = paper_table(spec.paper_csv)
                frame["method_tag"] = [paper_tag(row, spec.targets) for _, row in frame.iterrows()]
                frame["seed"] = 0
            else:
                runs = membership(self.runs, spec.experiment_name, spec.experiment, self.overrides)[0]
                frame = per_seed(runs, spec.columns, KEYS, spec.average)
            self._frames[table] = frame
        return self._frames[table]

    def __call__(self, table: str, model: str, column: str = "Avg", **row) -> pd.Series:
        """``row``: the paper row's fields (method, r, b, variant, target_modules)."""
        tag = paper_tag(pd.Series({"method": "BoRA", "b": None, **row}), SPECS[table].targets)
        frame = self._frame(table)
        cells = frame[(frame["model"] == model) & (frame["method_tag"] == tag)]
        return pd.Series(cells[column].astype(float).values, index=cells["seed"].astype(int).values).dropna()


def _mean_over(models: list[str], per_model: Callable[[str], pd.Series]) -> pd.Series:
    """Mean over models, seed by seed (NaN for a seed any model lacks)."""
    return sum(per_model(m) for m in models) / len(models)


def _gain(cells: Cells, table: str, models: list[str], better: dict, baseline: dict) -> pd.Series:
    return _mean_over(models, lambda m: cells(table, m, **better) - cells(table, m, **baseline))


BORA_16 = {"method": "BoRA", "r": 8, "b": 16}
LORA = {"method": "LoRA"}


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    text_value: str  # what the paper's text says
    kind: str  # gain | not_worse | parity
    statistic: Callable[[Cells], pd.Series]


def _ablation(cells: Cells, variant: str) -> pd.Series:
    return _mean_over(
        LLMS, lambda m: cells("table7", m, variant="BoRA", r=8, b=16) - cells("table7", m, variant=variant, r=8, b=16)
    )


def _min_over(keys: list, per_key: Callable) -> pd.Series:
    frame = pd.concat([per_key(k) for k in keys], axis=1)
    return frame.min(axis=1, skipna=False)


def _ratio(cells: Cells, column: str) -> pd.Series:
    return cells("table4", "llama-3-8b", column, **BORA_16) / cells("table4", "llama-3-8b", column, **LORA, r=8)


def _targets_gain(cells: Cells, targets: str) -> pd.Series:
    return cells("table8", "llama-3-8b", **BORA_16, target_modules=targets) - cells(
        "table8", "llama-3-8b", **LORA, r=8, target_modules=targets
    )


def _grid_gain(cells: Cells, r: int) -> pd.Series:
    return cells("table9", "llama-3-8b", method="BoRA", r=r, b=2) - cells("table9", "llama-3-8b", method="LoRA", r=r)


def _sbora_gain(cells: Cells, table: str, model: str) -> pd.Series:
    """SBoRA-FA (r=64) minus the better of LoRA (r=32) and DoRA (r=32): the same #Params (56.1M on LLaMA-7B)."""
    baselines = pd.concat([cells(table, model, method=m, r=32) for m in ("LoRA", "DoRA")], axis=1)
    return cells(table, model, method="SBoRA-FA", r=64) - baselines.max(axis=1, skipna=False)


SBORA_SAME_PARAMS = "SBoRA-FA (r=64) minus the better of LoRA and DoRA (r=32, about the same #Params), Avg"

CLAIMS = [
    Claim(
        "math_bora_vs_lora",
        "Math: BoRA (r=8, b=16) minus LoRA (r=8), Avg, mean over the three LLMs",
        "2.4",
        "gain",
        lambda c: _gain(c, "table2", LLMS, BORA_16, {**LORA, "r": 8}),
    ),
    Claim(
        "math_lora32_vs_lora8",
        "Math: LoRA (r=32) minus LoRA (r=8), Avg, mean over the three LLMs",
        "1.9",
        "gain",
        lambda c: _gain(c, "table2", LLMS, {**LORA, "r": 32}, {**LORA, "r": 8}),
    ),
    Claim(
        "math_bora_beats_4x_rank",
        "Math: BoRA's gain over LoRA (r=8) exceeds LoRA (r=32)'s (the two lines above)",
        "2.4 - 1.9",
        "gain",
        lambda c: _gain(c, "table2", LLMS, BORA_16, {**LORA, "r": 32}),
    ),
    Claim(
        "commonsense_bora_vs_lora",
        "Commonsense: BoRA (r=8, b=16) minus LoRA (r=8), Avg, mean over the LLMs",
        "0.95",
        "gain",
        lambda c: _gain(c, "table3", LLMS, BORA_16, {**LORA, "r": 8}),
    ),
    Claim(
        "commonsense_lora32_vs_lora8",
        "Commonsense: LoRA (r=32) minus LoRA (r=8), Avg, mean over the LLMs",
        "0.77",
        "gain",
        lambda c: _gain(c, "table3", LLMS, {**LORA, "r": 32}, {**LORA, "r": 8}),
    ),
    Claim(
        "glue_bora_vs_lora",
        "GLUE: BoRA (r=8, b=16) minus LoRA (r=8), Avg, mean over RoBERTa-base/large",
        "~2",
        "gain",
        lambda c: _gain(c, "table1", ROBERTA, BORA_16, {**LORA, "r": 8}),
    ),
    Claim(
        "glue_bora_vs_lora32",
        "GLUE: BoRA (r=8, b=16) is comparable or better than LoRA (r=32), Avg, mean over both models",
        "comparable or superior",
        "not_worse",
        lambda c: _gain(c, "table1", ROBERTA, BORA_16, {**LORA, "r": 32}),
    ),
    Claim(
        "ablation_exp",
        "Ablation: BoRA minus BoRA w/o Exp, Avg, mean over the LLMs",
        "significant decrease",
        "gain",
        lambda c: _ablation(c, "BoRA w/o Exp"),
    ),
    Claim(
        "ablation_norm",
        "Ablation: BoRA minus BoRA w/o Norm, Avg, mean over the LLMs",
        "significant decrease",
        "gain",
        lambda c: _ablation(c, "BoRA w/o Norm"),
    ),
    Claim(
        "ablation_norm_matters_more",
        "Ablation: BoRA w/o Exp minus BoRA w/o Norm, Avg, mean over the LLMs",
        "w/o Norm hurts more",
        "gain",
        lambda c: _ablation(c, "BoRA w/o Norm") - _ablation(c, "BoRA w/o Exp"),
    ),
    Claim(
        "targets_every_granularity",
        "Target modules: smallest BoRA minus LoRA gain over Q, QV, QKV, QKVUD, QKVOGUD (LLaMA-3-8B)",
        "BoRA better at every granularity",
        "gain",
        lambda c: _min_over(["Q", "QV", "QKV", "QKVUD", "QKVOGUD"], lambda t: _targets_gain(c, t)),
    ),
    Claim(
        "grid_every_rank",
        "Ranks x blocks: smallest BoRA (b=2) minus LoRA gain over r = 2 ... 64 (LLaMA-3-8B)",
        "BoRA better at every rank, even b=2",
        "gain",
        lambda c: _min_over([2, 4, 8, 16, 32, 64], lambda r: _grid_gain(c, r)),
    ),
    # The SBoRA paper (arXiv 2407.05413): its abstract's gains of SBoRA-FA over LoRA and DoRA.
    Claim(
        "sbora_math_llama7b",
        f"SBoRA paper, arithmetic: {SBORA_SAME_PARAMS}, LLaMA-7B",
        "+2.8",
        "gain",
        lambda c: _sbora_gain(c, "sbora-math", "llama-7b"),
    ),
    Claim(
        "sbora_math_llama3",
        f"SBoRA paper, arithmetic: {SBORA_SAME_PARAMS}, LLaMA-3-8B",
        "+2.0",
        "gain",
        lambda c: _sbora_gain(c, "sbora-math", "llama-3-8b"),
    ),
    Claim(
        "sbora_commonsense_llama7b",
        f"SBoRA paper, commonsense: {SBORA_SAME_PARAMS}, LLaMA-7B",
        "+2.9",
        "gain",
        lambda c: _sbora_gain(c, "sbora-commonsense", "llama-7b"),
    ),
    Claim(
        "sbora_commonsense_llama3",
        f"SBoRA paper, commonsense: {SBORA_SAME_PARAMS}, LLaMA-3-8B",
        "+1.7",
        "gain",
        lambda c: _sbora_gain(c, "sbora-commonsense", "llama-3-8b"),
    ),
    Claim(
        "time_parity",
        "Efficiency: BoRA (r=8, b=16) / LoRA (r=8) training time (LLaMA-3-8B)",
        "on par (18.6 vs 18.5)",
        "parity",
        lambda c: _ratio(c, "time_min"),
    ),
    Claim(
        "memory_parity",
        "Efficiency: BoRA (r=8, b=16) / LoRA (r=8) peak memory (LLaMA-3-8B)",
        "on par (23.63 vs 23.57)",
        "parity",
        lambda c: _ratio(c, "memory_GB"),
    ),
]


def check_claims(runs: pd.DataFrame, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """One row per claim: the paper's text, its value recomputed from its tables, ours (mean, 95% interval, p, Holm's
    p over the claims, seeds, the smallest detectable effect) and the verdict."""
    paper, ours = Cells(), Cells(runs, overrides)
    rows = []
    for claim in CLAIMS:
        recomputed = claim.statistic(paper).dropna()
        values = claim.statistic(ours).dropna()
        est = inference.estimate(list(values), null=1.0 if claim.kind == "parity" else 0.0)
        rows.append(
            {
                "claim": claim.name,
                "kind": claim.kind,
                "statement": claim.statement,
                "paper_text": claim.text_value,
                "paper": recomputed.iloc[0] if len(recomputed) else float("nan"),
                **estimate_columns(est),
            }
        )
    return with_verdicts(pd.DataFrame(rows))


def estimate_columns(est: inference.Estimate) -> dict:
    """A claim row's columns of ``est`` (ours)."""
    return {
        "ours": est.mean,
        "low": est.low,
        "high": est.high,
        "se": est.se,
        "p": est.p,
        "std": est.seed_sd,
        "question_se": est.question_se,
        "questions": est.questions,
        "seeds": est.seeds,
        "detectable": est.detectable,
        "_estimate": est,
    }


def with_verdicts(frame: pd.DataFrame, paper_column: str = "paper") -> pd.DataFrame:
    """``frame`` (one row per claim of one study, from ``estimate_columns``) with Holm's p over its gain claims and
    each claim's verdict (``bora.report.inference.verdict``)."""
    frame = frame.copy()
    gains = frame["kind"] == "gain"
    frame["p_holm"] = float("nan")
    frame.loc[gains, "p_holm"] = inference.holm(list(frame.loc[gains, "p"]))
    frame["verdict"] = [
        inference.verdict(kind, est, paper, None if kind != "gain" else p_holm)
        for kind, est, paper, p_holm in zip(frame["kind"], frame["_estimate"], frame[paper_column], frame["p_holm"])
    ]
    return frame.drop(columns="_estimate")


def interval_cell(mean: float, low: float, high: float, digits: int = 2, signed: bool = False) -> str:
    """``+1.23 [-0.40, +2.86]``: the estimate and its 95% interval (the estimate alone without an interval)."""
    if pd.isna(mean):
        return number(mean)
    text = f"{mean:+.{digits}f}" if signed else number(mean, digits)
    if pd.isna(low) or pd.isna(high):
        return text
    return (
        f"{text} [{low:+.{digits}f}, {high:+.{digits}f}]"
        if signed
        else f"{text} [{number(low, digits)}, {number(high, digits)}]"
    )


def p_holm_cells(p_values, holm_values) -> list[str]:
    """``0.012 (0.048)``: each p-value with its Holm-adjusted value in brackets (none for a claim outside Holm's
    family)."""
    return [p_cell(p) + ("" if pd.isna(h) else f" ({p_cell(h)})") for p, h in zip(p_values, holm_values)]


def p_cell(p: float) -> str:
    if pd.isna(p):
        return MISSING
    return "<0.001" if p < 1e-3 else f"{p:.2g}"


def estimate_cells(frame: pd.DataFrame, signed: bool = True) -> dict[str, list[str]]:
    """The columns every claims table shows of a frame of ``estimate_columns`` and ``with_verdicts``: ours with its
    95% interval, p (Holm), the detectable effect, the seeds and the verdict (``signed``: differences, +/-)."""
    return {
        "ours [95% CI]": [
            interval_cell(m, lo, hi, signed=signed) for m, lo, hi in zip(frame["ours"], frame["low"], frame["high"])
        ],
        "p (Holm)": p_holm_cells(frame["p"], frame["p_holm"]),
        "detectable": [number(v) for v in frame["detectable"]],
        "seeds": [str(n) for n in frame["seeds"]],
        "verdict": list(frame["verdict"]),
    }


def claims_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim": frame["statement"],
            "paper (text)": frame["paper_text"],
            "paper (its tables)": frame["paper"].map(number),
            **estimate_cells(frame, signed=False),  # ratios among them
        }
    )


def render_claims(runs: pd.DataFrame, out_dir: Path, overrides: Sequence[str] = ()) -> tuple[str, list[Path]]:
    frame = check_claims(runs, overrides)
    display = claims_display(frame)
    markdown = f"### Claims check\n\n{display.to_markdown(index=False, disable_numparse=True)}\n\n{VERDICT_RULES}"
    latex = latex_table(display, f"Claims check. {VERDICT_RULES}")
    return markdown, write_outputs(Path(out_dir) / "claims", markdown, latex, frame)
