"""Bad input to ``bora export`` and ``bora tables`` ends in one line (``error: ...``), a non-zero exit and no
traceback, and leaves nothing behind where it should not (issue 33, item 11).

The command-line cases run the tools as subprocesses, so what is checked is what a user sees; the rest call the
functions. One tiny run is trained for the whole file; the broken inputs are copies of it, cut off or relabelled.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bora.config import load_config
from bora.errors import BoraError
from bora.record import ErrorInfo, Status, read_record, write_record

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE},
        timeout=300,
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The ``error: ...`` line a tool ended with (after checking it failed, on that line and without a traceback)."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), output[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished run (status success, adapter saved) of the tiny encoder: two steps."""
    from bora.train import train

    root = tmp_path_factory.mktemp("trained")
    cfg = load_config([f"output_dir={root}", "trainer.max_steps=2", "task.max_eval_samples=4", "save_adapter=true"])
    train(cfg)
    run_dir = Path(cfg.run_dir)
    assert read_record(run_dir).ok and (run_dir / "adapter").is_dir()
    return run_dir


def copy_of(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def test_export_of_a_cut_off_result_json_is_one_line(trained_run, tmp_path):
    run = copy_of(trained_run, tmp_path / "run")
    text = (run / "result.json").read_text()
    (run / "result.json").write_text(text[: len(text) // 2])  # killed while writing it, or a copy cut short
    out = tmp_path / "peft"
    line = one_line_error(cli("bora.export", run, out))
    assert f"{run / 'result.json'} is unreadable" in line and "cut off" in line and "not valid JSON" in line
    assert not out.exists()


def test_export_of_a_run_that_did_not_succeed_is_refused(trained_run, tmp_path):
    """A failed run's adapter (kept, here, as a diverged run may keep the one it saved) is no result to publish."""
    from bora.export import export_run

    run = copy_of(trained_run, tmp_path / "run")
    error = ErrorInfo(type="Diverged", message="non-finite loss at step 2\nmore detail", step=2)
    write_record(run, read_record(run).model_copy(update={"status": Status.FAILED, "error": error}))
    out = tmp_path / "peft"
    line = one_line_error(cli("bora.export", run, out))
    assert f"{run} is not a finished run (status failed: Diverged: non-finite loss at step 2)" in line
    assert "status success" in line and "more detail" not in line
    assert not out.exists()

    write_record(run, read_record(run).model_copy(update={"status": Status.RUNNING, "error": None}))
    with pytest.raises(BoraError, match=r"is not a finished run \(status running\); only a run with status success"):
        export_run(run, out)
    assert not out.exists()


def test_export_into_a_path_under_a_file_is_one_line(trained_run, tmp_path):
    from bora.export import export_run

    a_file = tmp_path / "a_file.txt"
    a_file.write_text("mine\n")
    line = one_line_error(cli("bora.export", trained_run, a_file / "sub"))
    assert f"cannot export into {a_file / 'sub'}: {a_file} is a file, not a folder" in line
    assert "choose another out_dir" in line
    with pytest.raises(BoraError, match=f"cannot export into {a_file}: {a_file} is a file, not a folder"):
        export_run(trained_run, a_file)
    assert a_file.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]


def test_an_export_whose_writing_fails_leaves_nothing_behind(trained_run, tmp_path, monkeypatch):
    """A write that fails half way (a full disk) is one line, and the half-written export goes: the folders the
    export made are removed, an empty folder the user made is emptied, not removed."""
    import bora.adapters
    from bora.export import export_run

    def full_disk(model, directory, **kwargs):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "adapter_config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(directory) / "adapter_model.safetensors"))

    monkeypatch.setattr(bora.adapters, "export_peft_lora", full_disk)
    new = tmp_path / "new" / "peft"
    with pytest.raises(BoraError, match=f"writing the export into {new} failed: No space left on device"):
        export_run(trained_run, new)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(BoraError, match="No space left on device"):
        export_run(trained_run, mine)
    assert mine.is_dir() and not any(mine.iterdir())


def test_tables_into_a_path_under_a_file_is_one_line(tmp_path, capsys):
    from bora.report.cli import main

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("mine\n")
    out = a_file / "tables"
    line = one_line_error(cli("bora.tables", "--outputs", outputs, "--out", out, "--table", "table2"))
    assert line.startswith(f"error: --out {out}: {a_file} is a file, not a folder;")
    assert "pass --out a folder you can write to" in line

    for args in ([], ["--experiment", "smoke"], ["--table", "claims"]):  # every table, one, the claims check
        with pytest.raises(SystemExit) as exit_:
            main(["--outputs", str(outputs), "--out", str(a_file), *args])
        assert exit_.value.code != 0
        assert f"error: --out {a_file}: {a_file} is a file, not a folder;" in capsys.readouterr().err
    assert a_file.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt", "outputs"]

    main(["--outputs", str(outputs), "--out", str(out), "--problems"])  # writes nothing: --out does not matter
    assert "no problems" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_tables_into_a_read_only_folder_is_one_line(tmp_path, capsys):
    from bora.report.cli import main

    (tmp_path / "outputs").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["--outputs", str(tmp_path / "outputs"), "--out", str(locked / "tables"), "--table", "table2"])
        assert exit_.value.code != 0
        assert f"error: --out {locked / 'tables'}: {locked} is not writable;" in capsys.readouterr().err
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o700)
