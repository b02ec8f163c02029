"""PEFT's tuner checklist for every method: identity at init, forward = base + x dW^T, merge / unmerge / disable,
gradients only on adapters, bf16 training."""

from __future__ import annotations

import pytest
import torch
from adapter_helpers import ALL, MERGEABLE, MERGED, adapted_model, base_model, config, logits, token_batch
from torch import nn

from bora.adapters import (
    AdapterLayer,
    adapter_layers,
    adapter_parameters,
    count_adapter_params,
    disabled_adapters,
    inject,
    merge_adapters,
    on_optimizer_step,
)
from bora.errors import BoraError


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("model_name", ["tiny-decoder", "tiny-encoder"])
def test_identity_at_initialisation(method, model_name):
    cfg = config(method, model_name)
    reference = base_model(cfg)
    batch = token_batch(cfg)
    with torch.no_grad():
        expected = logits(reference, batch)
        names = inject(reference, cfg.method, cfg.model.targets, total_steps=20)
        assert names and count_adapter_params(reference) > 0
        torch.testing.assert_close(logits(reference.eval(), batch), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", MERGEABLE)
def test_forward_is_base_plus_delta_weight(method, rng):
    _, model = adapted_model(method)
    for name, layer in adapter_layers(model):
        x = torch.randn(3, 5, layer.in_features, generator=rng)
        with torch.no_grad():
            expected = layer.base_layer(x) + x @ layer.delta_weight().T
            torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5, msg=name)
            torch.testing.assert_close(layer.update(x), x @ layer.delta_weight().T, rtol=1e-5, atol=1e-5)
        assert layer.delta_weight().shape == (layer.out_features, layer.in_features)


@pytest.mark.parametrize("method", MERGEABLE)
def test_merge_unmerge_disable(method):
    cfg, model = adapted_model(method)
    batch = token_batch(cfg)
    base_weights = {name: layer.base_layer.weight.detach().clone() for name, layer in adapter_layers(model)}
    with torch.no_grad():
        base_out = logits(base_model(cfg), batch)
        adapted_out = logits(model, batch)
        assert (adapted_out - base_out).abs().max() > 1e-3  # the randomised adapters do change the output
        with disabled_adapters(model):
            torch.testing.assert_close(logits(model, batch), base_out, rtol=0, atol=0)
        for _, layer in adapter_layers(model):
            layer.merge()
        torch.testing.assert_close(logits(model, batch), adapted_out, **MERGED)
        for name, layer in adapter_layers(model):
            layer.unmerge()
            assert torch.equal(layer.base_layer.weight, base_weights[name])  # exact, not approximately
        torch.testing.assert_close(logits(model, batch), adapted_out, rtol=0, atol=0)

        merged = merge_adapters(model)
        assert not any(isinstance(m, AdapterLayer) for m in merged.modules())
        assert all(type(merged.get_submodule(name)) is nn.Linear for name in base_weights)
        torch.testing.assert_close(logits(merged, batch), adapted_out, **MERGED)


def test_hydralora_refuses_to_merge_and_matches_its_formula(rng):
    cfg, model = adapted_model("hydralora")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BoraError, match="input-dependent"):
        merge_adapters(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing merged halfway
    name, layer = next(adapter_layers(model))
    with pytest.raises(BoraError, match="input-dependent"):
        layer.delta_weight()
    x = torch.randn(4, layer.in_features, generator=rng)
    with torch.no_grad():
        weights = torch.softmax(x @ layer.router.T, dim=-1)  # (T, N)
        hidden = x @ layer.A.T
        expected = layer.base_layer(x) + layer.scaling * sum(
            weights[:, i : i + 1] * (hidden @ layer.B[i].T) for i in range(layer.heads)
        )
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
        with disabled_adapters(model):
            torch.testing.assert_close(layer(x), layer.base_layer(x))


@pytest.mark.parametrize("method", ALL)
def test_only_adapter_parameters_train(method):
    cfg, model = adapted_model(method, "tiny-decoder", randomize=False)
    model.train()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in adapter_parameters(model)}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = token_batch(cfg)
    for step in range(3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        for name, p in model.named_parameters():
            assert (p.grad is not None) == (name in trainable), name
        optimizer.step()
        on_optimizer_step(model, step)
        optimizer.zero_grad()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and changed <= trainable
    # Every adapter tensor a method zero-initialises (B, or A for SBoRA-FB) has moved off zero.
    assert len(changed) >= len(trainable) // 2


@pytest.mark.parametrize("method", ALL)
def test_bf16_training_has_finite_loss(method):
    cfg = config(method)
    model = base_model(cfg).to(torch.bfloat16).train()  # a bf16 base, as the paper's LLM runs
    inject(model, cfg.method, cfg.model.targets, total_steps=20)  # adapters in float32
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = token_batch(cfg)
    for step in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch, labels=batch["input_ids"]).loss
        assert torch.isfinite(loss), (method, step)
        loss.backward()
        optimizer.step()
        on_optimizer_step(model, step)
        optimizer.zero_grad()
    # Without autocast too: a bf16 base with float32 adapters computes the update in float32.
    with torch.no_grad():
        out = model(**batch).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("method", ALL)
def test_adapters_on_a_bf16_base_are_float32(method):
    """PEFT's rule (peft >= 0.22), ours too: every tensor of an adapter is float32 on a bf16 base, trainable or not
    (AdaLoRA's ``ranknum.default``, the rank its scaling divides by); the base's weights stay bf16."""
    from bora.adapters.peft_method import ADAPTER_NAME

    cfg = config(method)
    model = base_model(cfg).to(torch.bfloat16)
    inject(model, cfg.method, cfg.model.targets, total_steps=20)
    assert {p.dtype for _, p in adapter_parameters(model)} == {torch.float32}
    frozen = {name: p.dtype for name, p in model.named_parameters() if not p.requires_grad}
    adapter_state = {name for name in frozen if name.endswith(f".{ADAPTER_NAME}")}
    assert {frozen[name] for name in adapter_state} <= {torch.float32}
    assert {dtype for name, dtype in frozen.items() if name not in adapter_state} == {torch.bfloat16}
    if method == "adalora":
        assert any(".ranknum." in name for name in adapter_state)


def test_every_layer_argument_is_a_method_config_field():
    """Layers get their settings by name from the method config (``registry.layer_arguments``): a misspelt argument
    with a default would silently never be set, so every one must be a ``MethodConfig`` field."""
    import dataclasses
    import inspect

    from bora.adapters import METHODS
    from bora.config.schema import MethodConfig

    fields = {f.name for f in dataclasses.fields(MethodConfig)}
    for method, layer_cls in METHODS.items():
        parameters = inspect.signature(layer_cls).parameters.values()
        arguments = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} - {"name"}
        assert {"r", "alpha", "dropout"} <= arguments <= fields, method
