"""Paper tables from synthetic result files: paper vs ours vs difference, seeds, missing cells, a golden rendering."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_results import math_metrics, method, uniform_math, write_run

from bora.report import render
from bora.report.aggregate import load_results, summarize
from bora.report.cli import main as tables_main
from bora.report.cli import render_paper_table
from bora.report.paper import paper_table
from bora.report.specs import SPECS, planned_seeds
from bora.report.tables import compare, compare_table6, excluded_runs

GOLDEN = Path(__file__).parent / "golden"
BORA = method("bora", blocks=16)
LLMS = ["gemma-7b", "llama-3-8b", "qwen2.5-14b"]


def table7_results(root):
    """gemma BoRA: 3 seeds (every sub-task 70, 72, 74); w/o Exp: 2 seeds; w/o Norm: one success, one failed;
    llama: only a run of another experiment; qwen: nothing."""
    for seed, value in enumerate([0.70, 0.72, 0.74]):
        write_run(root, "math", "gemma-7b", "math", BORA, seed, uniform_math(value))
    for seed, value in enumerate([0.60, 0.64]):
        write_run(root, "math", "gemma-7b", "math", method("bora", blocks=16, use_exp=False), seed, uniform_math(value))
    write_run(root, "math", "gemma-7b", "math", method("bora", blocks=16, use_norm=False), 0, uniform_math(0.5))
    write_run(root, "math", "gemma-7b", "math", method("bora", blocks=16, use_norm=False), 1, status="failed")
    write_run(root, "other", "llama-3-8b", "math", BORA, 0, uniform_math(0.9))
    return load_results(root)


def test_planned_seeds_come_from_the_experiment_file():
    assert planned_seeds("table2") == 3 and planned_seeds("figure4") == 1 and planned_seeds("smoke") == 2


def test_compare_puts_paper_ours_and_difference_side_by_side(tmp_path):
    frame = compare(SPECS["table7"], table7_results(tmp_path), planned=3).set_index(["model", "label", "column"])
    full = frame.loc[("gemma-7b", "BoRA", "AddSub")]
    assert (full["paper"], full["ours"], full["spread"], full["n"]) == pytest.approx((87.85, 72.0, 2.0, 3))
    assert full["diff"] == pytest.approx(72.0 - 87.85)
    assert frame.loc[("gemma-7b", "BoRA", "Avg"), "paper"] == pytest.approx(73.10)
    no_exp = frame.loc[("gemma-7b", "BoRA w/o Exp", "Avg")]
    assert (no_exp["ours"], no_exp["spread"], no_exp["n"]) == pytest.approx((62.0, 2 * math.sqrt(2), 2))
    no_norm = frame.loc[("gemma-7b", "BoRA w/o Norm", "SVAMP")]  # the failed seed does not count
    assert no_norm["n"] == 1 and no_norm["ours"] == pytest.approx(50.0) and math.isnan(no_norm["spread"])
    # Another experiment's runs never fill this table; no run is NaN, never 0.
    for model in ["llama-3-8b", "qwen2.5-14b"]:
        cell = frame.loc[(model, "BoRA", "Avg")]
        assert math.isnan(cell["ours"]) and math.isnan(cell["diff"]) and cell["n"] == 0
    assert len(frame) == len(paper_table("table7_ablation_exp_norm.csv")) * 7  # every paper row x (6 + Avg)


def test_golden_markdown(tmp_path):
    """The rendered Markdown of a known set of results (tests/tables/golden/table7.md, reviewed by eye)."""
    markdown, paths = render_paper_table("table7", table7_results(tmp_path), tmp_path / "tables", root=tmp_path)
    expected = (GOLDEN / "table7.md").read_text()
    assert markdown + "\n" == expected
    assert [p.name for p in paths] == ["table7.md", "table7.tex", "table7.csv"]
    assert paths[0].read_text() == expected
    assert "62.00 ±2.83 [2/3]" in markdown  # w/o Exp: 2 of 3 seeds
    assert "50.00 [1/3]" in markdown  # w/o Norm: one seed, so no spread
    assert "| ours  | —" in markdown  # qwen: nothing finished
    latex = paths[1].read_text()
    assert r"72.00 $\pm$2.00" in latex and r"62.00 $\pm$2.83 [2/3]" in latex and "| —" not in latex


def test_a_table_takes_only_the_runs_its_experiment_plans(tmp_path):
    """A forced rerun of seed 1 with another lr sits in the table's folders: listed as not in the table, with the
    keys it differs at, and never averaged with the planned seeds."""
    for seed, value in enumerate([0.70, 0.74]):
        write_run(tmp_path, "math", "gemma-7b", "math", BORA, seed, uniform_math(value), plan="table7")
    write_run(tmp_path, "math", "gemma-7b", "math", BORA, 2, uniform_math(0.10), extra=("trainer.lr=1e-2",))
    runs = load_results(tmp_path)
    frame = compare(SPECS["table7"], runs, planned=3).set_index(["model", "label", "column"])
    cell = frame.loc[("gemma-7b", "BoRA", "Avg")]
    assert (cell["ours"], cell["n"]) == pytest.approx((72.0, 2))
    excluded = excluded_runs("table7", runs)
    assert len(excluded) == 1 and "differs at trainer.lr" in excluded["reason"][0]
    markdown, _ = render_paper_table("table7", runs, tmp_path / "tables", root=tmp_path)
    assert "Not in the table (1 runs" in markdown and "seed=2-" in markdown


def test_every_generation_table_names_its_decoding_protocol(tmp_path):
    """The protocol comes from the runs in the table: a sweep run with task.protocol=llm_adapters says so under the
    table (markdown and LaTeX caption) and in its summary; a GLUE table has no decoding line."""
    overrides = ("task.protocol=llm_adapters",)
    for seed in (0, 1):
        write_run(tmp_path, "math", "gemma-7b", "math", BORA, seed, uniform_math(0.7), plan="table7", extra=overrides)
    runs = load_results(tmp_path)
    markdown, paths = render_paper_table("table7", runs, tmp_path / "tables", overrides, root=tmp_path)
    line = (
        "Decoding: math: task.protocol=llm_adapters (LLM-Adapters' evaluate.py: its own evaluation prompt), "
        "4 beams, up to 256 new tokens."
    )
    assert line in markdown and "70.00 ±0.00" in markdown  # both runs entered the table
    assert "LLM-Adapters' evaluate.py" in paths[1].read_text()
    assert line in render.summary_markdown(summarize(runs), runs)
    write_run(
        tmp_path,
        "glue",
        "roberta-base",
        "rte",
        method("lora", targets="QV"),
        0,
        {"rte": {"accuracy": 0.66}},
        headline=0.66,
    )
    glue = render_paper_table("table1", load_results(tmp_path), tmp_path / "tables", root=tmp_path)[0]
    assert "66.00 [1/3]" in glue and "Decoding" not in glue


def test_empty_outputs_render_empty_tables_and_a_missing_folder_is_an_error(tmp_path, capsys):
    code, out, err = _cli(capsys, "--outputs", str(tmp_path), "--table", "table2")
    assert code == 0 and err == "" and "no result.json found under" in out and "| ours " in out
    code, out, _ = _cli(capsys, "--outputs", str(tmp_path), "--problems")
    assert code == 0 and "no problems: no result.json found" in out
    for args in (["--table", "table2"], ["--problems"], []):
        code, out, err = _cli(capsys, "--outputs", str(tmp_path / "missing"), *args)
        assert code == 2 and out == "" and err.strip().splitlines() == [err.strip()]
        assert f"--outputs {tmp_path / 'missing'}: no such folder" in err
    assert not (tmp_path / "missing").exists() and not (tmp_path / "tables").exists()


def test_glue_table_joins_task_runs_and_counts_params(tmp_path):
    lora = method("lora", targets="QV")
    for seed, value in enumerate([0.70, 0.74]):
        for task in ["rte", "mrpc", "stsb", "cola", "sst2", "qnli", "mnli", "qqp"]:
            write_run(
                tmp_path,
                "glue",
                "roberta-base",
                task,
                lora,
                seed,
                {task: {"accuracy": value}},
                headline=value,
                adapter_params=294_912,
            )
    frame = compare(SPECS["table1"], load_results(tmp_path), planned=3)
    row = frame[(frame["model"] == "roberta-base") & (frame["label"] == "LoRA (r=8)")].set_index("column")
    assert row.loc["RTE", "ours"] == pytest.approx(72.0) and row.loc["Avg", "ours"] == pytest.approx(72.0)
    assert row.loc["Avg", "n"] == 2 and row.loc["Avg", "paper"] == pytest.approx(82.55)
    assert render.params_cell(row["params_ours"].iloc[0], row["params_paper"].iloc[0]) == "0.29"
    std = compare(SPECS["table5"], load_results(tmp_path), planned=3)  # Table 5: the std of the same runs
    rte = std[(std["model"] == "roberta-base") & (std["label"] == "LoRA (r=8)") & (std["column"] == "RTE")].iloc[0]
    assert rte["ours"] == pytest.approx(100 * 0.04 / math.sqrt(2)) and rte["paper"] == pytest.approx(0.51)


def test_table6_is_the_std_of_each_reasoning_average(tmp_path):
    for seed, value in enumerate([0.60, 0.62, 0.64]):
        write_run(tmp_path, "math", "llama-3-8b", "math", method("lora"), seed, uniform_math(value))
    frame = compare_table6(load_results(tmp_path), planned=3).set_index(["label", "column"])
    assert frame.loc[("LoRA (r=8)", "math_llama-3-8b"), "ours"] == pytest.approx(2.0)
    assert frame.loc[("LoRA (r=8)", "math_llama-3-8b"), "paper"] == pytest.approx(0.88)
    assert math.isnan(frame.loc[("LoRA (r=8)", "commonsense_llama-3-8b"), "ours"])


def test_efficiency_table_units(tmp_path):
    for seed, (seconds, memory) in enumerate([(1080, 23.5), (1140, 23.7)]):
        write_run(
            tmp_path,
            "efficiency",
            "llama-3-8b",
            "math",
            method("lora"),
            seed,
            math_metrics({"AddSub": 0.5}),
            adapter_params=4_718_592,
            train_s=seconds,
            peak_bytes=int(memory * 2**30),
        )
    frame = compare(SPECS["table4"], load_results(tmp_path), planned=3)
    lora = frame[frame["label"] == "LoRA (r=8)"].set_index("column")
    assert lora.loc["time_min", "ours"] == pytest.approx(18.5) and lora.loc["memory_GB", "ours"] == pytest.approx(23.6)
    assert lora.loc["params_M", "ours"] == pytest.approx(4.718592) and lora.loc["params_M", "paper"] == 4.72


def _cli(capsys, *args):
    """``python -m bora.tables *args`` in this process: (exit code, stdout, stderr)."""
    try:
        tables_main(list(args))
        code = 0
    except SystemExit as error:
        code = error.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_experiment_summary_and_errors(tmp_path, capsys):
    table7_results(tmp_path)
    code, out, _ = _cli(capsys, "--outputs", str(tmp_path), "--experiment", "math")
    assert code == 0 and "gemma-7b on math" in out and "72.00 ±2.00" in out and "'failed': 1" in out
    assert out.rstrip().endswith("(only successful runs enter the table)")  # the table ends the output
    assert (Path(os.environ["BORA_OUTPUT_DIR"]) / "tables" / "summary-math.md").is_file()  # rendered files: scratch
    code, _, err = _cli(capsys, "--outputs", str(tmp_path), "--experiment", "nothing")
    assert code == 2 and err.count("\n") == 1 and "no result.json" in err
    code, _, err = _cli(capsys, "--outputs", str(tmp_path), "--table", "table99")
    assert code == 2 and "unknown table 'table99'" in err


def test_rendering_tables_and_summaries_imports_neither_torch_nor_matplotlib(tmp_path):
    table7_results(tmp_path)
    script = (
        "import sys\nfrom bora.report.cli import main\n"
        f"for args in (['--table', 'table7'], ['--experiment', 'math'], ['--table', 'claims']):\n"
        f"    main(['--outputs', {str(tmp_path)!r}, *args])\n"
        "heavy = sorted({'torch', 'matplotlib'} & set(sys.modules))\n"
        "print('heavy modules:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy modules: []"
