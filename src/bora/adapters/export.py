"""Export a trained adapter as a standard PEFT LoRA adapter, so any LoRA-capable stack can serve it.

Every mergeable method here is exactly a LoRA of some rank (``dW = s B_lora A_lora``): LoRA and SBoRA of rank ``r``,
MELoRA of rank ``N r`` (block-diagonal factors), BoRA of rank ``b r`` (paper eq. 6: ``A' `` block diagonal,
``B' Sigma'`` dense). DoRA exports as PEFT's LoRA with ``use_dora=True``. The scale is kept as
``lora_alpha = s * rank``. Trained task heads go into ``modules_to_save``. HydraLoRA (input-dependent) has no
LoRA form and is refused, as is ``method=peft`` (save it with PEFT itself).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from bora.adapters import peft_method
from bora.adapters.dora import DoraLayer
from bora.adapters.inject import adapter_layers
from bora.errors import BoraError

PEFT_WEIGHTS = "adapter_model.safetensors"


def export_peft_lora(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    heads: list[str] | None = None,
    base_model_name_or_path: str | None = None,
    task_type: str | None = None,
) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` that ``peft.PeftModel.from_pretrained``
    loads onto the base model, giving the same outputs as ``model``.

    ``heads``: the task-head modules to save with it (PEFT's ``modules_to_save``); default: the modules outside the
    adapters with trainable parameters (a reloaded adapter has a frozen head: name it, as ``bora export`` does)."""
    from peft import LoraConfig

    if peft_method.tuner_of(model) is not None:
        raise BoraError("method=peft adapters are PEFT's own: export them with PEFT's save_pretrained")
    layers = list(adapter_layers(model))
    if not layers:
        raise BoraError(f"{type(model).__name__} has no adapters to export")
    tensors, ranks, alphas = {}, {}, {}
    for name, layer in layers:
        if not hasattr(layer, "lora_factors"):
            raise BoraError(f"{type(layer).__name__} at {name} is input-dependent and has no LoRA form to export")
        lora_A, lora_B = layer.lora_factors()
        prefix = f"base_model.model.{name}"
        tensors[f"{prefix}.lora_A.weight"] = lora_A
        tensors[f"{prefix}.lora_B.weight"] = lora_B
        if isinstance(layer, DoraLayer):
            tensors[f"{prefix}.lora_magnitude_vector"] = layer.magnitude.float()
        ranks[name] = lora_A.shape[0]
        alphas[name] = layer.scaling * lora_A.shape[0]
    heads = _trained_heads(model) if heads is None else list(heads)
    for head in heads:
        tensors.update({f"base_model.model.{head}.{k}": v for k, v in model.get_submodule(head).state_dict().items()})
    rank, alpha = Counter(ranks.values()).most_common(1)[0][0], Counter(alphas.values()).most_common(1)[0][0]
    first = layers[0][1]
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=[name for name, _ in layers],
        rank_pattern={re.escape(n): v for n, v in ranks.items() if v != rank},
        alpha_pattern={re.escape(n): v for n, v in alphas.items() if v != alpha},
        lora_dropout=getattr(first.dropout, "p", 0.0),
        use_dora=isinstance(first, DoraLayer),
        modules_to_save=heads or None,
        base_model_name_or_path=base_model_name_or_path,
        task_type=task_type,
    )
    directory = Path(directory)
    config.save_pretrained(str(directory))
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(directory / PEFT_WEIGHTS), metadata={"format": "pt"})


def _trained_heads(model: nn.Module) -> list[str]:
    """Modules outside the adapters that own trainable parameters (the task head), for PEFT's ``modules_to_save``."""
    adapted = tuple(f"{name}." for name, _ in adapter_layers(model))
    owners = {
        name.rpartition(".")[0]
        for name, p in model.named_parameters()
        if p.requires_grad and not name.startswith(adapted)
    }
    return sorted(owners)
