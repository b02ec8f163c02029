"""Run bookkeeping: skip finished runs, resume unfinished ones, force reruns beside a success, one process per run
directory, and a record that is read whole or listed as unreadable."""

import json
import os
import select
import shutil
import stat
import subprocess
import sys
import time

import pytest

from bora import runs
from bora.config.identity import run_identity
from bora.errors import BoraError
from bora.record import RunRecord, Status, Unreadable, read_record, write_record

CONFIG = {"seed": 0, "model": {"name": "m"}, "trainer": {"lr": 0.1}}
CONFIG_B = {**CONFIG, "trainer": {"lr": 0.3}}
ID_A, ID_B = run_identity(CONFIG), run_identity(CONFIG_B)  # a record's identity is its config's
DATA = {"source": "local", "sha256": {"T/train.tsv": "aa", "T/dev.tsv": "bb"}}


def record(status="success", identity=None, **extra) -> RunRecord:
    config = extra.pop("config", CONFIG_B if identity == ID_B else CONFIG)
    fields = dict(
        status=status,
        experiment="e",
        model="m",
        method="lora",
        task="t",
        seed=0,
        run_dir="r",
        identity=run_identity(config) if identity is None else identity,
        group="g",
        config=config,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T01:00:00+00:00",
        data=DATA,
        wandb_run_id="id-a-000001",
    )
    if status == "success":
        fields.update(metrics={"t": {"accuracy": 0.5}}, headline={"metric": "accuracy", "value": 0.5})
    return RunRecord(**{**fields, **extra})


def decide(run_dir, identity=ID_A, force=False, data=DATA, apply=True):
    return runs.decide(run_dir, identity, CONFIG, force, data, apply=apply)


def complete_checkpoint(path):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name.removeprefix("checkpoint-"))}))


def test_new_run_trains_in_its_directory(tmp_path):
    decision = decide(tmp_path)
    assert not decision.skip and decision.work_dir == tmp_path and decision.checkpoint is None
    assert decision.wandb_run_id.startswith(ID_A[:8])


def test_success_with_same_identity_is_skipped(tmp_path):
    write_record(tmp_path, record())
    decision = decide(tmp_path)
    assert decision.skip and decision.previous.metrics == {"t": {"accuracy": 0.5}}


def test_success_of_another_identity_is_refused_not_overwritten(tmp_path):
    write_record(tmp_path, record(identity=ID_B))
    before = (tmp_path / "result.json").read_text()
    with pytest.raises(BoraError, match=r"differs at: trainer\.lr"):
        decide(tmp_path)
    assert (tmp_path / "result.json").read_text() == before


def test_a_success_on_other_data_is_not_reused(tmp_path):
    write_record(tmp_path, record())
    changed = {"source": "local", "sha256": {**DATA["sha256"], "T/dev.tsv": "cc"}}
    with pytest.raises(BoraError, match=r"T/dev.tsv has changed since\); force=true"):
        decide(tmp_path, data=changed)
    assert decide(tmp_path, data={"source": "local", "sha256": {"T/train.tsv": "aa"}}).skip  # a subset agrees


def test_force_reruns_beside_and_leaves_the_success_intact(tmp_path):
    write_record(tmp_path, record())
    (tmp_path / "adapter").mkdir()
    decision = decide(tmp_path, force=True)
    assert not decision.skip and decision.work_dir == tmp_path / runs.ATTEMPT_DIR
    assert decision.replaces is not None and decision.wandb_run_id != "id-a-000001"  # a new W&B run
    assert read_record(tmp_path).ok and (tmp_path / "adapter").is_dir()  # nothing touched until it succeeds


def test_an_interrupted_forced_rerun_resumes_from_its_own_checkpoints(tmp_path):
    write_record(tmp_path, record())
    attempt = tmp_path / runs.ATTEMPT_DIR
    write_record(attempt, record(status="interrupted", wandb_run_id="id-a-attempt"))
    complete_checkpoint(attempt / "checkpoints" / "checkpoint-20")
    decision = decide(tmp_path, force=True)
    assert decision.checkpoint.name == "checkpoint-20" and decision.wandb_run_id == "id-a-attempt"


