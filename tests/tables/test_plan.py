"""bora.plan: the runs an experiment launches, their exact adapter parameters (= the paper's #Params), their status."""

import json
import random
from pathlib import Path

import pytest

from bora.config import load_config, resolved
from bora.config.identity import run_identity
from bora.config.sweep import compose_jobs, expand_sweep
from bora.plan import main as plan_main
from bora.plan import plan
from bora.record import RunRecord, write_record
from bora.report.paper import paper_table, paper_tag
from bora.report.specs import SPECS

# Experiments of the paper tables with a #Params column. seed=0 (and one GLUE task) keeps the test fast: the
# count does not depend on either, and the full sweeps are checked by the tests below.
PARAM_TABLES = {
    "table1": ["seed=0", "task=rte"],
    "table2": ["seed=0"],
    "table3": ["seed=0"],
    "table4": ["seed=0"],
    "table8": ["seed=0"],
    "table9": ["seed=0"],
    "sbora-math": [],
    "sbora-commonsense": [],
}
# Printed #Params that disagree with the same adapter elsewhere in the same source (not with our count).
MISPRINTS = {
    (
        "sbora-math",
        "llama-7b",
        "dora_r32_a64_d0.05_QKVUD",
    ): "the SBoRA README prints 57.4M here and 57.0M in its commonsense table for the same adapter (ours 56.98M)"
}


def _paper_rounding(text: str) -> float:
    """Half a unit of the last digit the paper prints (4.72 -> 0.005, 18.9 -> 0.05)."""
    return 0.5 * 10 ** -len(text.partition(".")[2])


@pytest.mark.parametrize("table", sorted(PARAM_TABLES))
def test_planned_params_match_every_paper_row(table):
    spec = SPECS[table]
    planned = {
        (row["model"], row["method_tag"]): row["adapter_params"]
        for row in plan([f"experiment={spec.experiment}", *PARAM_TABLES[table]])
    }
    paper = paper_table(spec.paper_csv)
    for _, row in paper.iterrows():
        key = (row["model"], paper_tag(row, spec.targets))
        assert key in planned, f"{table}: paper row {key} is not in conf/experiment/{spec.experiment}.yaml's sweep"
        params = planned[key] / 1e6
        if (table, *key) in MISPRINTS:
            continue
        assert abs(params - float(row["params_M"])) <= _paper_rounding(row["params_M"]), (table, key, planned[key])
    assert len(planned) == len(paper)  # nothing planned that the table does not show


def test_table7_sweep_covers_its_rows():
    spec = SPECS["table7"]
    planned = {(row["model"], row["method_tag"]) for row in plan(["experiment=table7", "seed=0"], with_params=False)}
    paper = paper_table(spec.paper_csv)
    assert planned == {(row["model"], paper_tag(row, spec.targets)) for _, row in paper.iterrows()}


@pytest.mark.parametrize(
    "experiment, runs_planned",
    [
        ("table1", 384),
        ("table2", 72),
        ("table3", 72),
        ("table4", 15),
        ("table7", 27),
        ("table8", 30),
        ("table9", 126),
        ("figure4", 12),
    ],
)
def test_sweep_sizes(experiment, runs_planned):
    jobs = expand_sweep([f"experiment={experiment}"])
    assert len(jobs) == runs_planned and len({tuple(sorted(job)) for job in jobs}) == runs_planned


def test_fast_composition_equals_full_composition():
    """compose_jobs assembles most configs from parts; a sample must equal Hydra composing each job in full.
    Table 7 swaps two config groups (model, row), Table 8 also sets values (method.targets, seed)."""
    for experiment, extra in [("table7", []), ("table8", [])]:
        jobs = expand_sweep([f"experiment={experiment}", *extra])
        configs = compose_jobs(jobs)
        for index in random.Random(0).sample(range(len(jobs)), 3):
            full = resolved(load_config(jobs[index]))
            assert json.dumps(configs[index], sort_keys=True) == json.dumps(full, sort_keys=True), jobs[index]


def test_command_line_narrows_or_extends_the_sweep():
    rows = plan(["experiment=table8", "seed=1", "+experiment/rows/main=lora-r8"], with_params=False)
    assert len(rows) == 5 and {r["seed"] for r in rows} == {1} and {r["method"] for r in rows} == {"lora"}
    assert [r["targets"] for r in rows] == ["Q", "QV", "QKV", "QKVUD", "QKVOGUD"]


def test_status_of_each_run(tmp_path):
    overrides = ["experiment=smoke", f"output_dir={tmp_path}"]
    assert [r["status"] for r in plan(overrides, with_params=False)] == ["missing"] * 4
    configs = compose_jobs(expand_sweep(overrides))
    statuses = ["success", "failed", "running", "success"]
    # the last directory holds a success of another config (its own identity): a conflict
    recorded = [*configs[:3], {**configs[3], "trainer": {**configs[3]["trainer"], "lr": 0.5}}]
    for config, status, where in zip(recorded, statuses, configs):
        success = status == "success"
        write_record(
            Path(where["run_dir"]),
            RunRecord(
                status=status,
                experiment="smoke",
                model="m",
                method="lora",
                task=config["task"]["name"],
                seed=0,
                run_dir="r",
                identity=run_identity(config),
                group="g",
                config=config,
                started_at="2026-01-01T00:00:00+00:00",
                metrics={config["task"]["name"]: {"accuracy": 0.5}} if success else None,
                headline={"metric": "accuracy", "value": 0.5} if success else None,
            ),
        )
    statuses = [r["status"] for r in plan(overrides, with_params=False)]
    assert statuses == ["done", "failed", "unfinished", "conflict"]


@pytest.mark.parametrize(
    "sweep, planned", [(["seed=0,1,2"], 6), (["method=lora,bora", "seed=3"], 2), (["trainer.lr=1e-3,3e-3"], 8)]
)
def test_plan_expands_command_line_sweeps_as_multirun_does(sweep, planned):
    rows = plan(["experiment=smoke", *sweep], with_params=False)
    assert len(rows) == planned and len({r["run_dir"] for r in rows}) == planned


def test_plan_names_the_settings_a_sweep_varies_beyond_the_method(tmp_path):
    rows = plan(
        [
            "model=tiny-decoder",
            "method=bora",
            "task=toy-math",
            "task.protocol=bora_authors,llm_adapters",
            f"output_dir={tmp_path}",
        ],
        with_params=False,
    )
    assert [r["setting"] for r in rows] == [
        "task.adapter_dtype=bf16 task.num_beams=1 task.protocol=bora_authors trainer.adapter_dtype=bf16",
        "task.adapter_dtype=fp32 task.num_beams=4 task.protocol=llm_adapters trainer.adapter_dtype=fp32",
    ]
    assert rows[0]["identity"] != rows[1]["identity"]


def test_cli_prints_csv_and_a_summary(tmp_path, capsys):
    plan_main(["experiment=smoke", f"output_dir={tmp_path}"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(
        "model,task,method,r,blocks,heads,targets,method_tag,setting,seed,identity,adapter_params,status"
    )
    assert lines[1].startswith("tiny-encoder,toy-cls,lora,8,,,QV,lora_r8_a16_d0.05_QV,,0,")  # no setting varies
    assert lines[1].split(",")[11:13] == ["4096", "missing"]
    assert len(lines) == 5 and err.strip() == "experiment=smoke: 4 runs planned: 4 missing"
    with pytest.raises(SystemExit) as exit_info:
        plan_main(["experiment=table99"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "table99" in err
