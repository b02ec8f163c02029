"""``method=peft``: any PEFT tuner (AdaLoRA, IA3, PEFT's own LoRA, ...) through the same trainer as our methods.

``method.peft`` holds a PEFT config (``peft_type`` plus its fields). The modules come from ``method.targets`` like
every other method; a PEFT field ending in ``_modules`` given as paper letters (IA3's ``feedforward_modules: D``) is
resolved the same way. Injection builds the tuner class directly (what ``peft.inject_adapter_in_model`` does inside)
and keeps the tuner on the model, because AdaLoRA's rank allocation lives on it. PEFT's layers stay PEFT's own
(they are not ``AdapterLayer``s).

This module is the one place that knows about PEFT. ``bora.adapters.inject`` and ``bora.adapters.io`` ask
``is_peft(method_cfg)`` where the method decides what to build or expect, and otherwise call the PEFT side of each
model-wide operation unconditionally: ``has_adapters``, ``peft_layers``, ``adapter_tensors``, ``merge``,
``set_enabled``, ``on_optimizer_step``, ``saved_state`` / ``saved_config`` / ``pop_state`` / ``load_state``. Each is a
no-op on a model without a PEFT tuner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from bora.adapters.base import plain_dict
from bora.errors import BoraError

METHOD = "peft"  # method.name of every PEFT tuner (conf/method/peft.yaml, adalora.yaml, ia3.yaml)
TUNER_ATTR = "_bora_peft_tuner"  # a plain attribute (not a submodule), so the tuner never shows up in state dicts
ADAPTER_NAME = "default"
_ALLOCATOR_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")  # AdaLoRA's importance estimates (optimizer-like state)
STATE_PREFIX = "__adalora__."


def is_peft(method_cfg) -> bool:
    """Whether ``method_cfg`` asks for a PEFT tuner (built from ``method.peft``) instead of one of our layers."""
    return method_cfg.name == METHOD


def exact_names_regex(names: list[str]) -> str:
    """A PEFT ``target_modules`` regex (full match) selecting exactly ``names``."""
    return "|".join(re.escape(name) for name in names)


def build_config(method_cfg, names: list[str], resolve_letters: Callable[[str], list[str]], total_steps: int | None):
    """The PEFT config of ``method.peft`` for exactly the modules ``names``."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    fields = plain_dict(method_cfg.peft or {})
    peft_type = str(fields.pop("peft_type", "")).upper()
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise BoraError(f"method.peft.peft_type={peft_type or None!r}: set a PEFT tuner type, e.g. ADALORA, IA3, LORA")
    for key in ("target_modules", "task_type", "inference_mode"):
        if key in fields:
            raise BoraError(f"method.peft.{key} is set by bora (modules come from method.targets); remove it")
    for key, value in list(fields.items()):
        if key.endswith("_modules") and isinstance(value, str) and re.fullmatch("[QKVOGUD]+", value):
            fields[key] = exact_names_regex(resolve_letters(value))
    if peft_type == "ADALORA":
        if total_steps is None:
            raise BoraError("method.peft.peft_type=ADALORA needs the number of optimiser steps: pass total_steps")
        fields.setdefault("total_step", int(total_steps))
    return config_from_dict({"peft_type": peft_type, **fields, "target_modules": exact_names_regex(names)})


def config_from_dict(fields: Mapping[str, Any]):
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    fields = dict(fields)
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[fields["peft_type"]]
    try:
        return config_cls(**fields)
    except (TypeError, ValueError) as error:
        first = str(error).strip().splitlines()[0]
        raise BoraError(f"method.peft ({fields['peft_type']}): {first}") from error


def config_to_dict(config) -> dict:
    """JSON-ready fields of a PEFT config (``peft_type`` as its string)."""
    fields = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.to_dict().items()}
    fields["peft_type"] = str(getattr(config.peft_type, "value", config.peft_type))
    fields.pop("task_type", None)
    if fields["peft_type"] == "ADALORA":
        fields["rank_pattern"] = None  # AdaLoRA keeps its masks there: tuner state, saved apart (see `state`)
    return json.loads(json.dumps(fields, default=str))


