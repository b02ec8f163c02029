"""The Makefile's reproduce targets run the right sweeps and render the right tables (checked with make -n)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str) -> str:
    done = subprocess.run(["make", "-n", "--no-print-directory", target, "PY=python"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("target, sweeps, renders", [
    ("reproduce-table1", ["table1"], ["table1"]),
    ("reproduce-table5", ["table1"], ["table5"]),
    ("reproduce-table6", ["table2", "table3"], ["table6"]),
    ("reproduce-table9", ["table9"], ["table9", "figure3b"]),
    ("reproduce-figure4", ["figure4"], ["figure4"]),
])
def test_reproduce_targets(target, sweeps, renders):
    commands = _dry_run(target)
    assert f"for experiment in {' '.join(sweeps)};" in commands
    assert "python -m bora.train -m experiment=$experiment" in commands
    assert f"for table in {' '.join(renders)}" in commands and "python -m bora.tables --table $table" in commands


def test_every_experiment_file_has_a_target():
    experiments = {p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")} - {"smoke", "smoke-llm"}
    listing = _dry_run("list")
    for experiment in experiments:
        assert f"bora.train -m experiment={experiment};" in listing
