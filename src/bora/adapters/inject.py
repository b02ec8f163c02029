"""Put adapters into a model, and the model-wide operations on them (merge, disable, count, optimiser hook).

Each operation handles our ``AdapterLayer``s here and calls the PEFT side of it in ``bora.adapters.peft_method``
(a no-op on a model without a PEFT tuner).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from bora.adapters import peft_method
from bora.adapters.base import AdapterLayer, plain_dict
from bora.adapters.registry import METHOD_NAMES, METHODS, layer_arguments
from bora.config.resolvers import PAPER_LETTERS, canonical_targets
from bora.errors import BoraError


def target_patterns(letters: str, target_map: Mapping[str, str | None]) -> list[str]:
    """Paper target letters (e.g. ``QKV``) -> module-name regexes of one model (its config's ``targets``)."""
    unknown = [c for c in str(letters) if c not in PAPER_LETTERS]
    if unknown or not letters:
        raise BoraError(f"method.targets={letters!r}: use letters from {PAPER_LETTERS} (e.g. QV, QKV, QKVOGUD)")
    patterns = []
    for letter in canonical_targets(letters):
        pattern = target_map.get(letter)
        if not pattern:
            available = "".join(k for k in PAPER_LETTERS if target_map.get(k))
            raise BoraError(f"method.targets={letters!r}: this model has no '{letter}' module; it has {available}")
        patterns.append(pattern)
    return patterns


def find_targets(model: nn.Module, patterns: list[str]) -> list[str]:
    """Qualified names of the ``nn.Linear`` modules whose name ends with one of ``patterns``."""
    regex = re.compile(r"(?:^|\.)(?:" + "|".join(f"(?:{p})" for p in patterns) + r")$")
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and regex.search(name)]


def inject(
    model: nn.Module, method_cfg, target_map: Mapping[str, str | None], *, total_steps: int | None = None
) -> list[str]:
    """Wrap every targeted ``nn.Linear`` in the method's adapter layer and freeze every other parameter.

    ``target_map`` is the model config's letter -> module regex map; ``total_steps`` the number of optimiser steps
    (AdaLoRA's schedule needs it). A bad config raises before the model is touched. Returns the adapted names.
    """
    _check_method(method_cfg.name)
    _check_no_adapters(model)
    names = find_targets(model, target_patterns(method_cfg.targets, target_map))
    if not names:
        raise BoraError(
            f"method.targets={method_cfg.targets!r} matches no nn.Linear in {type(model).__name__}; "
            "check the model config's `targets` map"
        )
    peft_config = None
    if peft_method.is_peft(method_cfg):  # a PEFT tuner is built from a PEFT config for exactly these modules

        def resolve(letters: str) -> list[str]:
            return find_targets(model, target_patterns(letters, target_map))

        peft_config = peft_method.build_config(method_cfg, names, resolve, total_steps)
    return inject_modules(model, method_cfg, names, peft_config=peft_config)


def inject_modules(model: nn.Module, method_cfg, names: list[str], *, peft_config=None) -> list[str]:
    """Adapters on exactly the modules ``names`` (``load_adapters`` re-creates saved adapters with it);
    ``peft_config``: the PEFT config of ``method=peft``."""
    _check_method(method_cfg.name)
    _check_no_adapters(model)
    modules = dict(model.named_modules())
    for name in names:
        if not isinstance(modules.get(name), nn.Linear):
            raise BoraError(f"module {name!r} is not an nn.Linear of {type(model).__name__}; cannot adapt it")
    if peft_method.is_peft(method_cfg):
        peft_method.inject(model, peft_config)
        return list(names)
    layer_cls = METHODS[method_cfg.name]
    arguments = layer_arguments(layer_cls, plain_dict(method_cfg))  # resolved once: OmegaConf lookups are slow
    wrapped = {name: layer_cls(modules[name], name=name, **arguments) for name in names}  # validates before changes
    for param in model.parameters():  # the adapters are not in the model yet: this freezes base weights only
        param.requires_grad_(False)
    for name, layer in wrapped.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer)
    return list(names)


def _check_method(name: str) -> None:
    if name not in METHOD_NAMES:
        raise BoraError(f"unknown method {name!r}; choose one of: {', '.join(METHOD_NAMES)}")


