"""Method name (``method.name`` in the configs) -> adapter layer class. A new method is one file plus one line."""

from __future__ import annotations

from bora.adapters.bora import BoraLayer
from bora.adapters.lora import LoraLayer

METHODS = {
    "lora": LoraLayer,
    "bora": BoraLayer,
}
