"""Adapter methods: one module per method (config, layer, delta weight, merge, forward) and a registry.

Public interface: ``inject``, ``on_optimizer_step``, ``merge_adapters``, ``disabled_adapters``,
``count_adapter_params``, ``cast_adapters``, ``adapter_layers``, ``adapter_parameters``, ``save_adapters``,
``load_adapters``, ``export_peft_lora``; ``METHODS`` / ``METHOD_NAMES`` list the methods (``method.name`` in the
configs).
"""

from bora.adapters.base import AdapterLayer
from bora.adapters.export import export_peft_lora
from bora.adapters.inject import (
    adapter_dtype_used,
    adapter_layers,
    adapter_parameters,
    cast_adapters,
    count_adapter_params,
    disabled_adapters,
    find_targets,
    has_adapters,
    inject,
    inject_modules,
    merge_adapters,
    on_optimizer_step,
    oversized_rank,
    target_patterns,
)
from bora.adapters.io import load_adapters, save_adapters
from bora.adapters.registry import METHOD_NAMES, METHODS

__all__ = [
    "adapter_dtype_used",
    "METHODS",
    "METHOD_NAMES",
    "AdapterLayer",
    "cast_adapters",
    "adapter_layers",
    "adapter_parameters",
    "count_adapter_params",
    "disabled_adapters",
    "export_peft_lora",
    "find_targets",
    "has_adapters",
    "inject",
    "inject_modules",
    "load_adapters",
    "merge_adapters",
    "on_optimizer_step",
    "oversized_rank",
    "save_adapters",
    "target_patterns",
]
