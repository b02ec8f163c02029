"""Markdown and LaTeX text of the comparison frames (``bora.tables.compare``) and experiment summaries.

A paper table row becomes three lines: the paper's numbers, ours (mean ± std over seeds, ``[n/planned]`` when fewer
seeds finished than planned) and the difference ours - paper. Missing numbers are "—" (LaTeX "--"), never 0.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from bora.report.aggregate import status_counts

MISSING = "—"


def write_outputs(stem: Path, markdown: str, latex: str, frame: pd.DataFrame) -> list[Path]:
    """``<stem>.md``, ``<stem>.tex`` and ``<stem>.csv``; returns the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".md"), stem.with_suffix(".tex"), stem.with_suffix(".csv")]
    paths[0].write_text(markdown + "\n")
    paths[1].write_text(latex + "\n")
    frame.to_csv(paths[2], index=False)
    return paths


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG at ``path`` (folders made), then closed: the studies' figures, one way."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def number(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return MISSING
    return f"{value:.{digits}f}"


def ours_cell(line: pd.Series) -> str:
    if pd.isna(line["ours"]):
        return MISSING
    text = number(line["ours"])
    if not pd.isna(line["spread"]):
        text += f" ±{number(line['spread'])}"
    if line["n"] < line["planned"]:
        text += f" [{line['n']}/{line['planned']}]"
    return text


def params_cell(params, paper_text) -> str:
    """Adapter parameters in millions, with as many decimals as the paper prints (e.g. 4.92, 18.9)."""
    if params is None or pd.isna(params):
        return MISSING
    digits = len(str(paper_text).partition(".")[2]) if paper_text is not None and not pd.isna(paper_text) else 2
    return f"{params / 1e6:.{digits}f}"


def comparison_rows(frame: pd.DataFrame, spec) -> pd.DataFrame:
    """The display frame: three lines (paper / ours / diff) per paper row, one column per table column."""
    show_targets = frame["table"].iloc[0] == "table8" if len(frame) else False
    show_model = frame["model"].astype(bool).any()  # Table 6 has no model column (its columns are models)
    display = []
    for _, lines in frame.groupby("row", sort=True):
        first = lines.iloc[0]
        head = {"model": first["model"]} if show_model else {}
        if show_targets:
            head["targets"] = first["targets"]
        head["method"] = first["label"]
        paper = {**head}
        ours = dict.fromkeys(head, "")
        diff = dict.fromkeys(head, "")
        if spec.params:
            paper["#Params (M)"] = first["params_paper"]
            ours["#Params (M)"] = params_cell(first["params_ours"], first["params_paper"])
            diff["#Params (M)"] = ""
        paper[""], ours[""], diff[""] = "paper", "ours", "diff"
        for _, line in lines.iterrows():
            paper[line["column"]] = number(line["paper"])
            ours[line["column"]] = ours_cell(line)
            diff[line["column"]] = MISSING if pd.isna(line["diff"]) else f"{line['diff']:+.2f}"
        display += [paper, ours, diff]
    return pd.DataFrame(display)


PROTOCOL_NAMES = {
    "bora_authors": "the BoRA authors' sibling pipeline toplora-neurips25: its prompt and answer cut",
    "llm_adapters": "LLM-Adapters' evaluate.py: its own evaluation prompt",
    "training_prompt": "the training template as prompt",
}


def decoding_line(configs) -> str:
    """How the generation runs among ``configs`` (resolved run configs) were decoded, one clause per task and
    setting (``task.protocol``, ``task.num_beams``, ``task.max_new_tokens``); empty when none is a generation run."""
    settings: dict[tuple, None] = {}
    for config in configs:
        task = config.get("task") or {}
        if task.get("kind") == "generation":
            settings[(task.get("name"), task.get("protocol"), task.get("num_beams"), task.get("max_new_tokens"))] = None
    clauses = [
        f"{name}: task.protocol={protocol} ({PROTOCOL_NAMES.get(str(protocol), 'unknown protocol')}), "
        f"{beams} beam{'s' if beams != 1 else ''}, up to {new_tokens} new tokens"
        for name, protocol, beams, new_tokens in sorted(settings, key=str)
    ]
    return f"Decoding: {'; '.join(clauses)}." if clauses else ""


