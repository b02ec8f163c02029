"""save_adapters / load_adapters round trips (bit-exact, strict) and export_peft_lora loaded by PEFT itself."""

from __future__ import annotations

import json

import pytest
import torch
from adapter_helpers import ALL, MERGEABLE, MERGED, adapted_model, base_model, config, logits, token_batch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from bora.adapters import (
    adapter_layers,
    export_peft_lora,
    load_adapters,
    merge_adapters,
    on_optimizer_step,
    save_adapters,
)
from bora.adapters.io import CONFIG_FILE, WEIGHTS_FILE, saved_tensors
from bora.errors import BoraError


@pytest.mark.parametrize("method", ALL)
def test_round_trip_into_a_base_model_is_exact(method, tmp_path):
    cfg, model = adapted_model(method, "tiny-encoder")
    model.classifier.requires_grad_(True)  # the trainer trains the task head: it is saved with the adapter
    with torch.no_grad():
        model.classifier.out_proj.weight.add_(1.0)
    batch = token_batch(cfg)
    with torch.no_grad():
        expected = logits(model, batch)
    save_adapters(model, tmp_path, cfg.method)
    fresh = base_model(cfg)
    names = load_adapters(fresh, tmp_path)
    assert names == json.loads((tmp_path / CONFIG_FILE).read_text())["modules"]
    expected_tensors, loaded_tensors = saved_tensors(model), {**saved_tensors(fresh), **dict(fresh.named_parameters())}
    for name, tensor in expected_tensors.items():
        assert torch.equal(loaded_tensors[name], tensor), name  # bit-identical
    with torch.no_grad():
        torch.testing.assert_close(logits(fresh.eval(), batch), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["lora", "bora"])
def test_adapters_trained_in_bf16_load_in_bf16_and_compute_what_was_trained(method, tmp_path):
    """trainer.adapter_dtype=bf16: the layers cast their input to their parameters' dtype, so a reload into a fresh
    (float32) injection must keep bf16, or the same values give another update (2.5e-4 apart in a tiny run's loss)."""
    from bora.adapters.inject import adapter_parameters, cast_adapters

    cfg, model = adapted_model(method, "tiny-encoder")
    cast_adapters(model, "bf16")
    batch = token_batch(cfg)
    with torch.no_grad():
        expected = logits(model.eval(), batch)
    save_adapters(model, tmp_path, cfg.method)
    fresh = base_model(cfg)
    load_adapters(fresh, tmp_path)
    assert {p.dtype for _, p in adapter_parameters(fresh)} == {torch.bfloat16}
    with torch.no_grad():
        torch.testing.assert_close(logits(fresh.eval(), batch), expected, rtol=0, atol=0)


def test_repeated_saves_during_training_restore_bit_identical_state(tmp_path):
    """The trainer checkpoints with this pair: load into the live model (same objects) after more steps."""
    cfg, model = adapted_model("bora", "tiny-decoder", randomize=False)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = token_batch(cfg)

    def step():
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    save_adapters(model, tmp_path, cfg.method)
    snapshot = {k: v.clone() for k, v in saved_tensors(model).items()}
    step()
    save_adapters(model, tmp_path, cfg.method)  # overwrite in place
    step()
    assert not all(torch.equal(snapshot[k], v) for k, v in saved_tensors(model).items())
    second = {k: v.clone() for k, v in saved_tensors(model).items()}
    params_before = {id(p) for p in model.parameters()}
    load_adapters(model, tmp_path)
    assert {id(p) for p in model.parameters()} == params_before  # loaded in place: optimizer references stay valid
    assert not (tmp_path / f".{WEIGHTS_FILE}.tmp").exists()
    assert any(not torch.equal(second[k], v) for k, v in saved_tensors(model).items())  # went back one step


def test_sbora_indices_are_saved_and_restored(tmp_path):
    cfg, model = adapted_model("sbora-fa", "tiny-decoder")
    save_adapters(model, tmp_path, cfg.method)
    fresh = base_model(cfg)
    torch.manual_seed(999)  # a different global RNG state draws different indices on injection
    load_adapters(fresh, tmp_path)
    for name, layer in adapter_layers(model):
        assert torch.equal(fresh.get_submodule(name).indices, layer.indices)


def test_index_seed_makes_indices_reproducible():
    draws = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        _, model = adapted_model("sbora-fb", "tiny-decoder", "method.index_seed=3", randomize=False, seed=global_seed)
        draws.append([layer.indices.tolist() for _, layer in adapter_layers(model)])
    assert draws[0] == draws[1]
    assert len({tuple(d) for d in draws[0]}) > 1  # layers get different indices