def test_promote_moves_the_rerun_in_and_keeps_the_old_one_beside(tmp_path):
    old = record()
    write_record(tmp_path, old)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "old.txt").write_text("old")
    attempt = tmp_path / runs.ATTEMPT_DIR
    write_record(attempt, record(metrics={"t": {"accuracy": 0.9}}, headline={"metric": "accuracy", "value": 0.9}))
    (attempt / "adapter").mkdir()
    (attempt / "adapter" / "new.txt").write_text("new")
    for killed_writer in (tmp_path / ".result.json.abc123", attempt / ".result.json.def456"):
        killed_writer.write_text('{"status": "run')
    kept = runs.promote(attempt, tmp_path, old)
    assert not list(tmp_path.glob(".result.json.*"))  # no temporary of a killed writer outlives the rerun
    assert read_record(tmp_path).metrics == {"t": {"accuracy": 0.9}} and (tmp_path / "adapter" / "new.txt").exists()
    assert json.loads(kept.read_text())["metrics"] == {"t": {"accuracy": 0.5}}
    assert (tmp_path / f"adapter.{kept.name.removeprefix('result.').removesuffix('.json')}" / "old.txt").exists()
    assert not attempt.exists()


@pytest.mark.parametrize("status", ["running", "failed", "interrupted"])
def test_unfinished_run_resumes_from_its_latest_checkpoint_and_wandb_run(tmp_path, status):
    write_record(tmp_path, record(status=status))
    for step in (5, 40, 10):
        complete_checkpoint(tmp_path / "checkpoints" / f"checkpoint-{step}")
    decision = decide(tmp_path)
    assert not decision.skip and decision.checkpoint.name == "checkpoint-40"
    assert decision.wandb_run_id == "id-a-000001"  # continues its W&B run


def test_a_checkpoint_cut_off_mid_write_is_not_resumed_from(tmp_path, capsys):
    write_record(tmp_path, record(status="running"))
    complete_checkpoint(tmp_path / "checkpoints" / "checkpoint-10")
    (tmp_path / "checkpoints" / "checkpoint-30").mkdir()  # killed before trainer_state.json was written
    (tmp_path / "checkpoints" / "checkpoint-20").mkdir()
    (tmp_path / "checkpoints" / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # cut short
    assert decide(tmp_path).checkpoint.name == "checkpoint-10"
    assert "ignoring incomplete checkpoint" in capsys.readouterr().out


def test_a_checkpoint_whose_weights_were_cut_off_is_skipped_for_the_previous_one(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    write_record(tmp_path, record(status="interrupted"))
    for step in (10, 20):
        complete_checkpoint(tmp_path / "checkpoints" / f"checkpoint-{step}")
        save_file({"w": torch.ones(64)}, str(tmp_path / "checkpoints" / f"checkpoint-{step}" / runs.TRAINABLE_FILE))
    latest = tmp_path / "checkpoints" / "checkpoint-20" / runs.TRAINABLE_FILE
    latest.write_bytes(latest.read_bytes()[:50])  # the disk filled up while it was written
    assert decide(tmp_path).checkpoint.name == "checkpoint-10"
    assert "ignoring incomplete checkpoint" in capsys.readouterr().out


def test_safetensors_problem_reads_only_the_header(tmp_path):
    import torch
    from safetensors.torch import save_file

    from bora.integrity import safetensors_problem

    path = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(10), "b": torch.ones(3, 3)}, str(path))
    whole = path.read_bytes()
    assert safetensors_problem(path) is None
    for cut, expected in (
        (4, "shorter than the header length"),
        (50, "the header alone needs"),
        (len(whole) - 1, f"cut off ({len(whole) - 1} of {len(whole)} bytes)"),
    ):
        path.write_bytes(whole[:cut])
        assert expected in safetensors_problem(path)
    path.write_bytes(b"\x08" + b"\x00" * 7 + b"not json")
    assert "not a safetensors file" in safetensors_problem(path)


