"""Put adapters into a model, and the model-wide operations on them (merge, disable, count)."""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Mapping

from torch import nn

from bora.adapters.base import AdapterLayer
from bora.errors import BoraError

PAPER_LETTERS = "QKVOGUD"


def target_patterns(letters: str, target_map: Mapping[str, str | None]) -> list[str]:
    """Paper target letters (e.g. ``QKV``) -> module-name regexes of one model (its config's ``targets``)."""
    unknown = [c for c in letters if c not in PAPER_LETTERS]
    if unknown or not letters:
        raise BoraError(f"method.targets={letters!r}: use letters from {PAPER_LETTERS} (e.g. QV, QKV, QKVOGUD)")
    patterns = []
    for letter in letters:
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


def inject(model: nn.Module, method_cfg, target_map: Mapping[str, str | None]) -> list[str]:
    """Wrap every targeted ``nn.Linear`` in the method's adapter layer and freeze everything else.

    All adapter layers are built (and validated) before any is swapped in, so a bad config leaves the model
    untouched. Returns the names of the adapted modules.
    """
    from bora.adapters.registry import METHODS  # late import: method modules import this package's base

    layer_cls = METHODS.get(method_cfg.name)
    if layer_cls is None:
        raise BoraError(f"unknown method {method_cfg.name!r}; choose one of: {', '.join(sorted(METHODS))}")
    names = find_targets(model, target_patterns(method_cfg.targets, target_map))
    if not names:
        raise BoraError(
            f"method.targets={method_cfg.targets!r} matches no nn.Linear in {type(model).__name__}; "
            "check the model config's `targets` map"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    wrapped = {name: layer_cls(model.get_submodule(name), method_cfg, name) for name in names}
    for name, layer in wrapped.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer)
    return names


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield name, module


def adapter_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The trainable parameters that belong to adapters (not base weights, not task heads)."""
    for layer_name, layer in adapter_layers(model):
        for name, param in layer.named_parameters():
            if not name.startswith("base_layer.") and param.requires_grad:
                yield f"{layer_name}.{name}", param


def count_adapter_params(model: nn.Module) -> int:
    """The paper's ``#Params``: trainable adapter parameters only (no classifier head)."""
    return sum(p.numel() for _, p in adapter_parameters(model))


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain ``nn.Linear`` back: a plain transformers model."""
    layers = list(adapter_layers(model))
    refusing = [name for name, layer in layers if not layer.mergeable]
    if refusing:
        layers[[n for n, _ in layers].index(refusing[0])][1].merge()  # raises the layer's own clear error
    for name, layer in layers:
        layer.merge()
        layer._weight_before_merge = None  # the adapter is gone for good; free the copy
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer.base_layer)
    return model


@contextlib.contextmanager
def disabled_adapters(model: nn.Module):
    """Inside the block the model computes exactly its base output."""
    layers = [layer for _, layer in adapter_layers(model)]
    previous = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous):
            layer.disabled = was
