"""`make smoke` then `make tables`, and the notebook, on real tiny-model runs (the session's smoke outputs)."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_make_tables_renders_real_tables_and_plots(smoke_outputs):
    env = {**os.environ, "BORA_OUTPUT_DIR": str(smoke_outputs)}
    done = subprocess.run(["make", "--no-print-directory", "tables", f"PY={sys.executable}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    tables = smoke_outputs / "tables"
    summary = pd.read_csv(tables / "summary-smoke.csv")
    assert set(summary["method_tag"]) == {"lora_r8_a16_d0.05_QV", "bora_r8_b16_a16_d0.05_QV",
                                          "lora_r8_a16_d0.05_QKV", "bora_r8_b16_a16_d0.05_QKV"}
    assert set(summary["n"]) == {2}
    rates = summary[summary["metric"] != "n"]  # every metric is a rate but a test set's question count, n
    assert rates["mean"].between(0, 1).all(), rates[~rates["mean"].between(0, 1)]
    assert set(summary.loc[summary["metric"] == "n", "mean"]) == {100.0}  # toy-math's 100 test questions
    markdown = (tables / "summary-smoke.md").read_text()
    assert "tiny-encoder on toy-cls" in markdown and "tiny-decoder on toy-math" in markdown
    # Figure 4 style, on the smoke adapters: LoRA's effective rank is r, BoRA's is larger.
    spectra = pd.read_csv(tables / "singular-values-smoke.csv")
    assert set(spectra.loc[spectra["method"] == "lora", "above_threshold"]) == {8}
    assert (spectra.loc[spectra["method"] == "bora", "above_threshold"] > 8).all()
    for png in ["singular-values-smoke.png", "figure3b.png"]:
        assert (tables / png).read_bytes()[:4] == b"\x89PNG"
    for name in [f"table{i}" for i in range(1, 10)] + ["claims"]:
        assert all((tables / f"{name}{suffix}").is_file() for suffix in [".md", ".tex", ".csv"])
    # No paper-scale runs here: every "ours" cell is missing, never 0.
    assert pd.read_csv(tables / "table2.csv")["ours"].isna().all()


def test_notebook_executes_on_the_smoke_results(smoke_outputs, monkeypatch):
    monkeypatch.setenv("BORA_OUTPUT_DIR", str(smoke_outputs))
    notebook = nbformat.read(ROOT / "notebooks" / "tables.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed cleared
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/markdown", ""))
                     for cell in notebook.cells for output in cell.get("outputs", []))
    assert "runs under" in text and "tiny-encoder on toy-cls" in text and "Claims check" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # Figure 3(b) and the smoke singular values


def test_make_notebook_executes_it_headless_in_place(smoke_outputs, tmp_path):
    notebook = tmp_path / "notebooks" / "tables.ipynb"
    notebook.parent.mkdir()
    notebook.write_text((ROOT / "notebooks" / "tables.ipynb").read_text())
    done = subprocess.run(["make", "--no-print-directory", "notebook", f"OUTPUTS={smoke_outputs}",
                           f"NOTEBOOK={notebook}", f"VENV={Path(sys.executable).parents[1]}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    executed = nbformat.read(notebook, as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "\n".join(str(o.get("text", "")) for o in outputs)
    assert outputs and "runs under" in text and "TqdmWarning" not in text and "IProgress" not in text