def legend(spec) -> str:
    what = "standard deviation over seeds" if spec.statistic == "std" else "mean ±std over seeds"
    return (
        f"paper: the paper's number; ours: {what} of our successful runs ({spec.experiment_name} results, "
        f"conf/experiment/{spec.experiment}.yaml); [n/planned]: fewer seeds finished than planned; "
        f"diff: ours - paper; {MISSING}: no finished run."
    )


def excluded_markdown(excluded: pd.DataFrame | None, root: Path | None = None) -> str:
    """The runs found in a table's folders that it does not take, one line each with the reason (paths relative to
    the outputs ``root`` when given)."""
    if excluded is None or excluded.empty:
        return ""

    def shown(path: str) -> str:
        return str(Path(path).relative_to(root)) if root is not None and Path(path).is_relative_to(root) else path

    lines = [f"- `{shown(row.run_dir)}`: {row.reason}" for row in excluded.itertuples()]
    return f"\n\nNot in the table ({len(lines)} runs found in its folders):\n" + "\n".join(lines)


def comparison_markdown(
    frame: pd.DataFrame, spec, excluded: pd.DataFrame | None = None, root: Path | None = None, decoding: str = ""
) -> str:
    """A paper table as markdown; ``decoding``: its runs' ``decoding_line``, shown under the legend."""
    body = comparison_rows(frame, spec).to_markdown(index=False, disable_numparse=True)
    note = f"\n\n{decoding}" if decoding else ""
    return f"### {spec.title}\n\n{body}\n\n{legend(spec)}{note}{excluded_markdown(excluded, root)}"


WIDE = 7  # tables with more columns are scaled to the text width (\\resizebox; needs \\usepackage{graphicx})


def _numeric(column: pd.Series) -> bool:
    """A column of numbers as rendered here (``72.00 ±2.00 [2/3]``, ``+0.52``, ``4,718,592``, ``—``)."""
    cells = [str(v) for v in column if str(v) not in ("", MISSING, "nan", "None")]
    return bool(cells) and all(re.match(r"^[+\-−]?[\d.,]+(\s|$|%)", c) for c in cells)


def latex_table(display: pd.DataFrame, caption: str) -> str:
    """A booktabs table of a display frame (strings) through pandas' Styler: LaTeX's special characters escaped,
    number columns right-aligned, ``±`` as ``$\\pm$``, missing as ``--``, and scaled to the text width when wide."""
    frame = display.fillna("").astype(str).replace({MISSING: "--"})
    column_format = "".join("r" if _numeric(display[c]) else "l" for c in display.columns)
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    latex = styler.to_latex(
        caption=_escape(caption), column_format=column_format, hrules=True, position="t", position_float="centering"
    )
    latex = latex.replace("±", r"$\pm$")
    if len(display.columns) > WIDE:
        latex = latex.replace("\\begin{tabular}", "\\resizebox{\\textwidth}{!}{%\n\\begin{tabular}", 1)
        latex = latex.replace("\\end{tabular}", "\\end{tabular}}", 1)
    return latex.rstrip()


def _escape(text: str) -> str:
    for char, replacement in [
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
    ]:
        text = text.replace(char, replacement)
    return text.replace("±", r"$\pm$").replace(MISSING, "--")


def comparison_latex(frame: pd.DataFrame, spec, decoding: str = "") -> str:
    return latex_table(comparison_rows(frame, spec), " ".join(filter(None, [f"{spec.title}.", legend(spec), decoding])))


