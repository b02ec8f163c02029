"""Logs a person can read (issue 35 item 6): labelled bars, one metrics line per test set, library loggers quiet
unless asked for, and `bora tables` showing the tables it wrote, with scores beside their baseline."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATION = [
    "model=tiny-decoder",
    "task=toy-math",
    "method=bora",
    "trainer.max_steps=2",
    "task.max_eval_samples=3",
    "task.max_new_tokens=4",
]


def bora(module: str, *args: str, outputs: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BORA_OUTPUT_DIR": str(outputs)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_a_run_labels_its_bars_logs_a_line_per_set_and_keeps_libraries_quiet(tmp_path):
    text = bora("bora.train", *GENERATION, outputs=tmp_path / "a")
    assert "train toy-math bora_r8_b16_a16_d0.05_QKV:" in text  # the training bar says what trains
    assert "toy_arith (continuous batching):" in text and "Solving" not in text  # the decoding bar names the set
    assert len(re.findall(r"\] eval toy_arith: accuracy \d\.\d{4}, n 3, majority", text)) == 1
    assert "eval toy_arith n =" not in text  # not a line per metric
    assert "Paged cache" not in text and "ContinuousBatchingLogger" not in text  # transformers' INFO lines
    verbose = bora("bora.train", *GENERATION, "hydra.verbose=[ContinuousBatchingLogger]", outputs=tmp_path / "b")
    assert "Paged cache" in verbose  # asked for, they come back


def test_bora_tables_prints_the_summaries_it_wrote_with_scores_beside_their_baseline(tmp_path):
    bora("bora.train", "-m", *GENERATION, "method=lora,bora", outputs=tmp_path)
    text = bora("bora.tables", "--outputs", str(tmp_path), "--out", str(tmp_path / "tables"), outputs=tmp_path)
    assert "### default: tiny-decoder on toy-math" in text  # the table itself, not only the files' names
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    at = columns.index("toy_arith accuracy")
    assert columns[at + 1] == "toy_arith majority baseline"  # the baseline beside the score
    assert "Sigma max" in columns and columns[-2:] == ["toy_arith questions", "Sigma max"]
    rows = [line for line in text.splitlines() if line.startswith(("| BoRA", "| LoRA"))]
    cells = {row.split("|")[1].strip().split(" ")[0]: [c.strip() for c in row.strip("|").split("|")] for row in rows}
    assert cells["BoRA"][columns.index("toy_arith questions")] == "3"  # a count, not scaled by 100
    assert cells["LoRA"][columns.index("Sigma max")] == "—" and float(cells["BoRA"][columns.index("Sigma max")]) > 0
    assert "majority baseline (what always giving its most common answer scores" in text  # the columns explained