def test_unfinished_run_of_another_identity_starts_over(tmp_path):
    write_record(tmp_path, record(status="failed", identity=ID_B))
    (tmp_path / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    decision = decide(tmp_path)
    assert decision.checkpoint is None and not (tmp_path / "checkpoints").exists()


def test_other_ranks_decide_without_touching_files(tmp_path):
    write_record(tmp_path, record())
    (tmp_path / runs.ATTEMPT_DIR).mkdir()
    (tmp_path / runs.ATTEMPT_DIR / "stale").write_text("x")
    decide(tmp_path, force=True, apply=False)
    assert (tmp_path / runs.ATTEMPT_DIR / "stale").exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object, found list"),
        ('{"schema_version": 1, "status": "success"}', "schema_version 1"),
        ('{"schema_version": 2, "status": "success", "metrics": "oops"}', "Field required"),
    ],
)
def test_a_result_of_the_wrong_shape_is_unreadable_and_a_clear_error(tmp_path, content, reason):
    (tmp_path / "result.json").write_text(content)
    with pytest.raises(Unreadable, match=reason):
        read_record(tmp_path)
    with pytest.raises(BoraError, match="unreadable.*move it away") as info:
        decide(tmp_path)
    assert "rewrite" not in str(info.value)  # one advice, the same in --problems (the reason) and here
    assert runs.status_of(tmp_path, ID_A) == "unreadable"


def test_a_record_with_nan_is_never_written(tmp_path):
    bad = record(metrics={"t": {"pearson": 0.5}})
    bad.metrics["t"]["pearson"] = float("nan")  # bypasses validation on assignment
    with pytest.raises(Exception, match="finite"):
        write_record(tmp_path, bad)
    assert not (tmp_path / "result.json").exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_record(tmp_path / "a", record())
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["result.json"]


def test_plan_and_train_apply_one_rule_to_a_success_on_changed_data(tmp_path):
    write_record(tmp_path / "mine", record())
    changed = {"source": "local", "sha256": {**DATA["sha256"], "T/dev.tsv": "cc"}}
    assert runs.status_of(tmp_path / "mine", ID_A, DATA) == "done"
    assert runs.status_of(tmp_path / "mine", ID_A, changed) == "stale"  # decide refuses it: not done
    with pytest.raises(BoraError, match="succeeded on other data"):
        decide(tmp_path / "mine", data=changed)
    write_record(tmp_path / "other" / "x", record())  # a reuse_from folder holding the same run
    assert runs.reused(tmp_path / "mine" / "x", tmp_path, "mine", ["other"], ID_A, DATA) is not None
    assert runs.reused(tmp_path / "mine" / "x", tmp_path, "mine", ["other"], ID_A, changed) is None


def test_result_files_get_the_umasks_mode_and_stale_temporaries_are_cleaned_up(tmp_path):
    old = os.umask(0o022)
    try:
        stale, fresh = tmp_path / ".result.json.killed1", tmp_path / ".result.json.writing"
        for leftover in (stale, fresh):
            leftover.write_text('{"half')
        os.utime(stale, (time.time() - 3600, time.time() - 3600))  # left by a writer killed an hour ago
        write_record(tmp_path, record())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert not stale.exists() and fresh.exists()  # a concurrent writer's file is left alone


def test_status_of_names_every_state(tmp_path):
    assert runs.status_of(tmp_path, ID_A) == "missing"
    for status, shown in [("running", "unfinished"), ("failed", "failed"), ("interrupted", "interrupted")]:
        write_record(tmp_path, record(status=status))
        assert runs.status_of(tmp_path, ID_A) == shown
    write_record(tmp_path, record())
    assert runs.status_of(tmp_path, ID_A) == "done" and runs.status_of(tmp_path, ID_B) == "conflict"


HOLD = """
import sys, time
from bora.runs import RunLock
with RunLock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    print("releasing", flush=True)
"""


def test_a_second_process_waits_for_the_lock_and_names_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "3"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    with pytest.raises(BoraError, match=rf"is being trained by pid {holder.pid} on "):
        runs.RunLock(tmp_path, wait=False).__enter__()
    with runs.RunLock(tmp_path):  # waits for the holder, then has it: the holder said it was done before
        assert select.select([holder.stdout], [], [], 0)[0], "the lock was taken while its holder still held it"
        assert holder.stdout.readline().strip() == "releasing"
    holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.wait()
    assert (tmp_path / runs.LOCK_FILE).read_text().startswith(f"pid {holder.pid}")  # its trace is still there
    with runs.RunLock(tmp_path, wait=False):
        assert (tmp_path / runs.LOCK_FILE).read_text().startswith(f"pid {os.getpid()}")


def test_an_output_folder_that_is_a_file_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(BoraError, match="cannot write .*out.*a part of it is a file.*output_dir"):
        runs.RunLock(tmp_path / "out" / "run").__enter__()


