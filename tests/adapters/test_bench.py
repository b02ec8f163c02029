"""The benchmark's machinery (its targets are checked by running it, never by timed tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from bora import bench
from bora.bench import timing


def test_step_peak_counts_what_a_step_allocates():
    def step():
        big = torch.ones(1024, 1024)  # 4 MiB, freed at the end of the step
        del big
        torch.zeros(256, 1024)  # 1 MiB, freed at once

    assert 4 * 2**20 <= timing.step_peak_bytes(step) < 5 * 2**20


def test_bench_runs_and_reports_ratios(capsys):
    bench.main(
        [
            "--skip-layers",
            "--model",
            "tiny-encoder",
            "--methods",
            "lora",
            "peft-lora",
            "bora",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--batch",
            "2",
            "--length",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert "time x lora" in out and "mem x peft-lora" in out and "bora merged" in out
    rows = [line for line in out.splitlines() if line.startswith("| bora ")]
    assert rows and all(float(cell) > 0 for cell in rows[0].strip("|").split("|")[1:])


def test_eval_bench_compares_generation_forms_and_ends_with_the_ratio(capsys):
    bench.main(
        [
            "--eval",
            "--layers",
            "1",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--batch",
            "2",
            "--length",
            "8",
            "--new-tokens",
            "4",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert "bora, LoRA form" in "\n".join(lines) and "bora merged" in "\n".join(lines)
    assert "generate the same tokens: True" in lines[-2]  # the LoRA form is exact, so greedy decoding agrees
    name, value = lines[-1].split(": ")
    assert name == "bora_eval_time_x_lora" and float(value) > 0


def _markdown_rows(out: str, first_column: str) -> list[dict[str, str]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    start = next(i for i, line in enumerate(lines) if line.strip("| ").startswith(first_column))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells)))
    return rows


def test_table4_mode_reports_every_method_beside_the_papers_ratios(capsys):
    from bora.bench.table4 import TABLE4

    # one round: "time x lora" is then exactly that round's step time over LoRA's
    bench.main(["--table4", "--model", "tiny-decoder", "--layers", "1", "--rounds", "1", "--warmup", "1"])
    out = capsys.readouterr().out
    assert "### Table 4: tiny-decoder (1 layer), batch 4 x 256 tokens, targets QKV" in out  # the paper's setting
    rows = {row["method"]: row for row in _markdown_rows(out, "method")}
    assert list(rows) == list(TABLE4)
    lora = rows["lora (r=8)"]
    assert float(lora["time x lora"]) == float(lora["mem x lora"]) == 1.0
    for row in rows.values():
        assert float(row["params M"]) > 0 and float(row["step ms"]) > 0 and float(row["peak GB"]) > 0
        step = float(row["step ms"]) / float(lora["step ms"])
        peak = float(row["peak GB"]) / float(lora["peak GB"])
        assert abs(float(row["time x lora"]) - step) < 2e-3 * step  # both printed to 4 digits
        assert abs(float(row["mem x lora"]) - peak) < 2e-3 * peak
    in_paper = ["lora (r=8)", "bora (r=8, b=16)", "melora (r=8, 4 blocks)", "hydralora (r=4, 3 heads)", "dora (r=8)"]
    for name, row in rows.items():
        assert (row["paper time x lora"] != "") == (name in in_paper)
        assert (row["paper mem x lora"] != "") == (name in in_paper)
    assert float(rows["bora (r=8, b=16)"]["paper time x lora"]) == round(18.6 / 18.5, 4)  # paper Table 4
    assert float(rows["dora (r=8)"]["paper mem x lora"]) == round(24.36 / 23.57, 4)
    assert float(rows["bora (r=8, b=16)"]["paper params M"]) == 4.92
    ops = {name: int(row["ops / step"]) for name, row in rows.items()}
    # BoRA's Sigma and block mix cost operators LoRA's two matmuls do not; MELoRA sits between (no Sigma)
    assert ops["lora (r=8)"] < ops["melora (r=8, 4 blocks)"] < ops["bora (r=8, b=16)"]
    summary = dict(line.split(": ", 1) for line in out.strip().splitlines()[-4:])
    assert list(summary) == ["bora_time_x_lora", "bora_mem_x_lora", "dora_time_x_peft_dora", "dora_mem_x_peft_dora"]


def test_table4_prints_operators_per_adapted_layer_step_and_lora_form_forces_the_gpu_form(capsys):
    from bora.adapters import blocks
    from bora.bench.table4 import TABLE4

    before = set(blocks.LORA_FORM_DEVICES)
    bench.main(
        [
            "--table4",
            "--lora-form",
            "--model",
            "tiny-decoder",
            "--layers",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--batch",
            "1",
            "--length",
            "8",
        ]
    )
    assert blocks.LORA_FORM_DEVICES == before  # forced for the run only
    lines = capsys.readouterr().out.splitlines()
    title = next(line for line in lines if line.startswith("### Table 4: "))
    assert title.endswith(", BoRA / MELoRA in the LoRA form where b r (m + n) < m n")
    start = next(i for i, line in enumerate(lines) if line.startswith("### Operators per adapted layer-step"))
    rows = {row["method"]: row for row in _markdown_rows("\n".join(lines[start:]), "method")}
    assert list(rows) == list(TABLE4)
    for row in rows.values():
        forward, backward, optimizer = (int(row[phase]) for phase in ("forward", "backward", "optimizer"))
        assert forward > 0 and backward > 0 and optimizer > 0
        assert int(row["fwd + bwd"]) == forward + backward and int(row["total"]) == forward + backward + optimizer
        assert row["layer"] == "model.layers.0.self_attn.q_proj"
    # tiny-decoder's 64-wide layers are too narrow for the LoRA form (b r (m + n) >= m n): block form even so
    assert rows["bora (r=8, b=16)"]["form"] == rows["melora (r=8, 4 blocks)"]["form"] == "block"
    assert rows["lora (r=8)"]["form"] == "-"


def test_update_form_names_the_form_a_block_layer_trains_through():
    from torch import nn

    from bora.adapters import blocks
    from bora.adapters.bora import BoraLayer
    from bora.adapters.lora import LoraLayer
    from bora.bench.table4 import update_form

    bora = BoraLayer(nn.Linear(512, 512), r=8, alpha=16, dropout=0.0, blocks=16)
    assert update_form(bora, "cpu") == "block" and update_form(bora, "cuda") == "LoRA"
    with blocks.lora_form_on("cpu"):
        assert update_form(bora, "cpu") == "LoRA"
    assert update_form(LoraLayer(nn.Linear(512, 512), r=8, alpha=16, dropout=0.0), "cpu") == "-"


def test_cuda_without_a_cuda_device_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--table4", "--device", "cuda"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda" in err and "--device cpu" in err


def test_adapter_sets_swap_in_and_out_of_one_base_model():
    from bora.bench.swap import AdapterSet
    from bora.config import load_config
    from bora.models import build_from_arch

    cfg = load_config(["model=tiny-decoder", "task=math", "method=bora", "method.blocks=4"])
    base = build_from_arch(cfg.model).eval()
    ids = torch.randint(5, 200, (2, 8), generator=torch.Generator().manual_seed(0))
    plain = base(input_ids=ids).logits
    adapters = AdapterSet.inject(base, cfg.method, cfg.model.targets)
    assert all(type(base.get_submodule(name)) is torch.nn.Linear for name in adapters.names)  # built outside
    adapters.host.eval()  # no dropout: the host keeps its own train / eval mode
    with torch.no_grad():
        for module in adapters.modules.values():
            module.B.normal_()
    merged = adapters.merged()
    adapters.install()
    adapted = base(input_ids=ids).logits
    adapters.remove()
    assert torch.equal(base(input_ids=ids).logits, plain)  # the originals are back, untouched
    merged.install()
    assert torch.allclose(base(input_ids=ids).logits, adapted, atol=1e-4)
    merged.remove()
    assert not torch.allclose(adapted, plain) and torch.equal(base(input_ids=ids).logits, plain)


def test_gpu_check_script_parses():
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    header = script.read_text().split("set -euo pipefail")[0]
    assert all(package in header for package in ("hydra-core", "pandas", "tabulate"))


def test_decoding_bench_needs_a_model_with_real_weights(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--decoding", "--model", "tiny-decoder", "--rounds", "1"])
    assert exit_info.value.code != 0
    assert "--decoding needs a decoder with real weights" in capsys.readouterr().err


@pytest.mark.parametrize("bench_flag", ["--table4", "--eval", "--decoding", "--train-path"])
def test_methods_with_a_fixed_set_bench_is_refused(bench_flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([bench_flag, "--methods", "lora", "bora"])
    assert exit_info.value.code == 2
    assert "drop --methods" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--rounds", "0"], "--rounds: 0 must be >= 1"),
        (["--rounds", "-3"], "--rounds: -3 must be >= 1"),
        (["--tokens", "0"], "--tokens: 0 must be >= 1"),
        (["--warmup", "-1"], "--warmup: -1 must be >= 0"),
        (["--batch", "two"], "--batch: 'two' is not an integer"),
    ],
)
def test_counts_below_one_are_refused_before_anything_runs(args, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_table4_compile_times_each_method_eager_beside_compiled(capsys, monkeypatch):
    from bora.bench import table4

    # three of the rows (the compiled half compiles each method once); aot_eager: graph capture without code
    # generation, a second or two per method on a CPU (inductor's C++ build takes tens of seconds)
    rows = (table4.LORA, "melora (r=8, 4 blocks)", table4.BORA)
    monkeypatch.setattr(table4, "TABLE4", {label: table4.TABLE4[label] for label in rows})
    monkeypatch.setattr(table4, "TARGETS", {k: v for k, v in table4.TARGETS.items() if k.startswith("bora_")})
    bench.main(
        [
            "--table4",
            "--compile",
            "--compile-backend",
            "aot_eager",
            "--model",
            "tiny-decoder",
            "--layers",
            "1",
            "--rounds",
            "2",
            "--warmup",
            "0",
            "--batch",
            "1",
            "--length",
            "8",
        ]
    )
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("### torch.compile (aot_eager, mode default) vs eager: tiny-decoder (1 layer)")
    )
    compiled = {row["method"]: row for row in _markdown_rows("\n".join(lines[start:]), "method")}
    assert list(compiled) == list(rows)
    for row in compiled.values():
        assert float(row["eager ms"]) > 0 and float(row["compiled ms"]) > 0 and float(row["compile s"]) > 0
        assert int(row["graph breaks"]) == 0 and int(row["graphs"]) == 1  # our layers trace whole
    assert float(compiled[table4.LORA]["compiled ms x lora compiled"]) == 1.0
    name, value = lines[-1].split(": ")
    assert name == "bora_compiled_time_x_eager" and float(value) == float(compiled[table4.BORA]["compiled x eager"])
    assert [line.split(":")[0] for line in lines if line.startswith("compiled ")] == [f"compiled {r}" for r in rows]


def test_compile_needs_the_table4_bench(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--compile", "--skip-layers"])
    assert exit_info.value.code == 2 and "add --table4" in capsys.readouterr().err
