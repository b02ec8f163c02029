"""Our LoRA and DoRA against PEFT's: same weights in, same outputs and gradients out (fp32, 1e-5), dropout included."""

from __future__ import annotations

import copy

import pytest
import torch
from adapter_helpers import base_model, config, randomize_adapters, token_batch
from peft import LoraConfig, inject_adapter_in_model

from bora.adapters import adapter_layers, count_adapter_params, inject


def twin_models(method: str):
    """(ours, PEFT's): the same base model with our adapter and PEFT's, holding identical adapter weights."""
    cfg = config(method)
    ours = base_model(cfg)
    theirs = copy.deepcopy(ours)
    names = inject(ours, cfg.method, cfg.model.targets)
    randomize_adapters(ours)
    peft_config = LoraConfig(
        r=cfg.method.r,
        lora_alpha=cfg.method.alpha,
        lora_dropout=cfg.method.dropout,
        target_modules=names,
        use_dora=method == "dora",
    )
    inject_adapter_in_model(peft_config, theirs)
    with torch.no_grad():
        for name, layer in adapter_layers(ours):
            twin = theirs.get_submodule(name)
            twin.lora_A["default"].weight.copy_(layer.A)
            twin.lora_B["default"].weight.copy_(layer.B)
            if method == "dora":
                twin.lora_magnitude_vector["default"].weight.copy_(layer.magnitude)
    return cfg, ours, theirs


def adapter_grads(model, method: str) -> dict[str, torch.Tensor]:
    """Gradients by (module, factor), under our names: A, B, magnitude."""
    grads = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module.lora_A, "keys"):  # PEFT layer
            grads[(name, "A")] = module.lora_A["default"].weight.grad
            grads[(name, "B")] = module.lora_B["default"].weight.grad
            if method == "dora":
                grads[(name, "magnitude")] = module.lora_magnitude_vector["default"].weight.grad
    for name, layer in adapter_layers(model):
        grads[(name, "A")], grads[(name, "B")] = layer.A.grad, layer.B.grad
        if method == "dora":
            grads[(name, "magnitude")] = layer.magnitude.grad
    return grads


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("training", [False, True])  # training: dropout 0.05 active (same RNG stream for both)
def test_same_outputs_and_gradients_as_peft(method, training):
    cfg, ours, theirs = twin_models(method)
    assert count_adapter_params(ours) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    batch = token_batch(cfg)
    outputs = []
    for model in (ours, theirs):
        model.train(training)
        torch.manual_seed(7)
        out = model(**batch, labels=batch["input_ids"])
        out.loss.backward()
        outputs.append(out.logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    ours_grads, their_grads = adapter_grads(ours, method), adapter_grads(theirs, method)
    assert ours_grads.keys() == their_grads.keys() and len(ours_grads) > 0
    for key, grad in ours_grads.items():
        torch.testing.assert_close(grad, their_grads[key], rtol=1e-5, atol=1e-5, msg=str(key))


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_merged_weights_match_peft(method):
    _, ours, theirs = twin_models(method)
    for name, layer in adapter_layers(ours):
        twin = theirs.get_submodule(name)
        with torch.no_grad():
            expected = twin.get_base_layer().weight + twin.get_delta_weight("default")
            if method == "dora":  # PEFT merges DoRA as mag / ||W + dW|| * (W + dW)
                norm = (twin.get_base_layer().weight + twin.get_delta_weight("default")).norm(dim=1, keepdim=True)
                expected = twin.lora_magnitude_vector["default"].weight.unsqueeze(1) / norm * expected
            torch.testing.assert_close(layer.base_layer.weight + layer.delta_weight(), expected, rtol=1e-5, atol=1e-6)
