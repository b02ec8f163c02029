"""Adapter methods: one module per method (config, layer, delta weight, merge, forward) and a registry.

Public interface: ``inject``, ``merge_adapters``, ``disabled_adapters``, ``count_adapter_params``,
``adapter_layers``, ``adapter_parameters``.
"""

from bora.adapters.base import AdapterLayer
from bora.adapters.inject import (
    adapter_layers,
    adapter_parameters,
    count_adapter_params,
    disabled_adapters,
    find_targets,
    inject,
    merge_adapters,
    target_patterns,
)

__all__ = [
    "AdapterLayer",
    "adapter_layers",
    "adapter_parameters",
    "count_adapter_params",
    "disabled_adapters",
    "find_targets",
    "inject",
    "merge_adapters",
    "target_patterns",
]
