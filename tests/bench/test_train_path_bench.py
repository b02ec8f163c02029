"""``bora bench --train-path``: the trainers of ``bora train`` itself, taking turns a step at a time."""

from __future__ import annotations

import threading

import pytest

from bora import bench
from bora.bench import train_path


def test_baton_lets_threads_take_turns_and_goes_on_without_a_finished_one():
    baton = train_path.Baton(["a", "b", "c"])
    order: list[str] = []

    def work(name: str, turns: int) -> None:
        for _ in range(turns):
            baton.wait(name)
            order.append(name)
            baton.pass_on(name)
        baton.wait(name)
        baton.leave(name)

    threads = [threading.Thread(target=work, args=(name, turns)) for name, turns in (("a", 3), ("b", 1), ("c", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert order == ["a", "b", "c", "a", "c", "a"]


@pytest.mark.parametrize("model", ["tiny-encoder", "tiny-decoder"])
def test_train_path_times_bora_train_own_trainers_step_by_step(model, capsys, monkeypatch):
    seen: list[tuple[str, int]] = []
    built_trainers = []
    on_step_end = train_path.TakeTurns.on_step_end
    original_trainer = train_path._trainer

    def recording(self, args, state, control, **kwargs):
        seen.append((self.name, state.global_step))
        return on_step_end(self, args, state, control, **kwargs)

    def keep(*args, **kwargs):
        built = original_trainer(*args, **kwargs)
        built_trainers.append(built[0])
        return built

    monkeypatch.setattr(train_path.TakeTurns, "on_step_end", recording)
    monkeypatch.setattr(train_path, "_trainer", keep)
    bench.main(["--train-path", "--model", model, "--batch", "2", "--length", "8", "--rounds", "3", "--warmup", "1"])
    out = capsys.readouterr().out
    # the steps alternate, one optimizer step each, 1 warm-up + 3 timed
    assert seen == [(name, step) for step in range(1, 5) for name in ("lora", "bora")]
    from bora.training import AdapterTrainer, StepControl

    assert all(isinstance(trainer, AdapterTrainer) for trainer in built_trainers)
    assert all(
        any(isinstance(c, StepControl) for c in trainer.callback_handler.callbacks) for trainer in built_trainers
    )
    rows = [line for line in out.splitlines() if line.startswith("| lora_r8") or line.startswith("| bora_r8_b16")]
    assert len(rows) == 2 and all(row.split("|")[2].strip() == "3" for row in rows)  # timed steps per method
    name, value = out.strip().splitlines()[-1].split(": ")
    assert name == "bora_train_path_cpu_x_lora" and float(value) > 0
    assert "{'loss'" not in out  # HF's printed log dicts are off


def test_train_path_is_a_cpu_bench(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--train-path", "--device", "cuda"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "--device cuda" in err or "CUDA" in err


def test_train_path_is_one_bench_of_several(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--train-path", "--table4"])
    assert exit_info.value.code == 2 and "separate benches" in capsys.readouterr().err


def test_train_path_refuses_a_precision_it_would_not_use(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--train-path", "--dtype", "bf16"])
    assert exit_info.value.code != 0 and "drop --dtype bf16" in capsys.readouterr().err
