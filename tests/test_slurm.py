"""Sweeps through hydra/launcher=slurm against a real one-node SLURM cluster (scripts/slurm_local.sh), not a mock.

The cluster is started once for this module in its own state folder and ports (a user's local cluster is left
alone) and stopped at the end; where it cannot start (no root to install slurm-wlm, no apt-get), every test here is
skipped with the script's one-line reason.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bora.config import load_config
from bora.train import train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]
FAST = ["trainer.max_steps=12", "trainer.logging_steps=4", "task.max_eval_samples=16", "save_adapter=false"]
# The launcher's resources for this machine (conf/hydra/launcher/slurm.yaml holds a GPU node's)
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=local",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.timeout_min=10",
    "trainer.torch_threads=1",
]


def test_the_local_cluster_keeps_its_state_in_the_checkout_unless_told_otherwise(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "BORA_SLURM_DIR"}
    where = subprocess.run(["bash", str(SCRIPT), "dir"], env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()) == ROOT / "outputs" / "slurm-local"  # not a fixed, shared /tmp name
    env["BORA_SLURM_DIR"] = str(tmp_path)
    where = subprocess.run(["bash", str(SCRIPT), "dir"], env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(tmp_path)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The environment of a running local cluster (SLURM_CONF set), for subprocesses."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "BORA_SLURM_DIR": str(state), "BORA_SLURMCTLD_PORT": "6917", "BORA_SLURMD_PORT": "6918"}
    munged_before = _munged_pids()
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)  # a partial start
        pytest.skip(f"no local SLURM cluster: {started.stderr.strip() or started.stdout.strip()}")
    env["SLURM_CONF"] = str(state / "slurm.conf")
    yield env
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
    for _ in range(20):  # every daemon it started is gone (a munged that ran before is left alone)
        if _munged_pids() <= munged_before and not _slurm_daemons(state):
            break
        time.sleep(0.25)
    assert _munged_pids() <= munged_before and not _slurm_daemons(state)


def _munged_pids() -> set[str]:
    return set(subprocess.run(["pgrep", "-x", "munged"], capture_output=True, text=True).stdout.split())


def _slurm_daemons(state: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"slurm(ctl)?d -f {state}"], capture_output=True, text=True)
    return found.stdout.split()


def sweep(env, outputs: Path, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "bora.train", "-m", *args, *LAUNCHER],
        cwd=ROOT,
        text=True,
        env={**env, "BORA_OUTPUT_DIR": str(outputs)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


def results(outputs: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(outputs)): json.loads(p.read_text()) for p in outputs.rglob("result.json")}


def squeue(env) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split("\n")[:-1]


def test_a_sweep_runs_one_job_per_run_and_a_failed_member_fails_alone(slurm, tmp_path):
    """Three BoRA runs on the tiny encoder, one with a block count that does not divide its width (64): two end
    success and one failed with its one-line error, each in its own directory with submitit's logs under the
    sweep's .submitit/<job id>/; the sweep exits non-zero; `bora tables` shows the two and --problems the one;
    a rerun trains nothing again."""
    args = ["method=bora", "method.blocks=2,4,3", *FAST]
    proc = sweep(slurm, tmp_path, *args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out[-3000:]
    runs = results(tmp_path)
    statuses = sorted((record["config"]["method"]["blocks"], record["status"]) for record in runs.values())
    assert statuses == [(2, "success"), (3, "failed"), (4, "success")], out[-3000:]
    [failed] = [r for r in runs.values() if r["status"] == "failed"]
    assert "method.blocks=3" in failed["error"]["message"] and "\n" not in failed["error"]["message"]
    assert len({Path(d).name for d in runs}) == 3  # one directory per run
    logs = sorted((tmp_path / "default" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 3 and all(log.read_text() for log in logs)

    tables = subprocess.run(
        [sys.executable, "-m", "bora.tables", "--outputs", str(tmp_path), "--problems"],
        cwd=ROOT,
        env=slurm,
        capture_output=True,
        text=True,
    )
    assert "method.blocks=3" in tables.stdout, tables.stdout + tables.stderr

    again = sweep(slurm, tmp_path, *args)
    out, _ = again.communicate(timeout=600)
    rerun = results(tmp_path)
    assert {d: r["finished_at"] for d, r in rerun.items() if r["status"] == "success"} == {
        d: r["finished_at"] for d, r in runs.items() if r["status"] == "success"
    }, out[-3000:]  # nothing retrained


# The interrupted-and-resumed runs' config, and its uninterrupted run (trained once, in this process)
RESUMED = [
    "method=lora",
    "trainer.max_steps=200",
    "trainer.save_steps=1000",
    "trainer.logging_steps=10",
    "task.max_eval_samples=8",
    "save_adapter=false",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    whole = load_config([f"output_dir={tmp_path_factory.mktemp('uninterrupted')}", *RESUMED])
    train(whole)
    return json.loads((Path(whole.run_dir) / "result.json").read_text())


def test_a_requeued_job_resumes_from_its_checkpoint_with_the_losses_of_an_uninterrupted_run(
    slurm, tmp_path, uninterrupted
):
    """`scontrol requeue` (what a pre-emption with PreemptMode=REQUEUE does) sends the running job SIGTERM: it ends
    `interrupted` with a checkpoint, SLURM starts it again, and the same job resumes and ends success with every
    step and the mean loss of the same config run without interruption."""
    job, resumed = _interrupt_at_step_20_and_resume(slurm, tmp_path / "a", lambda job: ["scontrol", "requeue", job])
    [job_log] = (tmp_path / "a" / "default" / ".submitit").glob(f"{job}/*_log.err")
    assert "interrupted at step" in job_log.read_text()  # both attempts' output kept (JobFileAppend)
    _assert_resumed_like(resumed, uninterrupted)


def _interrupt_at_step_20_and_resume(slurm, outputs: Path, interrupt) -> tuple[str, dict]:
    """Sweep RESUMED as one job, run ``interrupt(job id)`` once it has logged step 20, wait for the job to end:
    (the job id, the one record). The record must have been `interrupted` before it ended success, and the run's
    log must say it resumed."""
    proc = sweep(slurm, outputs, *RESUMED)
    deadline = time.time() + 300
    log = _wait_for_step(outputs, 20, deadline)
    [job] = [line.split()[0] for line in squeue(slurm)]
    subprocess.run(interrupt(job), env=slurm, check=True)
    seen = set()
    while time.time() < deadline and "success" not in seen:
        seen |= {record["status"] for record in results(outputs).values()}
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "interrupted" in seen  # the first attempt stopped with a checkpoint before the second started
    assert "resuming" in log.read_text()
    [resumed] = results(outputs).values()
    return job, resumed


def _assert_resumed_like(resumed: dict, uninterrupted: dict) -> None:
    """Every step, the mean loss and the metric of the run made without interruption."""
    assert resumed["status"] == "success" and resumed["train"]["global_steps"] == 200
    assert "checkpoint-" in resumed["train"]["resumed_from"]
    assert resumed["train"]["mean_loss"] == pytest.approx(uninterrupted["train"]["mean_loss"], rel=1e-4)
    assert resumed["metrics"]["toy-cls"] == pytest.approx(uninterrupted["metrics"]["toy-cls"])


def _wait_for_step(outputs: Path, step: int, deadline: float) -> Path:
    """The run's train.log once it has logged ``step``."""
    while time.time() < deadline:
        log = next(outputs.rglob("train.log"), None)
        if log is not None and f"step {step}:" in log.read_text():
            return log
        time.sleep(0.5)
    raise AssertionError(f"no step {step} in {outputs} before the deadline")


