"""QSBoRA / QLoRA: any method on a 4-bit NF4 base (model.quantization=nf4), through bitsandbytes on this CPU."""

import json
from pathlib import Path

import pytest
import torch

from bora.config import load_config
from bora.errors import BoraError
from bora.train import train

pytest.importorskip("bitsandbytes", reason="pip install -e '.[quant]' (bitsandbytes) to run the NF4 tests")

QUICK = [
    "model=tiny-decoder",
    "task=toy-math",
    "model.quantization=nf4",
    "trainer.max_steps=20",
    "task.max_eval_samples=4",
    "task.max_new_tokens=4",
]


def _loaded(cfg):
    from bora.adapters import inject
    from bora.models import load_model

    torch.manual_seed(0)
    model = load_model(cfg.model)
    inject(model, cfg.method, cfg.model.targets)
    return model.eval()  # no adapter dropout


@pytest.mark.parametrize("method", ["sbora-fa", "dora"])
def test_a_method_on_an_nf4_base_trains_with_falling_loss_and_round_trips(tmp_path, method):
    from bora.adapters import load_adapters

    cfg = load_config([f"output_dir={tmp_path}", f"method={method}", *QUICK])
    train(cfg)
    result = json.loads((Path(cfg.run_dir) / "result.json").read_text())
    assert result["status"] == "success" and result["config"]["model"]["quantization"] == "nf4"
    losses = [entry["loss"] for entry in result["train"]["loss_history"]]
    assert losses[-1] < losses[0] - 0.3, losses

    model = _loaded(cfg)
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.base_layer.weight.dtype == torch.uint8  # packed 4-bit: the base really is quantized
    assert all(p.dtype == torch.float32 for p in layer.parameters() if p.requires_grad)  # adapters stay fp32
    ids = torch.arange(3, 40).view(1, -1)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        load_adapters(model, Path(cfg.run_dir) / "adapter")
        after = model(input_ids=ids).logits
    assert not torch.allclose(before, after)  # the trained adapter changes the output ...
    again = _loaded(cfg)
    load_adapters(again, Path(cfg.run_dir) / "adapter")
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, after, atol=1e-5)  # ... the same after a reload


def test_merging_into_a_4bit_base_is_refused(tmp_path):
    from bora.adapters import merge_adapters

    model = _loaded(load_config([f"output_dir={tmp_path}", "method=sbora-fa", *QUICK]))
    with pytest.raises(BoraError, match="4-bit .*unmerged"):
        merge_adapters(model)


def test_the_adapter_parameters_do_not_depend_on_quantization(tmp_path):
    from bora.adapters import count_adapter_params

    dense = _loaded(load_config([f"output_dir={tmp_path}", "method=sbora-fa", "model=tiny-decoder", "task=toy-math"]))
    quantized = _loaded(load_config([f"output_dir={tmp_path}", "method=sbora-fa", *QUICK]))
    assert count_adapter_params(dense) == count_adapter_params(quantized) > 0


def test_quantizing_an_encoder_is_refused_in_one_line(tmp_path):
    from bora.models import load_model

    cfg = load_config([f"output_dir={tmp_path}", "model.quantization=nf4"])  # tiny encoder
    with pytest.raises(BoraError, match="quantization=nf4 is for decoder models"):
        load_model(cfg.model, num_labels=2)


def test_quantization_is_part_of_the_run_identity(tmp_path):
    dense = load_config([f"output_dir={tmp_path}", "model=tiny-decoder", "task=toy-math"])
    quantized = load_config([f"output_dir={tmp_path}", "model=tiny-decoder", "task=toy-math", "model.quantization=nf4"])
    assert dense.run_dir != quantized.run_dir
    with pytest.raises(BoraError, match="model.quantization"):
        load_config([f"output_dir={tmp_path}", "model.quantization=int3"])
