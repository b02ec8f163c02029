"""`make smoke` (the session's smoke outputs: real tiny-model runs), its result files, a rerun, `bora plan`,
`make tables` and the notebook on them. Every test of the smoke outputs lives in this file: `make test` hands whole
files to its workers (pytest-xdist --dist loadfile), so the costly fixture is built once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

from bora.plan import plan

ROOT = Path(__file__).resolve().parents[2]


def test_make_tables_renders_real_tables_and_plots(smoke_outputs):
    env = {**os.environ, "BORA_OUTPUT_DIR": str(smoke_outputs)}
    done = subprocess.run(
        ["make", "--no-print-directory", "tables", f"PY={sys.executable}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    tables = smoke_outputs / "tables"
    summary = pd.read_csv(tables / "summary-smoke.csv")
    assert set(summary["method_tag"]) == {
        "lora_r8_a16_d0.05_QV",
        "bora_r8_b16_a16_d0.05_QV",
        "lora_r8_a16_d0.05_QKV",
        "bora_r8_b16_a16_d0.05_QKV",
    }
    assert set(summary["n"]) == {2}
    rates = summary[summary["metric"] != "n"]  # every metric is a rate but a test set's question count, n
    assert rates["mean"].between(0, 1).all(), rates[~rates["mean"].between(0, 1)]
    assert set(summary.loc[summary["metric"] == "n", "mean"]) == {100.0}  # toy-recall's 100 test questions
    markdown = (tables / "summary-smoke.md").read_text()
    assert "tiny-encoder on toy-cls" in markdown and "tiny-decoder on toy-recall" in markdown
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
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    text = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/markdown", ""))
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert "runs under" in text and "tiny-encoder on toy-cls" in text and "Claims check" in text
    # the last section: the committed studies as the README shows them, figure links made relative to notebooks/
    assert "### Table 1 at CPU scale" in text and "### Table 3 at CPU scale" in text
    assert "](../results/cpu-commonsense/figures/accuracy.png)" in text and "](results/" not in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # Figure 3(b) and the smoke singular values


def test_make_notebook_executes_it_headless_into_outputs(smoke_outputs, tmp_path):
    """Into OUTPUTS/notebooks/: the notebook it was given stays as it was (the tracked one stays cleared)."""
    notebook = tmp_path / "notebooks" / "tables.ipynb"
    notebook.parent.mkdir()
    notebook.write_text((ROOT / "notebooks" / "tables.ipynb").read_text())
    given = notebook.read_bytes()
    venv = Path(sys.executable).parents[1]
    # -o: the running venv counts as installed; else a checkout newer than it (a worktree) would reinstall into it
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            f"{venv}/.installed",
            "notebook",
            f"OUTPUTS={smoke_outputs}",
            f"NOTEBOOK={notebook}",
            f"VENV={venv}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert notebook.read_bytes() == given
    executed = nbformat.read(smoke_outputs / "notebooks" / "tables.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "\n".join(str(o.get("text", "")) for o in outputs)
    assert outputs and "runs under" in text and "TqdmWarning" not in text and "IProgress" not in text


def test_smoke_sweep_writes_one_successful_result_per_run(smoke_outputs):
    results = [json.loads(p.read_text()) for p in sorted(Path(smoke_outputs).rglob("result.json"))]
    assert len(results) == 8  # (encoder + decoder) x (lora, bora) x seeds 0, 1
    assert {r["status"] for r in results} == {"success"}
    assert {(r["model"], r["method"], r["seed"]) for r in results} == {
        (m, meth, s) for m in ("tiny-encoder", "tiny-decoder") for meth in ("lora", "bora") for s in (0, 1)
    }
    for r in results:
        run_dir = Path(r["run_dir"])
        assert run_dir.parent.name.startswith(r["method"]) and run_dir.name == f"seed={r['seed']}-{r['identity'][:8]}"
        assert r["adapter_params"] > 0 and r["train"]["global_steps"] > 0
        assert r["versions"]["torch"] and r["git"]["commit"] and r["hardware"]["cpu_count"]
        assert r["peak_memory"]["train"]["bytes"] > 0 and r["eval"]["wall_time_s"] >= 0
        assert (run_dir / "adapter").is_dir() and not (run_dir / "checkpoints").exists()
        losses = [e["loss"] for e in r["train"]["loss_history"]]
        assert losses[-1] < losses[0], f"{run_dir}: training loss did not fall ({losses[0]} -> {losses[-1]})"
    bora = [r for r in results if r["method"] == "bora"]
    lora = [r for r in results if r["method"] == "lora"]
    assert all(b["adapter_params"] > lo["adapter_params"] for b, lo in zip(bora, lora))  # the b^2 r extra
    for r in bora:  # Sigma per layer, visible in the record
        sigma = r["adapter_stats"]["sigma"]
        assert sigma["summary"]["layers"] == r["adapted_modules"] == len(sigma["per_layer"])
        assert all(layer["sigma_max"] > 0 and layer["mav"] > 0 for layer in sigma["per_layer"])
    for r in results:  # every method's trained update: its singular values, one row per adapted layer
        spectrum = r["adapter_stats"]["spectrum"]["per_layer"]
        assert len(spectrum) == r["adapted_modules"] and all(row["count"] > 0 for row in spectrum)
    assert all("sigma" not in r["adapter_stats"] for r in lora)
    assert all(r["data"]["source"] == "local" and r["data"]["sha256"] for r in results)


def test_rerunning_a_finished_sweep_trains_nothing(smoke_outputs):
    before = {p: p.stat().st_mtime_ns for p in Path(smoke_outputs).rglob("result.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "bora.train", "-m", "experiment=smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BORA_OUTPUT_DIR": str(smoke_outputs)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("skip:") == 4 and "train_runtime" not in proc.stdout + proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in Path(smoke_outputs).rglob("result.json")}


def test_smoke_runs_are_done_after_make_smoke(smoke_outputs):
    """The trainer's own result files: plan reproduces their identities exactly."""
    for experiment in ["smoke", "smoke-llm"]:
        rows = plan([f"experiment={experiment}", f"output_dir={smoke_outputs}"], with_params=False)
        assert [r["status"] for r in rows] == ["done"] * 4
