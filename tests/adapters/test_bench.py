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
