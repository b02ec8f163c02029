"""The README's GPU table is what the committed GPU check logs say (results/gpu-check/), rounded as printed."""

import re

import pytest

from bora.paths import PROJECT_ROOT

LOGS = PROJECT_ROOT / "results" / "gpu-check"
COLUMNS = ["1-h100-before-lora-form.log", "2-h200-lora-form.log", "3-h200-batch16.log"]  # the README's order
ROWS = {
    "BoRA r=8 b=8": "bora (r=8, b=8)",
    "BoRA r=8 b=16": "bora (r=8, b=16)",
    "MELoRA r=8, 4 blocks": "melora (r=8, 4 blocks)",
    "HydraLoRA r=4 x 3": "hydralora (r=4, 3 heads)",
    "DoRA r=8 (PEFT's DoRA)": "dora (r=8)",
    "LoRA r=8 step, peak": "lora (r=8)",
}


def table4(log: str) -> dict[str, dict[str, str]]:
    """The rows of the Table 4 markdown table in a bench log, by method, as {column: text}."""
    lines = (LOGS / log).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### Table 4"))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = lines[first:end]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in table[2:]]
    return {row["method"]: row for row in rows}


def readme_rows() -> dict[str, list[str]]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("| step time x LoRA (peak memory x LoRA) |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def same(printed: str, logged: str) -> bool:
    """``printed`` is ``logged`` rounded to the decimals ``printed`` shows."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return float(printed) == round(float(logged), decimals)


@pytest.mark.parametrize("label", list(ROWS))
def test_readme_gpu_table_equals_the_logs(label):
    readme = readme_rows()[label]
    for cell, log in zip(readme, COLUMNS):
        row, lora = table4(log)[ROWS[label]], table4(log)["lora (r=8)"]
        numbers = re.findall(r"\d+(?:\.\d+)?", cell)
        if label.startswith("LoRA"):
            expected = [row["step ms"], row["peak GB"]]
        else:
            expected = [row["time x lora"], row["mem x lora"]]
            if label.startswith("DoRA"):  # PEFT's DoRA's time beside ours
                expected.append(table4(log)["peft-dora (r=8)"]["time x lora"])
        assert len(numbers) == len(expected) and all(map(same, numbers, expected)), (label, log, cell, expected)
        assert lora["time x lora"] == "1.0000"
    paper = readme[len(COLUMNS)]
    if paper:
        row = table4(COLUMNS[0])[ROWS[label]]
        numbers = re.findall(r"\d+\.\d+", paper)
        assert all(map(same, numbers, [row["paper time x lora"], row["paper mem x lora"]])), (label, paper)
