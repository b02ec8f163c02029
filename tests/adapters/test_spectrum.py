"""The singular values each run records of its trained updates (paper Figure 4): exact, cheap, and the rank bounds."""

import pytest
import torch
from adapter_helpers import MERGEABLE, adapted_model
from torch import nn

from bora.adapters import adapter_layers
from bora.adapters.bora import BoraLayer
from bora.adapters.lora import LoraLayer
from bora.adapters.stats import PAPER_COUNT, adapter_stats, recorded_values, singular_values, spectrum_of


@pytest.mark.parametrize("method", MERGEABLE)
def test_recorded_singular_values_are_those_of_delta_weight(method):
    """From the factors (QR + a small SVD) or from dW: the same values as an SVD of the dense update."""
    _, model = adapted_model(method)
    layers = list(adapter_layers(model))
    assert layers
    for _, layer in layers:
        expected = torch.linalg.svdvals(layer.delta_weight().detach().double())
        got = singular_values(layer)
        k = len(got)
        assert torch.allclose(got, expected[:k], rtol=1e-5, atol=1e-9 * float(expected[0]))
        rest = expected[k:]
        assert not len(rest) or float(rest.max()) <= 1e-5 * float(expected[0])  # what the factors leave out is 0


def test_the_record_counts_rank_up_to_b_r_for_bora_and_r_for_lora():
    torch.manual_seed(0)
    base = nn.Linear(64, 64)
    lora = LoraLayer(base, r=2, alpha=4, dropout=0.0)
    bora = BoraLayer(nn.Linear(64, 64), r=2, alpha=4, dropout=0.0, blocks=8)
    for layer in (lora, bora):
        nn.init.normal_(layer.B)
    lora_record, bora_record = spectrum_of(singular_values(lora)), spectrum_of(singular_values(bora))
    assert lora_record["above_0.001"] == lora_record["above_0.01"] == 2  # LoRA: exactly r
    assert bora_record["above_0.001"] == 16  # BoRA: b r = 16 with random Sigma (paper eq. 6)
    assert 2 < bora_record["effective_rank"] <= 16 and 1 <= lora_record["effective_rank"] <= 2
    assert len(bora_record["values"]) == 16 and bora_record["values"] == sorted(bora_record["values"], reverse=True)


def test_the_record_holds_the_papers_measures_over_the_full_spectrum():
    """Figure 4's count above 0.005 (absolute) and sum of squares, from every value, and the values themselves past
    the 64 that records once kept (BoRA r=8 b=16: a bound of 128)."""
    torch.manual_seed(0)
    bora = BoraLayer(nn.Linear(256, 256), r=8, alpha=16, dropout=0.0, blocks=16)
    nn.init.normal_(bora.B, std=0.05)
    values = singular_values(bora)
    record = spectrum_of(values)
    dense = torch.linalg.svdvals(bora.delta_weight().detach().double())
    assert record[PAPER_COUNT] == int((dense > 0.005).sum()) and record[PAPER_COUNT] > 64
    assert record["sum_squares"] == pytest.approx(float(bora.delta_weight().detach().double().pow(2).sum()), rel=1e-5)
    assert len(record["values"]) == 128 == record["count"]
    assert recorded_values(record) == record["values"] and recorded_values({"top": [2.0, 1.0]}) == [2.0, 1.0]
    small = spectrum_of(torch.tensor([1.0, 0.004, 1e-7], dtype=torch.float64))
    assert small[PAPER_COUNT] == 1 and small["values"] == [1.0, 0.004]  # below 1e-6 of the largest: not kept


def test_an_untrained_lora_records_a_zero_spectrum_without_nan():
    record = spectrum_of(singular_values(LoraLayer(nn.Linear(16, 16), r=4, alpha=8, dropout=0.0)))
    assert record["above_0.001"] == 0 and record["effective_rank"] == 0.0 and record["values"] == []
    assert record[PAPER_COUNT] == 0 and record["sum_squares"] == 0.0


def test_run_stats_hold_a_spectrum_per_layer_and_sigma_for_bora():
    _, model = adapted_model("bora")
    stats, _ = adapter_stats(model)
    layers = [name for name, _ in adapter_layers(model)]
    assert [row["layer"] for row in stats["spectrum"]["per_layer"]] == layers
    assert stats["sigma"]["summary"]["layers"] == len(layers)
    _, hydra = adapted_model("hydralora")  # input-dependent: no single dW, so no spectrum
    assert "spectrum" not in adapter_stats(hydra)[0]


def test_a_layer_whose_update_is_not_finite_is_left_out_with_a_notice():
    _, model = adapted_model("lora")
    name, layer = next(iter(adapter_layers(model)))
    with torch.no_grad():
        layer.B.fill_(float("inf"))
    stats, notices = adapter_stats(model)
    assert stats["spectrum"]["left_out"] == [name] and name not in [r["layer"] for r in stats["spectrum"]["per_layer"]]
    assert len(notices) == 1 and notices[0].startswith("spectrum: 1 of ") and name in notices[0]
