"""``bora.params`` reproduces the paper's #Params for every model/method row of Tables 1-4, 8 and 9."""

from __future__ import annotations

import copy
import csv
import functools
from pathlib import Path

import pytest

import bora
from bora import params
from bora.config import load_config
from bora.models import build_from_arch

PAPER = Path(bora.__file__).parent / "report" / "paper_results"
TABLES = [
    "table1_glue.csv",
    "table2_math.csv",
    "table3_commonsense.csv",
    "table4_efficiency.csv",
    "table8_target_modules.csv",
    "table9_rank_blocks.csv",
]
METHOD_NAMES = {"LoRA": "lora", "DoRA": "dora", "MELoRA": "melora", "HydraLoRA": "hydralora", "BoRA": "bora"}


def paper_rows():
    for table in TABLES:
        with open(PAPER / table, newline="") as f:
            for row in csv.DictReader(f):
                yield pytest.param(
                    row,
                    id=f"{table[:6]}-{row['model']}-{row.get('target_modules', '')}"
                    f"{row['method']}-r{row['r']}-b{row['b']}",
                )


@functools.cache
def composed(model: str = "llama-3-8b", method: str = "lora"):
    """Composed once per model and once per method (composing takes a few hundred milliseconds)."""
    return load_config([f"model={model}", f"method={method}", f"task={'rte' if 'roberta' in model else 'math'}"])


def run_config(model: str, method: str):
    cfg = copy.deepcopy(composed(model))
    cfg.method = copy.deepcopy(composed(method=method).method)  # its interpolations resolve against cfg's task
    return cfg


@functools.cache
def meta_model(model: str):
    return build_from_arch(composed(model).model, device="meta")


def tolerance(printed: str) -> float:
    """Half a unit of the last printed digit, in parameters: 4.92 -> 5,000; 19.3 -> 50,000."""
    decimals = len(printed.partition(".")[2])
    return 0.5 * 10 ** (6 - decimals)


@functools.cache  # Tables 2-4, 8 and 9 repeat many configurations: count each once
def count(model: str, method: str, r: int, blocks: int | None, targets: str | None) -> tuple[int, int, str]:
    """(adapter parameters, adapted modules, target letters) via ``bora.params`` on a copy of the meta model."""
    cfg = run_config(model, method)
    cfg.method.r = r
    if blocks:
        cfg.method.blocks = blocks
    if targets:
        cfg.method.targets = targets
    total, names = params.adapter_param_count(cfg, copy.deepcopy(meta_model(model)))
    return total, len(names), cfg.method.targets


@pytest.mark.parametrize("row", paper_rows())
def test_paper_param_counts(row):
    total, modules, letters = count(
        row["model"],
        METHOD_NAMES[row["method"]],
        int(row["r"]),
        int(row["b"]) if row["b"] else None,
        row.get("target_modules"),
    )
    assert abs(total - float(row["params_M"]) * 1e6) <= tolerance(row["params_M"]), (total, row["params_M"])
    layers = {"roberta-base": 12, "roberta-large": 24, "gemma-7b": 28, "llama-3-8b": 32, "qwen2.5-14b": 48}
    assert modules == layers[row["model"]] * len(letters)


def test_cli_prints_the_count_last(capsys):
    params.main(["model=llama-3-8b", "method=bora", "task=math"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "adapter_params: 4915200"


def test_cli_bad_input_is_one_line_and_non_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        params.main(["model=roberta-base", "method=bora", "method.blocks=7", "task=rte"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "method.blocks=7" in err and "roberta.encoder.layer.0" in err
