"""Bad input: a one-line BoraError naming the layer or value, and nothing half-injected."""

from __future__ import annotations

import pytest
import torch
from adapter_helpers import base_model, config
from torch import nn

from bora.adapters import has_adapters, inject
from bora.adapters.bora import BoraLayer
from bora.adapters.hydralora import HydraLoraLayer
from bora.adapters.lora import LoraLayer
from bora.errors import BoraError


def assert_untouched(model, before: dict[str, torch.Tensor], flags: dict[str, bool]) -> None:
    assert not has_adapters(model)
    state = model.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], v) for k, v in before.items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        # tiny-decoder: q 64 -> 64, k/v 64 -> 32; 3 divides neither.
        ("bora", ["method.blocks=3"], r"method.blocks=3 does not divide layer model\.layers\.0\.self_attn\.q_proj"),
        (
            "melora",
            ["method.blocks=64", "method.targets=QK"],
            r"method.blocks=64 does not divide layer "
            r"model\.layers\.0\.self_attn\.k_proj",
        ),
        ("hydralora", ["method.heads=null"], r"method.heads=None must be a positive integer"),
        ("lora", ["method.targets=QX"], r"method.targets='QX': use letters from QKVOGUD"),
        (
            "sbora-fb",
            ["method.r=40", "method.targets=K"],
            r"method.r=40 exceeds the 32 outputs of layer "
            r"model\.layers\.0\.self_attn\.k_proj",
        ),
        ("peft", ["method.peft.peft_type=NOPE"], r"method.peft.peft_type='NOPE'"),
    ],
)
def test_bad_config_is_one_line_and_leaves_the_model_untouched(method, overrides, message):
    cfg = config(method, "tiny-decoder", *overrides)
    model = base_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(BoraError, match=message) as error:
        inject(model, cfg.method, cfg.model.targets)
    assert "\n" not in str(error.value)
    assert_untouched(model, before, flags)


@pytest.mark.parametrize(
    ("method", "change", "message"),
    [
        ("bora", {"blocks": 0}, r"method.blocks=0 must be a positive integer"),
        ("lora", {"r": 0}, r"method.r=0 must be a positive integer"),
        ("dora", {"r": -2}, r"method.r=-2 must be a positive integer"),
        ("lora", {"dropout": 1.5}, r"method.dropout=1.5 must be in \[0, 1\)"),
    ],
)
def test_layers_refuse_what_the_schema_refuses_for_library_callers(method, change, message):
    """The config schema stops these at start-up; a library caller passing a config of its own is stopped too."""
    cfg = config(method, "tiny-decoder")
    model = base_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(BoraError, match=message):
        inject(model, _with(cfg.method, **change), cfg.model.targets)
    assert_untouched(model, before, flags)


@pytest.mark.parametrize(
    ("layer_cls", "change", "message"),
    [
        (LoraLayer, {"r": 0}, r"method.r=0 must be a positive integer"),
        (LoraLayer, {"dropout": 1.5}, r"method.dropout=1.5 must be in \[0, 1\)"),
        (BoraLayer, {"blocks": 3}, r"method.blocks=3 does not divide layer q_proj"),
        (HydraLoraLayer, {"heads": None}, r"method.heads=None must be a positive integer"),
    ],
)
def test_layers_built_directly_check_their_arguments(layer_cls, change, message):
    with pytest.raises(BoraError, match=message) as error:
        layer_cls(nn.Linear(16, 8), name="q_proj", **{"r": 4, "alpha": 8, "dropout": 0.0, **change})
    assert "\n" not in str(error.value)


def test_unknown_method_targets_matching_nothing_and_reinjection():
    cfg = config("lora", "tiny-encoder")
    model = base_model(cfg)
    cfg.method.name = "lorax"
    with pytest.raises(BoraError, match="unknown method 'lorax'; choose one of: bora, dora, hydralora, lora"):
        inject(model, cfg.method, cfg.model.targets)
    cfg.method.name = "lora"
    with pytest.raises(BoraError, match="this model has no 'G' module; it has QKVOUD"):
        inject(model, _with(cfg.method, targets="QG"), cfg.model.targets)
    with pytest.raises(BoraError, match="matches no nn.Linear in RobertaForSequenceClassification"):
        inject(model, cfg.method, {**cfg.model.targets, "Q": "no_such_module", "V": "nor_this"})
    inject(model, cfg.method, cfg.model.targets)
    with pytest.raises(BoraError, match="already has adapters"):
        inject(model, cfg.method, cfg.model.targets)


def test_adalora_needs_the_step_count():
    cfg = config("adalora")
    model = base_model(cfg)
    with pytest.raises(BoraError, match="ADALORA needs the number of optimiser steps"):
        inject(model, cfg.method, cfg.model.targets)
    assert not has_adapters(model)
    inject(model, cfg.method, cfg.model.targets, total_steps=10)
    assert model._bora_peft_tuner.peft_config["default"].total_step == 10


def _with(method_cfg, **changes):
    copy = method_cfg.copy()
    for key, value in changes.items():
        copy[key] = value
    return copy