def inject(model: nn.Module, config) -> None:
    """Inject the PEFT tuner in place; only its adapter parameters stay trainable."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    if getattr(tuner_cls, "uses_shared_state", False):
        raise BoraError(f"method.peft.peft_type={config.peft_type}: tuners with shared state are not supported")
    for param in model.parameters():
        param.requires_grad_(False)
    tuner = tuner_cls(model, config, adapter_name=ADAPTER_NAME)
    # As PeftModel does: adapters on a bf16/fp16 base train in float32 (PEFT creates them in the base's dtype).
    tuner._cast_adapter_dtype(adapter_name=ADAPTER_NAME, autocast_adapter_dtype=True)
    object.__setattr__(model, TUNER_ATTR, tuner)
    if _is_adalora(tuner) and config.orth_reg_weight > 0:
        handle = model.register_forward_hook(_adalora_orth_reg)
        object.__setattr__(model, "_bora_orth_reg_hook", handle)


def tuner_of(model: nn.Module):
    return model.__dict__.get(TUNER_ATTR)


def has_adapters(model: nn.Module) -> bool:
    return tuner_of(model) is not None or next(peft_layers(model), None) is not None


def peft_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer):
            yield name, module


def adapter_tensors(model: nn.Module, trainable_only: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """PEFT adapter parameters (``lora_A``, ``lora_E``, ``ia3_l``, ...) under their model-level names."""
    for layer_name, layer in peft_layers(model):
        # dict.fromkeys: PEFT appends "lora_magnitude_vector" to a DoRA layer's names though its class lists it
        # already, which counted DoRA's magnitudes twice
        for attr in dict.fromkeys(layer.adapter_layer_names):
            for name, param in getattr(layer, attr).named_parameters(prefix=f"{layer_name}.{attr}"):
                if param.requires_grad or not trainable_only:
                    yield name, param


def merge(model: nn.Module) -> None:
    tuner = tuner_of(model)
    if tuner is None:
        return
    tuner.merge_and_unload()  # replaces PEFT's layers by their merged base layers inside `model`
    _detach(model)


def set_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch PEFT's adapters on or off; PEFT toggles requires_grad on the way, so restore it."""
    if tuner_of(model) is None:
        return
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for _, layer in peft_layers(model):
        layer.enable_adapters(enabled)
    for name, param in model.named_parameters():
        param.requires_grad_(flags[name])


def on_optimizer_step(model: nn.Module, global_step: int) -> None:
    tuner = tuner_of(model)
    if tuner is not None and _is_adalora(tuner):
        tuner.update_and_allocate(global_step)


def saved_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """What ``save_adapters`` writes for a PEFT tuner beyond its parameters, as (tensors, adapter-config fields): the
    PEFT config (``peft_config``) and the tuner state (``tuner_state``; AdaLoRA: its importance estimates, as tensors,
    and the rank pattern), for exact resumes. ``({}, {})`` for a model without a PEFT tuner."""
    tuner = tuner_of(model)
    if tuner is None:
        return {}, {}
    tensors, info = {}, {}
    if _is_adalora(tuner):
        allocator = tuner.rankallocator
        tensors = {
            f"{STATE_PREFIX}{kind}.{name}": value.detach().contiguous()
            for kind in _ALLOCATOR_STATE
            for name, value in getattr(allocator, kind).items()
        }
        info = {"rank_pattern": tuner.peft_config[ADAPTER_NAME].rank_pattern}
    return tensors, {"peft_config": config_to_dict(tuner.peft_config[ADAPTER_NAME]), "tuner_state": info}


def saved_config(adapter_config: Mapping[str, Any]):
    """The PEFT config a saved adapter was built with (``saved_state``); None for our methods."""
    return config_from_dict(adapter_config["peft_config"]) if "peft_config" in adapter_config else None


def pop_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Take the tuner-state tensors (``saved_state``) out of a saved adapter's tensors, which keeps the parameters."""
    return {name: tensors.pop(name) for name in list(tensors) if name.startswith(STATE_PREFIX)}


def load_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], adapter_config: Mapping[str, Any]) -> None:
    """Restore the tuner state of ``saved_state``; a saved state that this model's method has no place for is an
    error."""
    info = adapter_config.get("tuner_state") or {}
    tuner = tuner_of(model)
    if tuner is None or not _is_adalora(tuner):
        if tensors:
            raise BoraError(f"saved tuner state {sorted(tensors)[0]!r} does not fit this model's method")
        return
    allocator = tuner.rankallocator
    allocator.reset_ipt()
    for key, value in tensors.items():
        kind, _, name = key[len(STATE_PREFIX) :].partition(".")
        getattr(allocator, kind)[name] = value.clone()
    tuner.peft_config[ADAPTER_NAME].rank_pattern = info.get("rank_pattern")


def _detach(model: nn.Module) -> None:
    handle = model.__dict__.pop("_bora_orth_reg_hook", None)
    if handle is not None:
        handle.remove()
    model.__dict__.pop(TUNER_ATTR, None)
    model.__dict__.pop("peft_config", None)


def _is_adalora(tuner) -> bool:
    from peft.tuners.adalora import AdaLoraModel

    return isinstance(tuner, AdaLoraModel)


def _adalora_orth_reg(model: nn.Module, args, output):
    """AdaLoRA's orthogonality penalty on ``P`` and ``Q``, added to ``output.loss`` as ``AdaLoraModel.forward`` does."""
    loss = getattr(output, "loss", None)
    if not isinstance(loss, torch.Tensor):
        return output
    config = tuner_of(model).peft_config[ADAPTER_NAME]
    penalties = []
    for _, layer in peft_layers(model):
        for factor in (layer.lora_A[ADAPTER_NAME], layer.lora_B[ADAPTER_NAME].T):  # P (r x n) and Q^T (r x m)
            gram = factor @ factor.T
            penalties.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=gram.device), "fro"))
    if penalties:
        output.loss = loss + config.orth_reg_weight * torch.stack(penalties).mean()
    return output
