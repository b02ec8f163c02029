"""Method name (``method.name`` in the configs) -> adapter layer class. A new method is one file plus one line."""

from __future__ import annotations

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
PEFT_METHOD = "peft"  # any PEFT tuner, built by bora.adapters.peft_method (PEFT's own layers, not a class here)
METHOD_NAMES = sorted([*METHODS, PEFT_METHOD])
