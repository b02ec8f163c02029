"""The Makefile's reproduce targets run the right sweeps and render the right tables (checked with make -n)."""

import os
import subprocess
from pathlib import Path

import pytest

from bora.lockfile import read_pins

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str, *settings: str) -> str:
    """What ``make -n`` would run, with ``PY=python`` and any other ``settings`` (``-B``, ``NAME=value``)."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target, "PY=python", *settings], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "target, sweeps, renders",
    [
        ("reproduce-table1", ["table1"], ["table1"]),
        ("reproduce-table5", ["table1"], ["table5"]),
        ("reproduce-table6", ["table2", "table3"], ["table6"]),
        ("reproduce-table9", ["table9"], ["table9", "figure3b"]),
        ("reproduce-figure4", ["figure4"], ["figure4"]),
    ],
)
def test_reproduce_targets(target, sweeps, renders):
    commands = _dry_run(target)
    assert f"for experiment in {' '.join(sweeps)};" in commands
    assert "python -m bora.train -m experiment=$experiment" in commands
    assert f"for table in {' '.join(renders)}" in commands and "python -m bora.tables --table $table" in commands


def test_a_reproduce_target_takes_the_launcher_for_training_and_the_recipe_for_both():
    """`make reproduce-table2 LAUNCH=... ARGS=...`: the SLURM launcher reaches the sweep only; a recipe override
    reaches the sweep and the table, so that the table takes the runs the sweep made."""
    launch = "hydra/launcher=slurm hydra.launcher.partition=gpu"
    commands = _dry_run("reproduce-table2", f"LAUNCH={launch}", "ARGS=trainer.grad_accum=2")
    assert f"python -m bora.train -m experiment=$experiment trainer.grad_accum=2 {launch} || exit 1" in commands
    assert "python -m bora.tables --table $table trainer.grad_accum=2 || exit 1" in commands


def test_make_notebook_executes_into_outputs_and_leaves_the_tracked_notebook_alone():
    commands = _dry_run("notebook", "-o", ".venv/.installed", "OUTPUTS=/tmp/runs")
    assert "nbconvert --to notebook --execute" in commands and "--output-dir /tmp/runs/notebooks" in commands
    assert "--inplace" not in commands


def test_every_experiment_file_has_a_target():
    experiments = {p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")} - {"smoke", "smoke-llm"}
    listing = _dry_run("list")
    for experiment in experiments:
        assert f"bora.train -m experiment={experiment};" in listing


def test_study_target_runs_its_protocol_and_its_sweep_then_renders_from_results():
    commands = _dry_run("reproduce-cpu-glue")
    assert "for experiment in cpu-glue-protocol cpu-glue;" in commands
    assert "bora.tables --experiment cpu-glue-protocol --outputs results" in commands
    assert "bora.tables --table cpu-glue --outputs results" in commands


def _fake_tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)


def test_install_on_a_gpu_machine_stops_before_installing_the_cpu_wheel(tmp_path):
    _fake_tool(tmp_path / "fakebin", "nvidia-smi", "echo 'GPU 0: NVIDIA H100'")
    env = {**os.environ, "PATH": f"{tmp_path / 'fakebin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["make", "--no-print-directory", "install", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and not (tmp_path / "venv").exists()
    assert "this machine has an NVIDIA GPU; run 'make install TORCH_INDEX=https://download.pytorch.org/whl/cu126'" in (
        done.stderr
    )


def test_install_takes_torch_from_the_lock_or_the_cuda_build_of_its_release_then_the_hashed_lock():
    release = read_pins(ROOT / "requirements" / "torch-cpu.txt")["torch"].split("+")[0]
    cpu = _dry_run("install", "-B")
    assert "python -m pip install --quiet --require-hashes --no-deps -r requirements/torch-cpu.txt" in cpu
    cuda = _dry_run("install", "-B", "TORCH_INDEX=https://download.pytorch.org/whl/cu126")
    assert f'pip install --quiet "torch=={release}" --index-url "https://download.pytorch.org/whl/cu126"' in cuda
    for commands in (cpu, cuda):
        lines = commands.splitlines()
        lock = lines.index("python -m pip install --quiet --require-hashes -r requirements/lock.txt")
        assert lines[lock + 1] == "python -m pip install --quiet --no-deps --no-build-isolation -e ."
        assert lines[lock + 2] == "python -m bora.lockfile"


def test_wandb_sync_finds_every_offline_run(tmp_path):
    venv = tmp_path / "venv"
    _fake_tool(venv / "bin", "wandb", 'echo "wandb $@"')
    (venv / ".installed").touch()
    for run in ["exp/m/t/lora/seed=0-abc/wandb/offline-run-1", "exp/m/t/bora/seed=1-def/wandb/offline-run-2"]:
        (tmp_path / "outputs" / run).mkdir(parents=True)
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            f"{venv}/.installed",
            "wandb-sync",
            f"VENV={venv}",
            f"OUTPUTS={tmp_path / 'outputs'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stdout.splitlines() if x.startswith("wandb sync")][0]
    assert line.count("offline-run-") == 2
    empty = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            f"{venv}/.installed",
            "wandb-sync",
            f"VENV={venv}",
            f"OUTPUTS={tmp_path / 'none'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "no offline W&B runs under" in empty.stdout
