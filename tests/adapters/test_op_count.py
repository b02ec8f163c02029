"""Operators of one training step of one adapted layer, with BoRA and MELoRA in the LoRA form that GPUs train through
(``bora.adapters.blocks``), forced onto a CPU: at a small batch a GPU step is bound by the host launching kernels, so
every operator costs time whatever its size. The counts are deterministic (``bench.timing.layer_ops_per_step``:
forward and backward of the layer alone, views excluded; AdamW's step on its parameters is counted apart and not
asserted: on a GPU foreach AdamW runs one set of operators per step for the whole model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bora.adapters import blocks
from bora.adapters.bora import BoraLayer
from bora.adapters.lora import LoraLayer
from bora.adapters.melora import MeloraLayer
from bora.bench.timing import Runtime, layer_ops_per_step

# conf/trainer/default.yaml's AdamW (weight_decay 0: no decay operator)
TRAINER = SimpleNamespace(lr=1e-4, adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, weight_decay=0.0)
# MELoRA's LoRA form before BoRA's was rewritten (bf16 autocast; BoRA's was 65, LoRA's 24; float32: 29, 56, 16)
MELORA_BEFORE = 36
# what Sigma adds to MELoRA's form: exp(sigma / Mav) with the zero guard (5 operators) and its gradient (6)
SIGMA_OPS = 11
METHODS = {"lora": (LoraLayer, {}), "melora": (MeloraLayer, {"blocks": 4}), "bora": (BoraLayer, {"blocks": 16})}


def step_ops(method: str, dtype: str, lora_form: bool = True) -> dict[str, int]:
    """Per phase, the operators of one training step of a 512 -> 512 layer of ``method`` (the Table 4 settings: r=8,
    dropout 0.05; BoRA b=16, MELoRA 4 blocks); ``dtype`` bf16: a bf16 base under bf16 autocast, as the GPU bench."""
    cls, fields = METHODS[method]
    runtime = Runtime("cpu", dtype)
    torch.manual_seed(0)
    layer = cls(nn.Linear(512, 512, bias=False).to(runtime.torch_dtype()), r=8, alpha=16, dropout=0.05, **fields)
    if not lora_form:
        return layer_ops_per_step(layer, runtime, trainer_cfg=TRAINER)
    with blocks.lora_form_on("cpu"):
        if method != "lora":
            assert blocks.takes_lora_form(torch.empty(0, 512), layer.A, layer.B, layer.blocks)
        return layer_ops_per_step(layer, runtime, trainer_cfg=TRAINER)


def forward_backward(counts: dict[str, int]) -> int:
    return counts["forward"] + counts["backward"]


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_bora_lora_form_step_costs_no_more_operators_than_melora_did(dtype):
    counts = {method: step_ops(method, dtype) for method in METHODS}
    lora, melora, bora = (forward_backward(counts[m]) for m in METHODS)
    assert bora <= MELORA_BEFORE, counts
    assert lora <= melora <= bora <= melora + SIGMA_OPS, counts  # BoRA = MELoRA's form + Sigma's own operators
    assert counts["bora"]["optimizer"] > counts["melora"]["optimizer"]  # AdamW also steps sigma: counted apart


def test_bora_lora_form_costs_fewer_operators_than_its_block_form():
    assert forward_backward(step_ops("bora", "bf16")) < forward_backward(step_ops("bora", "bf16", lora_form=False))
