"""The shared trainer end to end on the tiny models: result files, resume, determinism, failures, W&B, sweeps."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bora.cli import load_config
from bora.errors import BoraError
from bora.runs import latest_checkpoint
from bora.train import train

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=12", "trainer.logging_steps=4", "task.max_eval_samples=16"]


def result_of(run_dir) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


def run_cli(args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "bora.train", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def test_smoke_sweep_writes_one_successful_result_per_run(smoke_outputs):
    results = [json.loads(p.read_text()) for p in sorted(Path(smoke_outputs).rglob("result.json"))]
    assert len(results) == 8  # (encoder + decoder) x (lora, bora) x seeds 0, 1
    assert {r["status"] for r in results} == {"success"}
    assert {(r["model"], r["method"], r["seed"]) for r in results} == {
        (m, meth, s) for m in ("tiny-encoder", "tiny-decoder") for meth in ("lora", "bora") for s in (0, 1)}
    for r in results:
        run_dir = Path(r["run_dir"])
        assert run_dir.parent.name.startswith(r["method"]) and run_dir.name == f"seed={r['seed']}"
        assert r["adapter_params"] > 0 and r["train"]["global_steps"] > 0
        assert r["versions"]["torch"] and r["git"]["commit"] and r["hardware"]["cpu_count"]
        assert r["peak_memory"]["train"]["bytes"] > 0 and r["eval"]["wall_time_s"] >= 0
        assert (run_dir / "adapter").is_dir() and not (run_dir / "checkpoints").exists()
        losses = [e["loss"] for e in r["train"]["loss_history"]]
        assert losses[-1] < losses[0], f"{run_dir}: training loss did not fall ({losses[0]} -> {losses[-1]})"
    bora = [r for r in results if r["method"] == "bora"]
    lora = [r for r in results if r["method"] == "lora"]
    assert all(b["adapter_params"] > lo["adapter_params"] for b, lo in zip(bora, lora))  # the b^2 r extra


def test_rerunning_a_finished_sweep_trains_nothing(smoke_outputs):
    before = {p: p.stat().st_mtime_ns for p in Path(smoke_outputs).rglob("result.json")}
    proc = run_cli(["-m", "experiment=smoke"], env={"BORA_OUTPUT_DIR": str(smoke_outputs)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("skip:") == 4 and "train_runtime" not in proc.stdout + proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in Path(smoke_outputs).rglob("result.json")}


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = load_config(["method=bora", f"output_dir={tmp_path / name}", *FAST])
        train(cfg)
        runs.append(result_of(cfg.run_dir))
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert runs[0]["train"]["loss_history"] == runs[1]["train"]["loss_history"]
    other_seed = load_config(["method=bora", "seed=1", f"output_dir={tmp_path / 'c'}", *FAST])
    train(other_seed)
    assert result_of(other_seed.run_dir)["train"]["loss_history"] != runs[0]["train"]["loss_history"]


def test_killed_run_resumes_from_its_checkpoint_and_completes(tmp_path):
    args = ["method=lora", "trainer.max_steps=300", "trainer.save_steps=10", "trainer.logging_steps=10",
            "task.max_eval_samples=8"]
    env = {**os.environ, "BORA_OUTPUT_DIR": str(tmp_path)}
    cfg = load_config([f"output_dir={tmp_path}", *args])
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "bora.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # Wait for a complete checkpoint (HF writes trainer_state.json last); the kill may still land mid-write of a
    # later one, which resume must skip, as it must skip the half-written one we add below.
    while time.time() < deadline and latest_checkpoint(checkpoints) is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(checkpoints) is not None, "no complete checkpoint before the kill"
    (checkpoints / "checkpoint-290").mkdir()  # as if killed while writing step 290 (fails if the run got that far)
    assert result_of(cfg.run_dir)["status"] == "running"  # a killed run is not a result

    rerun = run_cli(args, env={"BORA_OUTPUT_DIR": str(tmp_path)})
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = result_of(cfg.run_dir)
    assert result["status"] == "success" and result["train"]["global_steps"] == 300
    assert "checkpoint-" in result["train"]["resumed_from"]
    assert "checkpoint-290" not in result["train"]["resumed_from"]


def test_failed_run_is_recorded_and_exits_nonzero(tmp_path):
    args = ["task.data_dir=/nonexistent/glue", *FAST]
    proc = run_cli(args, env={"BORA_OUTPUT_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert "/nonexistent/glue" in proc.stderr and "Traceback" not in proc.stderr
    result = result_of(load_config([f"output_dir={tmp_path}", *args]).run_dir)
    assert result["status"] == "failed" and "/nonexistent/glue" in result["error"]["message"]
    assert "metrics" not in result


def test_a_different_config_never_overwrites_a_finished_run(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST])
    train(cfg)
    before = (Path(cfg.run_dir) / "result.json").read_text()
    changed = load_config([f"output_dir={tmp_path}", *FAST, "trainer.lr=0.5"])
    with pytest.raises(BoraError, match="trainer.lr"):
        train(changed)
    assert (Path(cfg.run_dir) / "result.json").read_text() == before


def test_wandb_logs_offline_and_always_finishes(tmp_path):
    import wandb

    cfg = load_config(["logger=wandb", f"output_dir={tmp_path}", *FAST])
    train(cfg)
    assert wandb.run is None  # finished
    offline = list((Path(cfg.run_dir) / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))

    broken = load_config(["logger=wandb", f"output_dir={tmp_path / 'b'}", "task.data_dir=/nonexistent", *FAST])
    with pytest.raises(BoraError):
        train(broken)
    assert wandb.run is None  # finished on the error path too


def test_logger_none_writes_no_wandb_files(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST])
    train(cfg)
    assert not list(Path(tmp_path).rglob("wandb"))


def test_local_launcher_runs_sweep_jobs_side_by_side(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "experiment=smoke", *FAST],
                   env={"BORA_OUTPUT_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in Path(tmp_path).rglob("result.json")]
    assert len(results) == 4 and {r["status"] for r in results} == {"success"}
    assert "Joblib" in proc.stdout + proc.stderr


def test_torchrun_data_parallel_on_cpus_writes_one_result(tmp_path):
    """Two processes (gloo) share the data: the same steps cover twice the epochs of a single process."""
    args = ["method=lora", "trainer.device=cpu", "trainer.max_steps=8", "task.max_eval_samples=8"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "bora.train", *args],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "BORA_OUTPUT_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list(Path(tmp_path).rglob("result.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    steps_per_epoch = math.ceil(result["train"]["examples"] / (2 * result["config"]["trainer"]["batch_size"]))
    assert result["status"] == "success" and result["train"]["epochs"] == pytest.approx(8 / steps_per_epoch)
