"""``bora bench --dropout``: the ways of drawing the adapter dropout mask draw what they claim, and the bench reports.

Keep rates are checked by sampling (within binomial error: the exact probabilities differ by far less than any
sample can see) and the exact probabilities by exact arithmetic; timings are never asserted."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from bora import bench
from bora.bench import dropout


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_every_way_keeps_its_documented_share_scaled_by_one_over_one_minus_p(p):
    n = 2**20
    for name, variant in dropout.VARIANTS.items():
        torch.manual_seed(0)
        out = variant.apply(torch.ones(n, dtype=variant.input_dtype or torch.float32), p).float()
        kept = out != 0
        expected = float(variant.keep(p))
        assert abs(kept.float().mean().item() - expected) < 5 * math.sqrt(expected * (1 - expected) / n), name
        scale = out[kept].unique()
        assert len(scale) == 1 and abs(scale.item() - 1 / (1 - p)) < 3e-3, name  # bf16's 1.0546875 included


def test_exact_keep_probabilities():
    # bernoulli_(0.95): a 53-bit uniform below the double 0.95, which is itself a multiple of 2^-53
    assert dropout.bernoulli_keep(0.05) == Fraction(0.95) == Fraction(8556839292003942, 2**53)
    # rand_like in float32: k / 2^24 > float32(0.05), counted over every value rand can return
    grid = torch.arange(2**24, dtype=torch.int32).float() * 2**-24
    assert dropout.rand_fp32_keep(0.05) == Fraction(int((grid > 0.05).sum()), 2**24) == Fraction(15938355, 2**24)
    for p in (0.05, 0.1, 0.3, 0.5, 0.9):
        assert dropout.exact_keep(p) == dropout.bernoulli_keep(p)  # the tie-break rebuilds the same 53 bits


def test_a_tie_on_the_high_bits_is_decided_by_the_low_bits():
    high, low = dropout.exact_threshold(0.05)
    n = 2**16
    below, above = torch.full((n,), high - 1, dtype=torch.int32), torch.full((n,), high + 1, dtype=torch.int32)
    assert dropout.keep_from_draws(below, high, low).all() and not dropout.keep_from_draws(above, high, low).any()
    tied = dropout.keep_from_draws(
        torch.full((n,), high, dtype=torch.int32), high, low, torch.Generator().manual_seed(0)
    )
    share = low / 2**dropout.LOW_BITS
    assert abs(tied.float().mean().item() - share) < 5 * math.sqrt(share * (1 - share) / n)


def test_only_the_bernoulli_masks_reproduce_todays_stream():
    x = torch.randn(64, 32)
    assert dropout.same_output_as_today(dropout.VARIANTS[dropout.BOOL_MASK], 0.05, x)
    assert dropout.same_output_as_today(dropout.VARIANTS["torch.native_dropout"], 0.05, x)
    assert not dropout.same_output_as_today(dropout.VARIANTS[dropout.EXACT], 0.05, x)  # same distribution, new draws
    assert not dropout.same_output_as_today(dropout.VARIANTS[dropout.RAND], 0.05, x)


def _tables(out: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``out``, as rows of header -> cell."""
    tables, lines = [], out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and not lines[i - 1].startswith("|"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            body = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                body.append(dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")))))
            tables.append(body)
    return tables


def test_dropout_bench_prints_every_row_and_ends_with_the_share(capsys, monkeypatch):
    monkeypatch.setattr(dropout, "SHAPES", {"tiny": (64, 32)})
    bench.main(
        ["--dropout", "--model", "tiny-encoder", "--batch", "2", "--length", "8", "--rounds", "1", "--warmup", "0"]
    )
    out = capsys.readouterr().out
    variants, steps = _tables(out)
    assert [row["mask drawn by"] for row in variants] == list(dropout.VARIANTS)
    assert float(variants[0]["cpu x today"]) == 1.0 and all(float(row["cpu ms"]) > 0 for row in variants)
    same = {row["mask drawn by"]: row["same distribution"] for row in variants}
    assert same[dropout.EXACT] == same[dropout.BOOL_MASK] == "yes" and same[dropout.RAND] == "no"
    assert [row["step"] for row in steps] == [row.name for row in dropout.STEP_ROWS]
    assert "2 masks drawn per step instead of 4" in out  # tiny-encoder: 2 layers, Q and V share theirs
    name, value = out.strip().splitlines()[-1].split(": ")
    assert name == "dropout_share_of_step" and -1 < float(value) < 1


@pytest.mark.parametrize(
    "args, expected", [(["--table4"], "separate bench"), (["--methods", "lora"], "drop --methods")]
)
def test_dropout_bench_is_refused_beside_another_mode_or_methods(args, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--dropout", *args])
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err