@pytest.mark.parametrize(
    "code, reason",
    [
        (28, "the disk is full; free space or pass"),
        (30, "read-only file system; pass"),
        (13, "permission denied; pass"),
    ],
)
def test_disk_errors_read_as_one_line_with_the_fix(tmp_path, code, reason):
    error = runs.unwritable(OSError(code, os.strerror(code), str(tmp_path / "x")), tmp_path)
    assert str(error) == f"cannot write {tmp_path / 'x'}: {reason} a writable output_dir=... (BORA_OUTPUT_DIR)"


def test_an_unwritable_output_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(BoraError, match=r"cannot write .*file: a part of it is a file, not a folder; pass"):
        runs.check_writable(tmp_path / "file" / "run")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user without write permission
    with pytest.raises(BoraError, match=r"cannot write .*: (permission denied|read-only file system); pass"):
        runs.check_writable(tmp_path / "new" / "run")
    monkeypatch.undo()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2**20))
    with pytest.raises(BoraError, match=r"the disk is full; free space .*\(1 MiB free, a run needs at least 20"):
        runs.check_writable(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "message",
    [
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
        "No space left on device (os error 28)",
    ],
)
def test_a_full_disk_reported_by_a_library_reads_as_one(message):
    error = runs.disk_error(RuntimeError(message))
    assert error is not None and error.errno == 28
    assert runs.disk_error(RuntimeError("shape mismatch (code: 3, ...)")) is None


def test_environment_names_versions_commit_and_hardware():
    env = runs.environment()
    assert env["versions"]["torch"] and env["versions"]["transformers"]
    assert "commit" in env["git"] and env["hardware"]["cpu_count"] >= 1
    assert set(env["lock"]["sha256"]) == {"requirements/lock.txt", "requirements/torch-cpu.txt"}
    assert isinstance(env["lock"]["matches"], bool)


def test_statuses_are_the_documented_four():
    assert {s.value for s in Status} == {"running", "success", "failed", "interrupted"}


def test_git_state_counts_new_code_and_configs_but_not_new_results(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 0\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    monkeypatch.setattr(runs, "CHECKOUT", tmp_path)
    assert runs.git_state()["dirty"] is False
    (tmp_path / "results" / "study").mkdir(parents=True)
    (tmp_path / "results" / "study" / "result.json").write_text("{}")  # a study's new run: not a code change
    assert runs.git_state()["dirty"] is False
    (tmp_path / "conf" / "experiment").mkdir()
    (tmp_path / "conf" / "experiment" / "new.yaml").write_text("seed: 1\n")  # a new, uncommitted experiment
    state = runs.git_state()
    assert state["dirty"] is True and state["untracked"] == ["conf/experiment/new.yaml"]


@pytest.mark.parametrize(
    "edit, reason",
    [
        ({"metrics": None}, "it holds no metrics"),
        ({"headline": None}, "it holds no headline"),
        ({"headline": {"metric": "accuracy", "value": 0.9}}, "its headline accuracy=0.9 is not its metrics' 0.5"),
        ({"identity": "0123456789abcdef"}, "its identity 0123456789abcdef is not its config's"),
    ],
)
def test_a_hand_edited_success_is_a_problem_plan_train_and_tables_name(tmp_path, edit, reason):
    """A failed run relabelled success, an edited identity or number: unreadable to every reader, never a table cell
    or a run skipped forever."""
    from bora.report.aggregate import load_results, problems, successful

    run_dir = tmp_path / "e" / "run"
    run_dir.mkdir(parents=True)
    payload = json.loads(record().to_json())
    payload.update(edit)
    (run_dir / "result.json").write_text(json.dumps(payload))
    with pytest.raises(Unreadable, match=reason):
        read_record(run_dir)
    assert runs.status_of(run_dir, ID_A, DATA) == "unreadable"  # bora plan
    with pytest.raises(BoraError, match=f"says success but {reason}.*move it away"):
        decide(run_dir)  # bora train
    loaded = load_results(tmp_path)  # bora tables: not a success, listed as a problem with the reason
    assert successful(loaded).empty and reason in problems(loaded)["error"].iloc[0]


def test_a_failed_run_relabelled_success_without_metrics_is_unreadable(tmp_path):
    payload = json.loads(record(status="failed").to_json())
    payload["status"] = "success"
    (tmp_path / "result.json").write_text(json.dumps(payload))
    with pytest.raises(Unreadable, match="it says success but it holds no metrics"):
        read_record(tmp_path)
