"""Run bookkeeping: skip finished runs, refuse to clobber another config, resume unfinished ones."""

import json

import pytest

from bora import runs
from bora.errors import BoraError

CONFIG = {"seed": 0, "model": {"name": "m"}, "trainer": {"lr": 0.1, "logging_steps": 10}, "force": False}


def write(run_dir, status, config=CONFIG, **extra):
    runs.write_json_atomic(
        run_dir / runs.RESULT_FILE,
        {"status": status, "config": config, "config_fingerprint": runs.fingerprint(config), **extra},
    )


def test_fingerprint_ignores_what_cannot_change_a_result():
    cosmetic = {**CONFIG, "force": True, "trainer": {"lr": 0.1, "logging_steps": 99}, "logger": {"name": "wandb"}}
    assert runs.fingerprint(cosmetic) == runs.fingerprint(CONFIG)
    assert runs.fingerprint({**CONFIG, "trainer": {"lr": 0.2, "logging_steps": 10}}) != runs.fingerprint(CONFIG)
    assert runs.fingerprint({**CONFIG, "seed": 1}) != runs.fingerprint(CONFIG)


def test_new_run_trains(tmp_path):
    plan = runs.plan_run(tmp_path, CONFIG, force=False)
    assert not plan.skip and plan.checkpoint is None


def test_success_with_same_config_is_skipped(tmp_path):
    write(tmp_path, "success", metrics={"t": {"accuracy": 0.5}})
    plan = runs.plan_run(tmp_path, CONFIG, force=False)
    assert plan.skip and plan.previous["metrics"] == {"t": {"accuracy": 0.5}}


def test_success_with_other_config_is_refused_not_overwritten(tmp_path):
    write(tmp_path, "success")
    other = {**CONFIG, "trainer": {"lr": 0.3, "logging_steps": 10}}
    before = (tmp_path / runs.RESULT_FILE).read_text()
    with pytest.raises(BoraError, match=r"differs at: trainer\.lr.*force=true"):
        runs.plan_run(tmp_path, other, force=False)
    assert (tmp_path / runs.RESULT_FILE).read_text() == before


def test_force_keeps_the_previous_result_beside(tmp_path):
    write(tmp_path, "success", finished_at="2026-01-01T00:00:00+00:00")
    plan = runs.plan_run(tmp_path, CONFIG, force=True)
    assert not plan.skip and not (tmp_path / runs.RESULT_FILE).exists()
    kept = list(tmp_path.glob("result.replaced-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "success"


def complete_checkpoint(path):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name.removeprefix("checkpoint-"))}))


def test_unfinished_run_resumes_from_its_latest_checkpoint(tmp_path):
    write(tmp_path, "running")
    for step in (5, 40, 10):
        complete_checkpoint(tmp_path / "checkpoints" / f"checkpoint-{step}")
    plan = runs.plan_run(tmp_path, CONFIG, force=False)
    assert not plan.skip and plan.checkpoint.name == "checkpoint-40"


def test_a_checkpoint_cut_off_mid_write_is_not_resumed_from(tmp_path, capsys):
    write(tmp_path, "running")
    complete_checkpoint(tmp_path / "checkpoints" / "checkpoint-10")
    (tmp_path / "checkpoints" / "checkpoint-30").mkdir()  # killed before trainer_state.json was written
    (tmp_path / "checkpoints" / "checkpoint-20").mkdir()
    (tmp_path / "checkpoints" / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # cut short
    plan = runs.plan_run(tmp_path, CONFIG, force=False)
    assert plan.checkpoint.name == "checkpoint-10"
    assert "ignoring incomplete checkpoint" in capsys.readouterr().out


def test_no_complete_checkpoint_means_a_fresh_start(tmp_path):
    write(tmp_path, "running")
    (tmp_path / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    assert runs.plan_run(tmp_path, CONFIG, force=False).checkpoint is None


def test_unfinished_run_of_another_config_starts_over(tmp_path):
    write(tmp_path, "failed", config={**CONFIG, "seed": 7})
    (tmp_path / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    plan = runs.plan_run(tmp_path, CONFIG, force=False)
    assert plan.checkpoint is None and not (tmp_path / "checkpoints").exists()


def test_other_ranks_decide_without_touching_files(tmp_path):
    write(tmp_path, "success")
    runs.plan_run(tmp_path, CONFIG, force=True, apply=False)
    assert (tmp_path / runs.RESULT_FILE).exists()


def test_corrupt_result_file_is_a_clear_error(tmp_path):
    (tmp_path / runs.RESULT_FILE).write_text("{not json")
    with pytest.raises(BoraError, match="not valid JSON"):
        runs.plan_run(tmp_path, CONFIG, force=False)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    runs.write_json_atomic(tmp_path / "a" / "result.json", {"x": 1})
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["result.json"]


def test_environment_names_versions_commit_and_hardware():
    env = runs.environment()
    assert env["versions"]["torch"] and env["versions"]["transformers"]
    assert "commit" in env["git"] and env["hardware"]["cpu_count"] >= 1