def test_a_time_limit_warning_requeues_the_job_which_resumes_and_ends_with_an_uninterrupted_runs_losses(
    slurm, tmp_path, uninterrupted
):
    """SLURM's warning before a time limit (SIGUSR2, what submitit asks for with signal_delay_s; sent here with
    scancel) stops the run after its step with a checkpoint, records it `interrupted`, and submitit requeues the job
    (max_num_timeout: 20 by default, not submitit's 0): the same job resumes and ends success with every step and
    the mean loss of the same config run without interruption."""
    job, resumed = _interrupt_at_step_20_and_resume(
        slurm, tmp_path / "a", lambda job: ["scancel", "--signal=USR2", job]
    )
    text = "".join(log.read_text() for log in (tmp_path / "a" / "default" / ".submitit").glob(f"{job}/*_log.*"))
    assert "SIGUSR2: stopping after this step with a checkpoint" in text and "interrupted at step" in text
    _assert_resumed_like(resumed, uninterrupted)


def test_a_job_of_two_tasks_is_one_data_parallel_run_with_one_process_losses(slurm, tmp_path):
    """hydra/launcher=slurm-ddp with 2 tasks: both join one process group from submitit's job environment (no
    torchrun), rank 0 alone writes the one record, which says 2 processes, and every step's loss and gradient norm
    is the one process's (the global batch of 8 is 4 per process)."""
    args = [
        "model=tiny-encoder",
        "method=lora",
        "trainer.device=cpu",
        "trainer.max_steps=4",
        "trainer.batch_size=8",
        "trainer.logging_steps=1",
        "task.max_eval_samples=4",
        "save_adapter=false",
        "method.dropout=0",
        "+model.arch.hidden_dropout_prob=0",
        "+model.arch.attention_probs_dropout_prob=0",
    ]
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], env=slurm, capture_output=True, text=True).stdout.split()
    if int(cpus[0]) < 2:
        pytest.skip(f"the local cluster's node has {cpus[0]} CPU; 2 tasks need 2")
    ddp = [a for a in LAUNCHER if not a.startswith(("hydra/launcher=", "hydra.launcher.mem_gb"))]
    ddp += ["hydra/launcher=slurm-ddp", "hydra.launcher.tasks_per_node=2", "hydra.launcher.mem_gb=4"]
    proc = subprocess.run(
        [sys.executable, "-m", "bora.train", "-m", *args, *ddp],
        cwd=ROOT,
        text=True,
        env={**slurm, "BORA_OUTPUT_DIR": str(tmp_path / "a")},
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    [record] = results(tmp_path / "a").values()
    assert record["status"] == "success" and record["hardware"]["processes"] == 2
    logs = list((tmp_path / "a" / "default" / ".submitit").glob("*/*_log.*"))
    assert len(logs) == 4  # two tasks' .out and .err
    assert not [log for log in logs if "skip:" in log.read_text()]  # the second task trained, it did not skip

    one = load_config([f"output_dir={tmp_path / 'b'}", *args])
    train(one)
    single = json.loads((Path(one.run_dir) / "result.json").read_text())
    assert single["hardware"]["processes"] == 1 and single["identity"] == record["identity"]
    for key in ("loss", "grad_norm"):
        assert [p[key] for p in record["train"]["loss_history"]] == pytest.approx(
            [p[key] for p in single["train"]["loss_history"]], rel=1e-4
        ), key