# A generation task's context columns, after its scores: what always giving the most common answer scores (the
# baseline a score must beat), how decoding ended, and the count of questions (unscaled).
CONTEXT_METRICS = {"majority": "majority baseline", "at_limit": "at_limit", "repeated_marker": "repeated_marker"}
COUNT_METRICS = {"n": "questions"}
_ORDER = {metric: rank for rank, metric in enumerate([*CONTEXT_METRICS, *COUNT_METRICS], start=1)}
SUMMARY_LEGEND = (
    "Scores x100, mean ±std (ddof=1) over the seeds of successful runs; seeds: how many finished. Beside a "
    "generation set's accuracy: majority baseline (what always giving its most common answer scores: a method "
    "learnt only above it), at_limit and repeated_marker (% of generations cut at task.max_new_tokens, or writing "
    "### Response: again: how decoding ended, not scores), questions (how many, not scaled); Sigma max: the "
    "largest BoRA Sigma entry over the layers and seeds."
)


def _column_order(metric: str) -> int:
    return _ORDER.get(metric, 0)  # scores first (0), then the context in CONTEXT_METRICS' order, then the count


def summary_rows(summary: pd.DataFrame, sigma_max: dict[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """Per model x task: one row per configuration (method, plus the ``setting`` that tells configs apart), one
    column per sub-task metric (mean ±std, x100; a set's scores, then its context, then its question count), and
    BoRA's largest Sigma entry where ``sigma_max`` (group -> value) has one."""
    tables = {}
    for (experiment, model, task), part in summary.groupby(["experiment", "model", "task"], sort=True):
        rows = {}
        show_setting = part["setting"].astype(bool).any()
        order = part.assign(_order=part["metric"].map(_column_order)).sort_values(["subtask", "_order", "metric"])
        for _, line in order.iterrows():
            head = {"method": line["method_name"]} | ({"setting": line["setting"]} if show_setting else {})
            row = rows.setdefault(
                line["group"],
                {
                    **head,
                    "#Params": f"{int(line['adapter_params']):,}" if not pd.isna(line["adapter_params"]) else MISSING,
                    "seeds": int(line["n"]),
                },
            )
            row["seeds"] = min(row["seeds"], int(line["n"]))
            metric = line["metric"]
            if metric in COUNT_METRICS:
                row[f"{line['subtask']} {COUNT_METRICS[metric]}"] = f"{line['mean']:,.0f}"
                continue
            cell = number(100 * line["mean"])
            if not pd.isna(line["std"]):
                cell += f" ±{number(100 * line['std'])}"
            row[f"{line['subtask']} {CONTEXT_METRICS.get(metric, metric)}"] = cell
        if sigma_max and any(group in sigma_max for group in rows):
            for group, row in rows.items():
                row["Sigma max"] = f"{sigma_max[group]:.3g}" if group in sigma_max else MISSING
        tables[f"{experiment}: {model} on {task}"] = pd.DataFrame(list(rows.values()))
    return tables


def largest_sigma(runs: pd.DataFrame) -> dict[str, float]:
    """Group -> the largest BoRA Sigma entry any successful run of it recorded (``adapter_stats.sigma``)."""
    if runs.empty or "sigma_max" not in runs:
        return {}
    ok = runs[(runs["status"] == "success") & runs["sigma_max"].notna()]
    return {group: float(value) for group, value in ok.groupby("group")["sigma_max"].max().items()}


def summary_markdown(summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    if summary.empty:
        return f"(no successful runs; runs by status: {status_counts(runs)})"
    parts = [
        f"### {title}\n\n{table.to_markdown(index=False, disable_numparse=True)}"
        for title, table in summary_rows(summary, largest_sigma(runs)).items()
    ]
    parts.append(SUMMARY_LEGEND)
    decoding = decoding_line(runs[runs["status"] == "success"]["config"])
    if decoding:
        parts.append(decoding)
    return "\n\n".join(parts)


def summary_latex(summary: pd.DataFrame) -> str:
    return "\n\n".join(latex_table(table, title) for title, table in summary_rows(summary).items())
