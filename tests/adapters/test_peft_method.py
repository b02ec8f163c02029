"""``method=peft``: PEFT tuners (AdaLoRA, IA3, PEFT's LoRA) behave like our methods in the same interface."""

from __future__ import annotations

import pytest
import torch
from adapter_helpers import PEFT_CONFIGS, adapted_model, base_model, config, logits, token_batch
from peft.tuners.ia3 import Linear as IA3Linear

from bora.adapters import (
    adapter_parameters,
    count_adapter_params,
    disabled_adapters,
    has_adapters,
    inject,
    merge_adapters,
    on_optimizer_step,
)
from bora.adapters.peft_method import peft_layers


@pytest.mark.parametrize("method", PEFT_CONFIGS)
def test_merge_and_disable(method):
    cfg, model = adapted_model(method)
    batch = token_batch(cfg)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        base_out, adapted_out = logits(base_model(cfg), batch), logits(model, batch)
        assert (adapted_out - base_out).abs().max() > 1e-3
        with disabled_adapters(model):
            torch.testing.assert_close(logits(model, batch), base_out, rtol=0, atol=0)
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags  # PEFT's toggling undone
        torch.testing.assert_close(logits(model, batch), adapted_out, rtol=0, atol=0)
        merged = merge_adapters(model)
        assert not has_adapters(merged) and not hasattr(merged, "peft_config")
        torch.testing.assert_close(logits(merged, batch), adapted_out, rtol=1e-5, atol=1e-5)


def test_peft_lora_counts_like_ours():
    counts = []
    for method in ("lora", "peft"):
        cfg = config(method)
        model = base_model(cfg)
        inject(model, cfg.method, cfg.model.targets)
        counts.append(count_adapter_params(model))
    assert counts[0] == counts[1] > 0


def test_peft_dora_counts_like_ours_and_like_its_trainable_parameters():
    """PEFT lists a DoRA layer's magnitude vector twice in its adapter names; each parameter counts once."""
    counts = []
    for method, extra in (("dora", []), ("peft", ["+method.peft.use_dora=true"])):
        cfg = config(method, "tiny-decoder", *extra)
        model = base_model(cfg)
        inject(model, cfg.method, cfg.model.targets)
        counts.append(count_adapter_params(model))
        assert counts[-1] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts[0] == counts[1] > 0


def test_ia3_scales_keys_values_and_the_ffn_input():
    _, model = adapted_model("ia3", randomize=False)
    layers = dict(peft_layers(model))
    assert {name.rsplit(".", 1)[-1] for name in layers} == {"k_proj", "v_proj", "down_proj"}
    for name, layer in layers.items():
        assert isinstance(layer, IA3Linear)
        assert layer.is_feedforward == name.endswith("down_proj")  # the T-Few placement
    assert all(name.rsplit(".", 2)[-2] == "ia3_l" for name, _ in adapter_parameters(model))


def test_adalora_allocates_ranks_and_regularises():
    cfg, model = adapted_model(
        "adalora",
        "tiny-decoder",
        "+method.peft.tinit=1",
        "+method.peft.tfinal=2",
        "+method.peft.deltaT=1",
        randomize=False,
    )
    model.train()
    batch = token_batch(cfg)
    with torch.no_grad():  # lora_E starts at zero: the adapters are the identity and only the penalty differs
        plain_loss = base_model(cfg)(**batch, labels=batch["input_ids"]).loss
        loss = model(**batch, labels=batch["input_ids"]).loss
        factors = [f for _, layer in peft_layers(model) for f in (layer.lora_A["default"], layer.lora_B["default"].T)]
        penalty = torch.stack([torch.dist(f @ f.T, torch.eye(len(f))) for f in factors]).mean()
    torch.testing.assert_close(loss, plain_loss + cfg.method.peft.orth_reg_weight * penalty)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(20):  # adapted_model passes total_steps=20
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        on_optimizer_step(model, step)
        optimizer.zero_grad()
    kept = sum(int((layer.lora_E["default"] != 0).sum()) for _, layer in peft_layers(model))
    target = cfg.method.peft.target_r * len(dict(peft_layers(model)))
    assert kept == target  # pruned from init_r per layer to the budget of target_r per layer on average
