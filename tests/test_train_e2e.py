"""The shared trainer end to end on the tiny models: result files, resume, determinism, failures, W&B, sweeps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wandb_offline import offline_run

from bora.config import load_config, resolved
from bora.config.identity import run_identity
from bora.config.schema import validate
from bora.errors import BoraError
from bora.runs import latest_checkpoint
from bora.train import train
from bora.training import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=12", "trainer.logging_steps=4", "task.max_eval_samples=16"]
# a BoRA generation run in seconds: 2 steps, 2 questions of 4 new tokens
TINY_GENERATION = [
    "model=tiny-decoder",
    "task=toy-math",
    "method=bora",
    "trainer.max_steps=2",
    "task.max_eval_samples=2",
    "task.max_new_tokens=4",
]


def wait_for(path: Path, text: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not (path.exists() and text in path.read_text()):
        time.sleep(0.2)
    assert path.exists() and text in path.read_text(), f"{text!r} never appeared in {path}"


def result_of(run_dir) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


def run_cli(args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "bora.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


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
    args = [
        "method=lora",
        "trainer.max_steps=300",
        "trainer.save_steps=10",
        "trainer.logging_steps=10",
        "task.max_eval_samples=8",
    ]
    env = {**os.environ, "BORA_OUTPUT_DIR": str(tmp_path)}
    cfg = load_config([f"output_dir={tmp_path}", *args])
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bora.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    # Wait for a complete checkpoint (HF writes trainer_state.json last); the kill may still land mid-write of a
    # later one, which resume must skip, as it must skip the half-written one we add below.
    while time.time() < deadline and latest_checkpoint(checkpoints) is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(checkpoints) is not None, "no complete checkpoint before the kill"
    (checkpoints / "checkpoint-290").mkdir()  # as if killed while writing step 290 (fails if the run got that far)
    killed = result_of(cfg.run_dir)
    assert killed["status"] == "running"  # a killed run is not a result

    rerun = run_cli(args, env={"BORA_OUTPUT_DIR": str(tmp_path)})
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = result_of(cfg.run_dir)
    assert result["status"] == "success" and result["train"]["global_steps"] == 300
    assert "checkpoint-" in result["train"]["resumed_from"] and "resuming" in rerun.stdout
    assert "checkpoint-290" not in result["train"]["resumed_from"]
    assert result["wandb_run_id"] == killed["wandb_run_id"]  # the resumed attempt continues its W&B run


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR2, 140)])
def test_a_signal_stops_with_a_checkpoint_and_the_rerun_resumes_with_the_same_losses(tmp_path, signum, code):
    """SIGTERM (SLURM pre-emption), Ctrl-C or SIGUSR2 (SLURM's time-limit warning; without submitit, nothing to
    requeue): status interrupted, one line naming the step and the checkpoint, exit 130/143/140; the rerun resumes
    there, and its mean loss covers every step, equal to an uninterrupted run's."""
    args = [
        "method=lora",
        "trainer.max_steps=200",
        "trainer.save_steps=1000",
        "trainer.logging_steps=10",
        "task.max_eval_samples=8",
        "save_adapter=false",
    ]
    env = {**os.environ, "BORA_OUTPUT_DIR": str(tmp_path / "a")}
    cfg = load_config([f"output_dir={tmp_path / 'a'}", *args])
    proc = subprocess.Popen(
        [sys.executable, "-m", "bora.train", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(Path(cfg.run_dir) / "train.log", "trainable incl. head")
    time.sleep(1.5)  # into training
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    lines = [line for line in err.splitlines() if "interrupted" in line]  # the rest is progress bars
    assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1]
    assert "interrupted at step" in lines[0] and "rerun resumes from checkpoint-" in lines[0]
    interrupted = result_of(cfg.run_dir)
    assert interrupted["status"] == "interrupted" and "Traceback" not in err
    step = interrupted["error"]["step"]
    assert 0 < step < 200 and (Path(cfg.run_dir) / "checkpoints" / f"checkpoint-{step}").is_dir()

    rerun = run_cli(args, env={"BORA_OUTPUT_DIR": str(tmp_path / "a")})
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = result_of(cfg.run_dir)
    whole = load_config([f"output_dir={tmp_path / 'b'}", *args])
    train(whole)
    uninterrupted = result_of(whole.run_dir)
    assert resumed["train"]["resumed_from"].endswith(f"checkpoint-{step}")
    assert resumed["train"]["mean_loss"] == pytest.approx(uninterrupted["train"]["mean_loss"], rel=1e-4)
    assert resumed["metrics"]["toy-cls"] == pytest.approx(uninterrupted["metrics"]["toy-cls"])


def test_failed_run_is_recorded_and_exits_nonzero(tmp_path):
    args = ["task.data_dir=/nonexistent/glue", *FAST]
    proc = run_cli(args, env={"BORA_OUTPUT_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert "/nonexistent/glue" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
    assert "HYDRA_FULL_ERROR" not in proc.stderr  # Hydra's hint is for tracebacks, not for our one-line errors
    result = result_of(load_config([f"output_dir={tmp_path}", *args]).run_dir)
    assert result["status"] == "failed" and "/nonexistent/glue" in result["error"]["message"]
    assert result["metrics"] is None and result["headline"] is None


def test_a_batch_larger_than_the_training_split_is_refused_not_recorded_as_run(tmp_path):
    """toy-cls has 400 training examples: a batch of 1000 would train every step on 400 under a record saying 1000."""
    args = ["trainer.batch_size=1000", *FAST]
    proc = run_cli(args, env={"BORA_OUTPUT_DIR": str(tmp_path)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "bad value trainer.batch_size=1000: task toy-cls has 400 training examples" in proc.stderr
    result = result_of(load_config([f"output_dir={tmp_path}", *args]).run_dir)
    assert result["status"] == "failed" and result["train"] is None and result["metrics"] is None


def test_a_sweep_over_any_key_gives_one_run_each(tmp_path):
    """trainer.lr=1e-3,3e-3: two successful runs, one after another and side by side, both in the results frame."""
    from bora.report.aggregate import load_results, summarize

    for name, launcher in [("seq", []), ("par", ["hydra/launcher=local", "hydra.launcher.n_jobs=2"])]:
        out = tmp_path / name
        proc = run_cli(["-m", *launcher, "trainer.lr=1e-3,3e-3", *FAST], env={"BORA_OUTPUT_DIR": str(out)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = [json.loads(p.read_text()) for p in out.rglob("result.json")]
        assert sorted(r["config"]["trainer"]["lr"] for r in results) == [1e-3, 3e-3]
        assert {r["status"] for r in results} == {"success"}
        summary = summarize(load_results(out))
        assert set(summary["setting"]) == {"trainer.lr=0.001", "trainer.lr=0.003"}


def test_two_identical_runs_started_together_train_once(tmp_path):
    env = {**os.environ, "BORA_OUTPUT_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bora.train", *FAST],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(out.count("done:") for out in outs) == [0, 1] and sum(out.count("skip:") for out in outs) == 1
    assert len(list(tmp_path.rglob("result.json"))) == 1


@pytest.mark.parametrize("lr", ["1e25", "1e9"])
def test_a_diverged_run_fails_at_once_and_enters_no_table(tmp_path, lr):
    proc = run_cli(
        ["trainer.max_steps=300", f"trainer.lr={lr}", "task.max_eval_samples=8"], env={"BORA_OUTPUT_DIR": str(tmp_path)}
    )
    assert proc.returncode == 1 and "diverged at step" in proc.stderr and "Traceback" not in proc.stderr
    result = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert result["status"] == "failed" and result["error"]["type"] == "Diverged"
    assert result["error"]["step"] < 10 and result["metrics"] is None
    from bora.report.aggregate import load_results, successful

    assert successful(load_results(tmp_path)).empty


def test_force_keeps_the_success_until_the_rerun_succeeds(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST])
    train(cfg)
    run_dir = Path(cfg.run_dir)
    first = result_of(run_dir)
    adapter = (run_dir / "adapter" / "bora_adapter.safetensors").read_bytes()
    broken = load_config([f"output_dir={tmp_path}", *FAST, "force=true", "task.data_dir=/nonexistent/glue"])
    assert broken.run_dir == cfg.run_dir  # a location is not identity: the same run
    with pytest.raises(BoraError, match="/nonexistent/glue"):
        train(broken)
    assert result_of(run_dir) == first and (run_dir / "adapter" / "bora_adapter.safetensors").read_bytes() == adapter
    assert result_of(run_dir / ".attempt")["status"] == "failed"  # the failed rerun, recorded beside

    train(load_config([f"output_dir={tmp_path}", *FAST, "force=true"]))
    second = result_of(run_dir)
    kept = list(run_dir.glob("result.replaced-*.json"))
    assert second["status"] == "success" and second["started_at"] >= first["started_at"]
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == first
    assert len(list(run_dir.glob("adapter.replaced-*"))) == 1 and not (run_dir / ".attempt").exists()
    assert second["wandb_run_id"] != first["wandb_run_id"]


def test_a_full_disk_fails_with_one_line_and_records_it(tmp_path, monkeypatch):
    import errno

    import bora.adapters

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "adapter"))

    monkeypatch.setattr(bora.adapters, "save_adapters", full)
    cfg = load_config([f"output_dir={tmp_path}", *FAST])
    with pytest.raises(BoraError, match="cannot write .*adapter: the disk is full"):
        train(cfg)
    assert result_of(cfg.run_dir)["status"] == "failed"


def test_a_bf16_default_falls_back_to_fp32_on_a_cpu_and_says_so(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST, "task.precision=bf16"])  # the task's default, inherited
    train(cfg)
    result = result_of(cfg.run_dir)
    assert result["status"] == "success" and result["precision"] == {"requested": "bf16", "used": "fp32"}
    assert any("trained in fp32 instead" in notice for notice in result["notices"])
    proc = run_cli(["trainer.precision=bf16", *FAST], env={"BORA_OUTPUT_DIR": str(tmp_path / "b")})
    if cpu_has_bf16():  # asked for explicitly, a CPU with native bf16 trains in bf16 autocast
        assert proc.returncode == 0, proc.stderr
        [record] = [json.loads(p.read_text()) for p in (tmp_path / "b").rglob("result.json")]
        assert record["precision"] == {"requested": "bf16", "used": "bf16"} and not record["notices"]
        return
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: trainer.precision=bf16 cannot train on a CPU without native bf16 (AVX512-BF16 or AMX); use "
        "trainer.precision=fp32 (or run on a GPU that supports it)"
    ]
    assert not list((tmp_path / "b").rglob("result.json"))


def test_an_unreachable_hub_model_is_one_line_naming_model_path(tmp_path):
    proc = run_cli(["model=roberta-base", *FAST], env={"BORA_OUTPUT_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "model.path=FacebookAI/roberta-base: cannot load it from the Hugging Face hub" in proc.stderr
    assert "pass model.path=/path/to/local/folder" in proc.stderr


def test_a_rank_above_a_layer_width_is_recorded_as_a_notice(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST, "method.r=100"])
    with pytest.warns(UserWarning, match="method.r=100 exceeds the width"):
        train(cfg)
    assert any("method.r=100 exceeds the width of 4 adapted layers" in n for n in result_of(cfg.run_dir)["notices"])


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


def test_wandb_groups_the_seeds_of_a_configuration_and_logs_the_record(tmp_path):
    """Read back from the offline run files: the group is the configuration without its seed (two seeds, one
    group), the job type the experiment, our config at the top level with HF's arguments under `hf` only, and the
    result.json (with the predictions of a generation task) an artifact of the run."""
    records = []
    for seed in (0, 1):
        cfg = load_config(["logger=wandb", f"output_dir={tmp_path}", f"seed={seed}", *FAST])
        train(cfg)
        records.append((result_of(cfg.run_dir), offline_run(Path(cfg.run_dir))))
    (first, logged), (second, logged_too) = records
    assert logged["group"] == logged_too["group"] == f"tiny-encoder/toy-cls/lora_r8_a16_d0.05_QV-{first['group'][:8]}"
    assert first["identity"] != second["identity"] and first["group"] == second["group"]
    assert logged["job_type"] == "default"  # the experiment
    assert {"model", "method", "task", "trainer", "seed", "hf"} <= set(logged["config"])
    assert "learning_rate" not in logged["config"] and "per_device_train_batch_size" not in logged["config"]
    assert logged["config"]["hf"]["training_arguments"]["learning_rate"] == first["config"]["trainer"]["lr"]
    [artifact] = logged["artifacts"]
    assert artifact["type"] == "run-result" and list(artifact["files"]) == ["result.json"]
    logged_record = json.loads(Path(artifact["files"]["result.json"]).read_text())
    assert logged_record == first

    generation = load_config(["logger=wandb", f"output_dir={tmp_path / 'gen'}", *TINY_GENERATION])
    train(generation)
    [artifact] = offline_run(Path(generation.run_dir))["artifacts"]
    assert sorted(artifact["files"]) == ["predictions/finished.json", "predictions/toy_arith.jsonl", "result.json"]


def test_logger_none_writes_no_wandb_files(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST])
    train(cfg)
    assert not list(Path(tmp_path).rglob("wandb"))


def test_local_launcher_runs_sweep_jobs_side_by_side(tmp_path):
    proc = run_cli(
        ["-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "experiment=smoke", *FAST],
        env={"BORA_OUTPUT_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in Path(tmp_path).rglob("result.json")]
    assert len(results) == 4 and {r["status"] for r in results} == {"success"}
    assert "Joblib" in proc.stdout + proc.stderr


def _launch(processes: int, args: list[str], outputs: Path) -> dict:
    """One run with 1 process, or with ``processes`` data-parallel ranks (torchrun, gloo on CPUs); its record."""
    # --standalone: a free port of its own, so two of these on two test workers never meet
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    launcher = launcher if processes > 1 else []
    proc = subprocess.run(
        [sys.executable, *launcher, "-m", "bora.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BORA_OUTPUT_DIR": str(outputs)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list(outputs.rglob("result.json"))
    assert len(results) == 1  # rank 0 alone writes
    return json.loads(results[0].read_text())


def test_torchrun_shards_evaluation_and_gathers_the_same_predictions(tmp_path):
    """Evaluation split between 2 processes gathers the bytes one process writes. The default protocol decodes in
    file order, so each rank takes whole batches (9 questions in batches of 4: rank 0 questions 0-3 and 8, rank 1
    questions 4-7), every batch padded as in one process. Untrained (max_steps=0), so both evaluate the same weights:
    trained ones differ in the last bits between 1 and 2 processes (test_grad_accum_and_processes_train_the_same_steps
    checks the steps), and a random tiny decoder's near-tied logits turn that into other generations."""
    args = [
        "model=tiny-decoder",
        "task=toy-math",
        "method=lora",
        "trainer.device=cpu",
        "trainer.max_steps=0",
        "task.max_eval_samples=9",
        "task.max_new_tokens=8",
        "task.generation_engine=padded",
        "trainer.eval_batch_size=4",
    ]
    one, two = _launch(1, args, tmp_path / "one"), _launch(2, args, tmp_path / "two")
    assert (one["hardware"]["processes"], two["hardware"]["processes"]) == (1, 2)
    assert one["identity"] == two["identity"]  # the world size is not part of the recipe
    predictions = [
        (Path(run["run_dir"]) / "predictions" / "toy_arith.jsonl").read_text().splitlines() for run in (one, two)
    ]
    assert len(predictions[0]) == 9 and predictions[1] == predictions[0]
    assert two["metrics"] == one["metrics"]


# Dropout off (adapter and model), so that splitting a batch cannot change a single random draw.
NO_DROPOUT = {
    "tiny-encoder": [
        "method.dropout=0",
        "+model.arch.hidden_dropout_prob=0",
        "+model.arch.attention_probs_dropout_prob=0",
    ],
    "tiny-decoder": ["method.dropout=0", "task=toy-math", "task.max_new_tokens=4"],
}


@pytest.mark.parametrize("model, method", [("tiny-encoder", "lora"), ("tiny-decoder", "lora"), ("tiny-encoder", "ia3")])
def test_grad_accum_and_processes_train_the_same_steps(tmp_path, model, method):
    """A global batch of 8 as 1 x 8, 2 micro-batches of 4 (grad_accum) or 2 processes of 4 (torchrun): the same
    loss and gradient norm at every step, for our adapters and PEFT's (ia3). (transformers scaled an encoder's loss
    by grad_accum x processes: its forward takes **kwargs, so the Trainer took it for a token-count-normalised loss.)"""
    args = [
        f"model={model}",
        f"method={method}",
        "trainer.device=cpu",
        "trainer.max_steps=4",
        "trainer.batch_size=8",
        "trainer.logging_steps=1",
        "task.max_eval_samples=4",
        *NO_DROPOUT[model],
    ]
    runs = {
        "1 x 8": _launch(1, args, tmp_path / "one"),
        "grad_accum 2 x 4": _launch(1, [*args, "trainer.grad_accum=2"], tmp_path / "accum"),
        "2 processes x 4": _launch(2, args, tmp_path / "two"),
    }
    curves = {name: run["train"]["loss_history"] for name, run in runs.items()}
    reference = curves["1 x 8"]
    assert [point["step"] for point in reference] == [1, 2, 3, 4]
    for name, curve in curves.items():
        assert [p["loss"] for p in curve] == pytest.approx([p["loss"] for p in reference], rel=1e-4), name
        assert [p["grad_norm"] for p in curve] == pytest.approx([p["grad_norm"] for p in reference], rel=1e-4), name
        assert runs[name]["train"]["mean_loss"] == pytest.approx(runs["1 x 8"]["train"]["mean_loss"], rel=1e-4)


# toy-cls's 400 examples in batches of 24: 16 whole batches and a last one of 16, split 12 + 4 under grad_accum=2
PARTIAL = [
    "model=tiny-encoder",
    "method=lora",
    "trainer.device=cpu",
    "trainer.epochs=1",
    "trainer.batch_size=24",
    "trainer.logging_steps=1",
    "task.max_eval_samples=4",
    *NO_DROPOUT["tiny-encoder"],
]


def _losses(run: dict) -> list[float]:
    return [point["loss"] for point in run["train"]["loss_history"]]


def test_an_epochs_partial_last_batch_trains_the_same_under_grad_accum(tmp_path):
    """The step of the last 16 examples, as 12 + 4 micro-batches, is the step one batch of 16 trains (HF averaged the
    two micro-batch means: 0.71616 where one process had 0.71179)."""
    one = _launch(1, PARTIAL, tmp_path / "one")
    accum = _launch(1, [*PARTIAL, "trainer.grad_accum=2"], tmp_path / "accum")
    assert [p["step"] for p in one["train"]["loss_history"]] == list(range(1, 18))
    assert _losses(accum) == pytest.approx(_losses(one), rel=1e-5)
    assert accum["train"]["mean_loss"] == pytest.approx(one["train"]["mean_loss"], rel=1e-5)


def test_processes_refuse_a_partial_batch_and_train_whole_ones_with_drop_last(tmp_path):
    """Two processes cannot split the last 16 examples as one process trains them (accelerate would repeat examples
    to fill the batch): refused at start-up with the fix, nothing recorded as a success. With trainer.drop_last=true
    1 and 2 processes train the same 16 whole batches, under an identity of their own."""
    outputs = tmp_path / "refused"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "bora.train", *PARTIAL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BORA_OUTPUT_DIR": str(outputs)},
    )
    assert proc.returncode != 0
    assert (
        "trainer.batch_size=24 leaves a last batch of 16 of task toy-cls's 400 training examples, which 2 processes "
        "cannot split as one process trains it; set trainer.drop_last=true" in proc.stderr
    )
    assert "/bora/" not in proc.stderr  # no traceback of ours (torchrun adds its own summary)
    assert not [p for p in outputs.rglob("result.json") if json.loads(p.read_text())["status"] == "success"]

    whole = [*PARTIAL, "trainer.drop_last=true"]
    one, two = _launch(1, whole, tmp_path / "one"), _launch(2, whole, tmp_path / "two")
    assert [p["step"] for p in one["train"]["loss_history"]] == list(range(1, 17))
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)
    assert one["identity"] == two["identity"] != run_identity(resolved(load_config(PARTIAL)))  # a recipe of its own


def test_a_global_batch_that_does_not_split_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(
        BoraError,
        match=r"trainer.batch_size=6 \(the global batch\) does not split into "
        r"trainer.grad_accum=1 x 4 processes; choose a batch size divisible by 4",
    ):
        validate(resolved(load_config(["trainer.batch_size=6"])))
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(BoraError, match="does not split into trainer.grad_accum=4 x 1 processes"):
        validate(resolved(load_config(["trainer.batch_size=6", "trainer.grad_accum=4"])))
    validate(resolved(load_config(["trainer.batch_size=8", "trainer.grad_accum=4"])))  # micro-batches of 2


@pytest.mark.parametrize("method", ["bora", "dora"])
def test_export_of_a_trained_glue_run_reloads_in_peft_with_its_head(tmp_path, method):
    """`bora export`: a standard PEFT adapter with the trained classifier in modules_to_save; PEFT's reload gives the
    trained model's logits (the command itself checks to 1e-5 and says so)."""
    import torch
    from peft import PeftModel

    from bora.export import export_run
    from bora.models import load_model

    cfg = load_config([f"output_dir={tmp_path}", f"method={method}", *FAST])
    train(cfg)
    check = export_run(Path(cfg.run_dir), tmp_path / "peft")
    assert check.reference_dtype == "fp32" and check.weights_dtype == "fp32" and check.tolerance == 1e-5
    assert check.max_abs_logit_diff <= 1e-5
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["modules_to_save"] == ["classifier"] and config["task_type"] == "SEQ_CLS"
    base = load_model(cfg.model, num_labels=2)
    untrained_head = base.classifier.out_proj.weight.clone()
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    head = reloaded.base_model.model.classifier.modules_to_save["default"].out_proj.weight
    assert not torch.equal(head, untrained_head)  # the trained head came along
    with pytest.raises(BoraError, match="exists and is not empty"):
        export_run(Path(cfg.run_dir), tmp_path / "peft")


def test_export_of_a_generation_run_and_the_cli(tmp_path):
    args = [
        "model=tiny-decoder",
        "task=toy-math",
        "method=bora",
        "trainer.max_steps=6",
        "task.max_eval_samples=2",
        "task.max_new_tokens=4",
    ]
    cfg = load_config([f"output_dir={tmp_path}", *args])
    train(cfg)
    done = subprocess.run(
        [sys.executable, "-m", "bora.cli", "export", cfg.run_dir, str(tmp_path / "peft")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *_, said, last = done.stdout.strip().splitlines()
    # toy-math trains bf16 adapters (task.protocol=bora_authors): checked against them, to bf16's unit roundoff
    assert f"-> {tmp_path / 'peft'} (PEFT LoRA, adapter weights fp32;" in said
    assert "against the model as trained, adapters bf16, tolerance 0.00390625 x " in said
    assert last.startswith("max_abs_logit_diff: ")
    assert 0 < float(last.split()[-1]) <= 2**-8 * float(said.rstrip(")").split(" x ")[-1])
    assert json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"


def test_export_of_a_bf16_trained_run_is_verified_against_the_bf16_model(tmp_path):
    """trainer.adapter_dtype=bf16: the model as trained and evaluated computes its updates in bf16. The check must
    compare the PEFT reload with that model (adapters loaded in bf16, as load_adapters keeps them), not with a
    float32 copy of it, and report that difference."""
    import torch
    from peft import PeftModel

    from bora.adapters import adapter_dtype_used, load_adapters
    from bora.export import _inputs, export_run
    from bora.models import load_model

    cfg = load_config(
        [
            f"output_dir={tmp_path}",
            "model=tiny-decoder",
            "task=toy-math",
            "method=bora",
            "trainer.adapter_dtype=bf16",
            "trainer.max_steps=6",
            "task.max_eval_samples=2",
            "task.max_new_tokens=2",
        ]
    )
    train(cfg)
    run_dir = Path(cfg.run_dir)
    reported = export_run(run_dir, tmp_path / "peft")

    trained = load_model(cfg.model)
    load_adapters(trained, run_dir / "adapter")  # no cast: the dtype it trained and evaluated in
    trained.eval()
    assert adapter_dtype_used(trained) == "bf16"
    reloaded = PeftModel.from_pretrained(load_model(cfg.model), str(tmp_path / "peft")).eval()
    batch = _inputs(trained, trained.config.vocab_size)
    with torch.no_grad():
        expected = trained(**batch).logits.float()
        got = reloaded(**batch).logits.float()
    diff = float((expected - got).abs().max())
    assert diff > 0  # bf16 updates against PEFT's float32 ones: there is a difference to report
    assert reported.max_abs_logit_diff == diff
    assert reported.reference_dtype == "bf16" and reported.weights_dtype == "fp32"
    scale = max(1.0, float(expected.abs().max()))
    assert reported.scale == scale and reported.tolerance == 2**-8  # bf16's unit roundoff, not float32's 1e-5
    assert diff <= 2**-8 * scale
    assert diff > 1e-5 * scale  # float32's tolerance is too tight for bf16 updates; an explicit one still holds:
    with pytest.raises(BoraError, match=r"adapters bf16\) by .* \(tolerance 1e-05 x .*not faithful"):
        export_run(run_dir, tmp_path / "strict", tolerance=1e-5)
    assert not (tmp_path / "strict").exists()


def test_a_validation_split_ends_training_on_its_best_checkpoint(tmp_path, monkeypatch):
    """task.val_size (LLM-Adapters' val_set_size): the held-out loss is scored at every checkpoint and the saved
    adapter is the one where it was lowest. Which step that is depends on float rounding (threads, CPU), so the
    scores reported for every step but 20 are raised by 10: the best is step 20, not the last, on any machine, and
    the saved adapter's recomputed held-out loss must equal step 20's true score."""
    import torch

    from bora.adapters import inject, load_adapters
    from bora.models import load_model, load_tokenizer
    from bora.tasks import build_task
    from bora.training import AdapterTrainer

    scored = AdapterTrainer.evaluation_loop

    def evaluation_loop(self, *args, **kwargs):
        output = scored(self, *args, **kwargs)
        if self.state.global_step != 20:
            output.metrics["eval_loss"] += 10.0
        return output

    monkeypatch.setattr(AdapterTrainer, "evaluation_loop", evaluation_loop)
    cfg = load_config(
        [
            f"output_dir={tmp_path}",
            "model=tiny-decoder",
            "task=toy-math",
            "task.val_size=40",
            "trainer.max_steps=40",
            "trainer.eval_steps=5",
            "trainer.lr=0.1",
            "task.max_eval_samples=2",
            "task.max_new_tokens=2",
        ]
    )
    train(cfg)
    result = result_of(cfg.run_dir)
    validation = result["train"]["validation"]
    assert result["train"]["examples"] == 360 and validation["examples"] == 40
    losses = {point["step"]: point["loss"] for point in validation["loss_history"]}
    assert sorted(losses) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert validation["best_step"] == 20 and validation["best_loss"] == min(losses.values()) == losses[20] < 10

    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.task)
    held_out = task.validation_dataset(tokenizer)
    model = load_model(cfg.model)
    inject(model, cfg.method, cfg.model.targets)
    load_adapters(model, Path(cfg.run_dir) / "adapter")
    model.eval()
    # Scored as the Trainer scores it: batches of trainer.eval_batch_size in order, each batch's mean token loss
    # weighted by its number of examples (one batch of all 40 would weight the tokens differently). toy-math trains
    # bf16 adapters (task.protocol=bora_authors), which load_adapters keeps: float32 copies were 2.5e-4 off.
    collate, size, total = task.data_collator(tokenizer), cfg.trainer.eval_batch_size, 0.0
    assert 0 < len(held_out) % size  # two unequal batches: the example weighting is exercised
    with torch.no_grad():
        for start in range(0, len(held_out), size):
            rows = [held_out[i] for i in range(start, min(start + size, len(held_out)))]
            total += model(**collate(rows)).loss.item() * len(rows)
    loss = total / len(held_out)
    assert loss == pytest.approx(validation["best_loss"], rel=1e-5)  # the saved adapter is the best checkpoint's


def test_gradient_checkpointing_trains_the_same_steps(tmp_path):
    """trainer.gradient_checkpointing (Qwen2.5-14B's default, to fit one 80 GB GPU) trades compute for memory only:
    the adapters still get their gradients, and the losses match a run without it."""
    args = [
        "model=tiny-decoder",
        "task=toy-math",
        "method=bora",
        "trainer.max_steps=4",
        "trainer.logging_steps=1",
        "task.max_eval_samples=2",
        "task.max_new_tokens=2",
    ]
    losses = {}
    for flag in ("false", "true"):
        cfg = load_config([f"output_dir={tmp_path / flag}", f"trainer.gradient_checkpointing={flag}", *args])
        train(cfg)
        losses[flag] = [p["loss"] for p in result_of(cfg.run_dir)["train"]["loss_history"]]
    assert len(losses["true"]) == 4 and losses["true"][-1] < losses["true"][0]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
    assert load_config(["model=qwen2.5-14b", "task=math"]).trainer.gradient_checkpointing  # the model's default


def test_an_export_that_fails_its_check_leaves_nothing_behind(tmp_path):
    from bora.export import export_run

    cfg = load_config(
        [
            f"output_dir={tmp_path}",
            "model=tiny-decoder",
            "task=toy-math",
            "method=bora",
            "trainer.max_steps=2",
            "task.max_eval_samples=2",
            "task.max_new_tokens=2",
        ]
    )
    train(cfg)
    with pytest.raises(BoraError, match="not faithful"):
        export_run(Path(cfg.run_dir), tmp_path / "peft", tolerance=-1.0)  # no difference passes a negative bound
    assert not (tmp_path / "peft").exists()


def test_reuse_from_skips_a_run_another_experiment_folder_holds(tmp_path):
    """reuse_from: a success of the same identity in another experiment's folder is this run's result, not retrained
    (train) and counted as done where it lies (plan)."""
    from bora.plan import plan

    first = load_config([f"output_dir={tmp_path}", "experiment_name=a", *FAST])
    metrics = train(first)
    args = [f"output_dir={tmp_path}", "experiment_name=b", "reuse_from=[a]", *FAST]
    assert train(load_config(args)) == metrics
    assert not list((tmp_path / "b").rglob("result.json"))
    [row] = plan(args, with_params=False)
    assert row["status"] == "done" and row["run_dir"] == first.run_dir


@pytest.mark.parametrize("model", ["tiny-encoder"])  # the stop is the Trainer's, the same for every model kind
def test_a_run_interrupted_after_its_last_step_resumes_into_evaluation_only(tmp_path, monkeypatch, model):
    """Ctrl-C after the last optimizer step (during evaluation): the rerun resumes from the final checkpoint and
    trains no further step; step count, loss history and mean loss equal an uninterrupted run's."""
    import bora.adapters.stats as stats
    from bora.errors import Interrupted

    task = [] if model == "tiny-encoder" else ["task=toy-math", "task.max_new_tokens=4"]
    args = [
        f"model={model}",
        *task,
        "trainer.max_steps=8",
        "trainer.save_steps=4",
        "trainer.logging_steps=1",
        "task.max_eval_samples=8",
        "save_adapter=false",
    ]
    train(load_config([f"output_dir={tmp_path / 'uninterrupted'}", *args]))
    cfg = load_config([f"output_dir={tmp_path / 'interrupted'}", *args])
    real = stats.adapter_stats
    monkeypatch.setattr(stats, "adapter_stats", lambda model: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(Interrupted):
        train(cfg)
    assert result_of(cfg.run_dir)["status"] == "interrupted"
    assert latest_checkpoint(Path(cfg.run_dir) / "checkpoints").name == "checkpoint-8"
    monkeypatch.setattr(stats, "adapter_stats", real)
    train(cfg)
    resumed = result_of(cfg.run_dir)
    reference = result_of(load_config([f"output_dir={tmp_path / 'uninterrupted'}", *args]).run_dir)
    assert resumed["status"] == "success" and resumed["train"]["resumed_from"].endswith("checkpoint-8")
    assert resumed["train"]["global_steps"] == reference["train"]["global_steps"] == 8
    assert resumed["train"]["loss_history"] == reference["train"]["loss_history"]
    assert resumed["train"]["mean_loss"] == pytest.approx(reference["train"]["mean_loss"], rel=1e-6)
    assert resumed["metrics"] == reference["metrics"]


def test_a_forced_rerun_keeps_the_replaced_runs_wandb_data_and_log_and_links_the_records(tmp_path):
    args = ["logger=wandb", "trainer.max_steps=4", "task.max_eval_samples=8", "save_adapter=false"]
    env = {"BORA_OUTPUT_DIR": str(tmp_path), "WANDB_MODE": "offline"}
    assert run_cli(args, env=env).returncode == 0
    run_dir = Path(load_config([f"output_dir={tmp_path}", *args]).run_dir)
    old, old_log = result_of(run_dir), (run_dir / "train.log").read_text()
    rerun = run_cli([*args, "force=true"], env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    new = result_of(run_dir)
    assert new["replaces"] and json.loads((run_dir / new["replaces"]).read_text()) == old
    assert old["wandb_run_id"] != new["wandb_run_id"]
    offline = [p.name for p in (run_dir / "wandb").glob("offline-run-*")]
    assert sorted(any(name.endswith(r["wandb_run_id"]) for name in offline) for r in (old, new)) == [True, True]
    assert len(offline) == 2 and (run_dir / "wandb" / "latest-run").resolve().name.endswith(new["wandb_run_id"])
    [kept_log] = run_dir.glob("train.log.replaced-*")
    assert kept_log.read_text() == old_log and (run_dir / "train.log").read_text().startswith(old_log)


def test_a_divergence_of_float16_weights_on_a_cpu_names_the_likely_cause(tmp_path):
    cfg = load_config(
        [
            f"output_dir={tmp_path}",
            "model.dtype=float16",
            "trainer.max_steps=8",
            "task.max_eval_samples=8",
            "trainer.device=cpu",
        ]
    )
    with pytest.raises(BoraError, match=r"diverged at step \d+ .*model.dtype=float16 on a CPU, the likely cause"):
        train(cfg)
    assert "float16 on a CPU" in result_of(cfg.run_dir)["error"]["message"]


def test_an_output_dir_that_is_a_file_stops_before_hydra_writes_anything(tmp_path, monkeypatch, capsys):
    from bora.train import main

    (tmp_path / "file").write_text("in the way")
    for args in (["trainer.max_steps=1"], ["-m", "trainer.max_steps=1", "seed=0,1"]):
        monkeypatch.setattr(sys, "argv", ["bora.train", f"output_dir={tmp_path / 'file'}", *args])
        with pytest.raises(SystemExit) as exit_info:  # main() stops before it hands over to Hydra
            main()
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1, lines
        assert f"cannot write {tmp_path / 'file'}: a part of it is a file, not a folder" in lines[0]


def test_a_second_sweep_in_the_same_folder_keeps_the_first_ones_multirun_yaml(tmp_path):
    earlier = tmp_path / "default" / "multirun.yaml"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("hydra: {}  # the multirun.yaml of an earlier (or concurrent) sweep of this folder\n")
    first = earlier.read_text()
    args = ["-m", f"output_dir={tmp_path}", "trainer.max_steps=1", "task.max_eval_samples=4", "save_adapter=false"]
    assert run_cli([*args, "seed=0"]).returncode == 0
    copies = sorted((tmp_path / "default").glob("multirun.*.yaml"))
    assert [c.read_text() for c in copies if c.read_text() == first] == [first]  # the earlier one, kept
    [own] = [c for c in copies if c.read_text() != first]  # this sweep's own copy, the same as Hydra's
    assert own.read_text() == earlier.read_text() and "trainer.max_steps=1" in own.read_text()


def test_two_sweeps_started_together_in_one_folder_each_keep_their_config(tmp_path):
    """Hydra's multirun.yaml is one file per experiment folder: of two sweeps started at the same moment one
    overwrote the other's. Each sweep also keeps its own copy, whatever the timing."""
    args = ["-m", f"output_dir={tmp_path}", "trainer.max_steps=1", "task.max_eval_samples=4", "save_adapter=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bora.train", *args, f"seed={seed}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    # each sweep's own copy ends in -<pid>.yaml (an earlier multirun.yaml a later sweep kept ends in its time)
    copies = [c for c in (tmp_path / "default").glob("multirun.*.yaml") if c.stem.rpartition("-")[2].isdigit()]
    swept = sorted(next(o for o in yaml_overrides(c) if o.startswith("seed=")) for c in copies)
    assert swept == ["seed=0", "seed=1"]


def yaml_overrides(path: Path) -> list[str]:
    from omegaconf import OmegaConf

    return list(OmegaConf.load(path).hydra.overrides.task)


def test_max_steps_zero_evaluates_the_model_as_initialised(tmp_path):
    """trainer.max_steps=0 trains nothing: a generation study's untrained row. LoRA's B = 0 leaves the base model,
    so its generations equal the base model's own (adapters disabled)."""
    from bora.adapters import disabled_adapters, inject
    from bora.models import load_model, load_tokenizer
    from bora.tasks import build_task

    cfg = load_config(
        [
            "model=tiny-decoder",
            "task=toy-math",
            "method=lora",
            "trainer.max_steps=0",
            "task.max_eval_samples=3",
            "task.max_new_tokens=6",
            f"output_dir={tmp_path}",
        ]
    )
    train(cfg)
    result = result_of(cfg.run_dir)
    assert result["status"] == "success" and result["train"]["global_steps"] == 0
    assert result["train"]["mean_loss"] is None and result["train"]["loss_history"] == []
    rows = [json.loads(line) for line in (Path(cfg.run_dir) / "predictions" / "toy_arith.jsonl").open()]
    model, tokenizer = load_model(cfg.model), load_tokenizer(cfg.model)
    inject(model, cfg.method, cfg.model.targets)
    (tmp_path / "base").mkdir()
    with disabled_adapters(model):
        build_task(cfg.task).evaluate(model, tokenizer, 32, tmp_path / "base")
    base = [json.loads(line) for line in (tmp_path / "base" / "predictions" / "toy_arith.jsonl").open()]
    assert [r["generation"] for r in rows] == [r["generation"] for r in base]


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")
def test_a_bf16_decoder_on_a_cpu_evaluates_in_its_own_dtype_after_autocast_training(tmp_path):
    """bf16 autocast training leaves accelerate's autocast wrapper on model.forward; evaluation must run without it
    (a bf16 key/value in a float32 model's paged cache failed every question before)."""
    cfg = load_config([*TINY_GENERATION, "trainer.precision=bf16", f"output_dir={tmp_path}"])
    train(cfg)
    result = result_of(cfg.run_dir)
    assert result["status"] == "success" and result["precision"]["used"] == "bf16"
    assert result["config"]["trainer"]["adapter_dtype"] == "bf16"  # bora_authors' default


@pytest.mark.parametrize("engine", ["auto", "padded"])
def test_a_record_states_the_engine_and_adapter_dtype_the_code_used(tmp_path, monkeypatch, engine):
    """``generation_engine.used`` is the engine that decoded (spied on), not the ``auto`` asked for; and
    ``adapter_dtype.used`` is the dtype the adapter parameters held in training."""
    import bora.tasks.generation as generation

    called = []
    for name in ("continuous", "batched"):
        real = getattr(generation, f"{name}_generate_ids")

        def spy(*args, _real=real, _name=name, **kwargs):
            called.append("padded" if _name == "batched" else _name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(generation, f"{name}_generate_ids", spy)
    cfg = load_config(
        [*TINY_GENERATION, "trainer.adapter_dtype=bf16", f"task.generation_engine={engine}", f"output_dir={tmp_path}"]
    )
    train(cfg)
    result = result_of(cfg.run_dir)
    assert set(called) == {result["generation_engine"]["used"]}
    assert result["generation_engine"] == {"requested": engine, "used": "continuous" if engine == "auto" else engine}
    assert result["adapter_dtype"] == {"requested": "bf16", "used": "bf16"}


def test_a_classification_record_states_its_adapter_dtype_and_no_engine(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", *FAST, "method=lora"])
    train(cfg)
    result = result_of(cfg.run_dir)
    assert result["adapter_dtype"] == {"requested": "fp32", "used": "fp32"} and result["generation_engine"] == {}
