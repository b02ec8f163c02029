"""The benchmark's machinery (its targets are checked by running it, never by timed tests)."""

from __future__ import annotations

import torch

from bora import bench


def test_step_peak_counts_what_a_step_allocates():
    def step():
        big = torch.ones(1024, 1024)  # 4 MiB, freed at the end of the step
        del big
        torch.zeros(256, 1024)  # 1 MiB, freed at once

    assert 4 * 2**20 <= bench.step_peak_bytes(step) < 5 * 2**20


def test_bench_runs_and_reports_ratios(capsys):
    bench.main(["--skip-layers", "--model", "tiny-encoder", "--methods", "lora", "peft-lora", "bora",
                "--rounds", "2", "--warmup", "1", "--batch", "2", "--length", "8"])
    out = capsys.readouterr().out
    assert "time x lora" in out and "mem x peft-lora" in out and "bora merged" in out
    rows = [line for line in out.splitlines() if line.startswith("| bora ")]
    assert rows and all(float(cell) > 0 for cell in rows[0].strip("|").split("|")[1:])


def test_eval_bench_compares_generation_forms_and_ends_with_the_ratio(capsys):
    bench.main(["--eval", "--layers", "1", "--rounds", "2", "--warmup", "1", "--batch", "2", "--length", "8",
                "--new-tokens", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "bora, LoRA form" in "\n".join(lines) and "bora merged" in "\n".join(lines)
    assert "generate the same tokens: True" in lines[-2]  # the LoRA form is exact, so greedy decoding agrees
    name, value = lines[-1].split(": ")
    assert name == "bora_eval_time_x_lora" and float(value) > 0