def _check_no_adapters(model: nn.Module) -> None:
    if has_adapters(model):
        raise BoraError(f"{type(model).__name__} already has adapters; inject into a fresh base model")


def has_adapters(model: nn.Module) -> bool:
    return next(adapter_layers(model), None) is not None or peft_method.has_adapters(model)


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    """Our adapter layers (``method=peft`` layers are PEFT's own: see ``bora.adapters.peft_method``)."""
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield name, module


def oversized_rank(model: nn.Module, r: int) -> list[str]:
    """A warning (as a one-item list) when ``method.r`` exceeds the width of an adapted layer: the update's rank
    cannot exceed ``min(in, out)``, so the extra rank only adds parameters."""
    narrow = [(name, layer) for name, layer in adapter_layers(model) if r > min(layer.in_features, layer.out_features)]
    if not narrow:
        return []
    name, layer = narrow[0]
    message = (
        f"method.r={r} exceeds the width of {len(narrow)} adapted layers (e.g. {name}: "
        f"{layer.out_features} x {layer.in_features}); the update's rank cannot exceed min(in, out)"
    )
    warnings.warn(message, stacklevel=2)
    return [message]


def adapter_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The trainable parameters that belong to adapters (not base weights, not task heads)."""
    for layer_name, layer in adapter_layers(model):
        for name, param in layer.named_parameters():
            if not name.startswith("base_layer.") and param.requires_grad:
                yield f"{layer_name}.{name}", param
    yield from peft_method.adapter_tensors(model, trainable_only=True)


ADAPTER_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # trainer.adapter_dtype


def cast_adapters(model: nn.Module, adapter_dtype) -> None:
    """Keep every trainable adapter parameter in ``adapter_dtype`` (``trainer.adapter_dtype``): ``bf16`` as the BoRA
    authors' pipeline does (toplora-neurips25 utils/train_utils.py ``convert_lora_params_dtype``: ``param.data``
    of every ``lora_`` parameter, DoRA's magnitude included), so gradients and AdamW's state are bf16 too. Task
    heads are not adapters and stay as they are. The layers cast their input to their parameters' dtype."""
    dtype = ADAPTER_DTYPES[getattr(adapter_dtype, "value", adapter_dtype)]
    for _, param in adapter_parameters(model):
        if param.dtype != dtype:
            param.data = param.data.to(dtype)


DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}


def dtype_names(dtypes) -> str:
    """``fp32``, ``bf16``, ...: the names of ``dtypes`` joined by ``+`` where they differ (``none`` for none)."""
    return "+".join(sorted({DTYPE_NAMES.get(d, str(d).removeprefix("torch.")) for d in dtypes})) or "none"


def adapter_dtype_used(model: nn.Module) -> str:
    """The dtype the trainable adapter parameters actually hold (``fp32``, ``bf16``, ...; ``fp32+bf16`` when they
    differ; ``none`` without any): what a run records beside the ``trainer.adapter_dtype`` it asked for (PEFT's own
    methods keep their adapters in fp32 on a bf16 base whatever was asked)."""
    return dtype_names(p.dtype for _, p in adapter_parameters(model))


def count_adapter_params(model: nn.Module) -> int:
    """The paper's ``#Params``: trainable adapter parameters only (no classifier head)."""
    return sum(p.numel() for _, p in adapter_parameters(model))


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain ``nn.Linear`` back: a plain transformers model.

    Input-dependent adapters (HydraLoRA) refuse with a clear error before anything is merged.
    """
    layers = list(adapter_layers(model))
    for _, layer in layers:
        if not layer.mergeable:
            layer.merge()  # raises the layer's own one-line error; nothing has been merged yet
    for name, layer in layers:
        layer.merge()
        layer._weight_before_merge = None  # the adapter is gone for good; free the copy
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer.base_layer)
    peft_method.merge(model)
    return model


@contextlib.contextmanager
def disabled_adapters(model: nn.Module):
    """Inside the block the model computes exactly its base output."""
    layers = [layer for _, layer in adapter_layers(model)]
    previous = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    peft_method.set_enabled(model, False)
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous):
            layer.disabled = was
        peft_method.set_enabled(model, True)


def on_optimizer_step(model: nn.Module, global_step: int) -> None:
    """Call after every optimiser step, before ``zero_grad``: AdaLoRA's rank allocation; a no-op for the others."""
    peft_method.on_optimizer_step(model, global_step)