def test_strict_loading(tmp_path):
    cfg, model = adapted_model("lora", "tiny-decoder")
    save_adapters(model, tmp_path, cfg.method)
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    missing = dict(tensors)
    missing.pop(next(iter(missing)))
    save_file(missing, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(BoraError, match="lacks 1 tensor"):
        load_adapters(base_model(cfg), tmp_path)
    save_file({**tensors, "nonsense.weight": torch.zeros(1)}, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(BoraError, match="this model lacks"):
        load_adapters(base_model(cfg), tmp_path)
    save_file(tensors, str(tmp_path / WEIGHTS_FILE))
    _, other = adapted_model("bora", "tiny-decoder")
    with pytest.raises(BoraError, match="holds method 'lora'"):
        load_adapters(other, tmp_path)
    with pytest.raises(BoraError, match="not a saved adapter"):
        load_adapters(base_model(cfg), tmp_path / "nowhere")
    with pytest.raises(BoraError, match="no adapters to save"):
        save_adapters(base_model(cfg), tmp_path / "empty", cfg.method)


def test_a_cut_off_adapter_is_one_line_naming_the_file(tmp_path):
    cfg, model = adapted_model("lora", "tiny-decoder")
    save_adapters(model, tmp_path, cfg.method)
    weights, settings = tmp_path / WEIGHTS_FILE, tmp_path / CONFIG_FILE
    whole_weights, whole_settings = weights.read_bytes(), settings.read_text()
    for cut in (50, len(whole_weights) - 10):  # inside the header; inside the tensor bytes
        weights.write_bytes(whole_weights[:cut])
        with pytest.raises(BoraError, match=rf"{WEIGHTS_FILE}: cut off .*train or export it again"):
            load_adapters(base_model(cfg), tmp_path)
    weights.write_bytes(whole_weights)
    settings.write_text(whole_settings[: len(whole_settings) // 2])
    with pytest.raises(BoraError, match=rf"{CONFIG_FILE}: not a readable adapter config"):
        load_adapters(base_model(cfg), tmp_path)
    settings.write_bytes(b"\xff\xfe{}")
    with pytest.raises(BoraError, match="not a readable adapter config"):
        load_adapters(base_model(cfg), tmp_path)


def test_adalora_allocator_state_survives_a_resume(tmp_path):
    cfg, model = adapted_model(
        "adalora", "tiny-decoder", "+method.peft.tinit=1", "+method.peft.deltaT=1", randomize=False
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = token_batch(cfg)
    for step in range(4):
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        on_optimizer_step(model, step)
        optimizer.zero_grad()
    save_adapters(model, tmp_path, cfg.method)
    fresh = base_model(cfg)
    load_adapters(fresh, tmp_path)
    ours, theirs = model._bora_peft_tuner, fresh._bora_peft_tuner
    assert ours.rankallocator.exp_avg_ipt.keys() == theirs.rankallocator.exp_avg_ipt.keys()
    for name, value in ours.rankallocator.exp_avg_unc.items():
        assert torch.equal(theirs.rankallocator.exp_avg_unc[name], value)
    assert theirs.peft_config["default"].rank_pattern == ours.peft_config["default"].rank_pattern
    assert theirs.peft_config["default"].rank_pattern  # the budget schedule has masked something by now


@pytest.mark.parametrize("method", MERGEABLE)
def test_export_is_a_standard_peft_lora(method, tmp_path):
    cfg, model = adapted_model(method, "tiny-encoder")
    model.classifier.requires_grad_(True)
    batch = token_batch(cfg)
    with torch.no_grad():
        model.classifier.out_proj.bias.add_(0.5)
        expected = logits(model, batch)
    export_peft_lora(model, tmp_path)
    exported = json.loads((tmp_path / "adapter_config.json").read_text())
    layer = next(adapter_layers(model))[1]
    expected_rank = {"bora": layer.r * getattr(layer, "blocks", 1), "melora": layer.r * getattr(layer, "blocks", 1)}
    assert exported["peft_type"] == "LORA" and exported["r"] == expected_rank.get(method, layer.r)
    assert exported["use_dora"] == (method == "dora")
    served = PeftModel.from_pretrained(base_model(cfg), str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(logits(served, batch), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits(served.merge_and_unload(), batch), expected, **MERGED)


def test_export_refuses_input_dependent_and_peft_methods(tmp_path):
    for method in ("hydralora", "adalora"):
        _, model = adapted_model(method, "tiny-decoder", randomize=False)
        with pytest.raises(BoraError):
            export_peft_lora(model, tmp_path / method)


def test_merged_model_saves_as_a_plain_transformers_model(tmp_path):
    cfg, model = adapted_model("bora", "tiny-decoder")
    batch = token_batch(cfg)
    with torch.no_grad():
        expected = logits(model, batch)
    merge_adapters(model).save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(logits(reloaded, batch), expected, **MERGED)
    assert config("bora").method.name == "bora"
