"""Method name (``method.name`` in the configs) -> adapter layer class. A new method is one file plus one line.

``layer_arguments`` is the only code that reads a method config for a layer: a layer's keyword-only arguments are
named like the config's fields, so the layer's signature says which fields it uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from bora.adapters import peft_method
from bora.adapters.base import AdapterLayer
from bora.adapters.bora import BoraLayer
from bora.adapters.dora import DoraLayer
from bora.adapters.hydralora import HydraLoraLayer
from bora.adapters.lora import LoraLayer
from bora.adapters.melora import MeloraLayer
from bora.adapters.sbora import SboraFALayer, SboraFBLayer

METHODS = {
    "lora": LoraLayer,
    "dora": DoraLayer,
    "melora": MeloraLayer,
    "hydralora": HydraLoraLayer,
    "bora": BoraLayer,
    "sbora-fa": SboraFALayer,
    "sbora-fb": SboraFBLayer,
}
# method=peft runs any PEFT tuner through PEFT's own layers (bora.adapters.peft_method), so it has no class here.
METHOD_NAMES = sorted([*METHODS, peft_method.METHOD])


def layer_arguments(layer_cls: type[AdapterLayer], method: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``method`` (a plain dict of the method config) that ``layer_cls`` takes, as keyword arguments.

    ``name`` is left out: for a layer it is the adapted module's name, in the config the method's. A field the config
    lacks keeps the layer's default (a required one then fails as a missing argument)."""
    parameters = inspect.signature(layer_cls).parameters.values()
    return {
        p.name: method[p.name] for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "name" and p.name in method
    }
