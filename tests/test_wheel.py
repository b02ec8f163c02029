"""bora as a built wheel, outside the checkout: configs, toy data and paper tables ship as package data.

The wheel is built without build isolation (offline), installed without dependencies into a fresh venv in a temporary
folder that borrows this environment's packages (a path line, so this environment's editable bora is not on it), and
``bora train`` / ``bora tables`` run in another temporary folder, writing under ``./outputs`` there.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from bora.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "source"  # a copy, links kept, so the build's own folders stay out of the checkout
    for folder in ["src", "conf", "data/toy"]:
        shutil.copytree(
            PROJECT_ROOT / folder,
            source / folder,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    for file in ["pyproject.toml", "README.md"]:
        shutil.copy2(PROJECT_ROOT / file, source / file)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            scratch / "dist",
            source,
        ],
        cwd=scratch,
    )
    wheel = next((scratch / "dist").glob("bora-*.whl"))
    venv = scratch / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=scratch)
    site = Path(
        _run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=scratch
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        cwd=scratch,
    )
    return venv


def test_the_wheel_carries_configs_toy_data_and_paper_tables(wheel_venv, tmp_path):
    script = (
        "import bora.paths as p, bora.report.specs, json; "
        "print(json.dumps([str(p.CONF_DIR), str(p.TOY_DATA_DIR), str(p.CHECKOUT), p.__file__]))"
    )
    conf, toy, checkout, module = json.loads(_run([wheel_venv / "bin" / "python", "-c", script], tmp_path).stdout)
    assert module.startswith(str(wheel_venv)) and conf.startswith(str(wheel_venv)) and checkout == "None"
    assert (Path(conf) / "config.yaml").is_file() and (Path(conf) / "experiment" / "table2.yaml").is_file()
    assert (Path(toy) / "glue" / "SST-2" / "train.tsv").is_file()
    shipped = {p.relative_to(PROJECT_ROOT / "conf") for p in (PROJECT_ROOT / "conf").rglob("*.yaml")}
    assert {p.relative_to(conf) for p in Path(conf).rglob("*.yaml")} == shipped


def test_bora_train_and_tables_run_from_any_folder(wheel_venv, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("BORA_OUTPUT_DIR", "PYTHONPATH")}
    bora = wheel_venv / "bin" / "bora"
    _run([bora, "train", "trainer.max_steps=4", "task.max_eval_samples=8"], tmp_path, env)
    [result] = (tmp_path / "outputs").rglob("result.json")
    record = json.loads(result.read_text())
    assert record["status"] == "success" and record["metrics"]
    assert record["config"]["task"]["data_dir"].startswith(str(wheel_venv))  # the packaged toy data
    assert record["git"] == {"commit": None, "dirty": None} and record["lock"] == {}  # no checkout: nothing claimed
    tables = _run([bora, "tables", "--experiment", "default"], tmp_path, env)
    assert "lora" in tables.stdout.lower()
    assert list((tmp_path / "outputs" / "tables").glob("summary-default.*"))
