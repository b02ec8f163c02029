"""Several adapter sets on one base model, swapped in and out (for ``bora bench --table4`` and ``--eval``).

A full LLaMA-3-8B per method does not fit one GPU several times over, so the benches keep one base model and give
every method its own set of adapter layers around that model's (shared, frozen) ``nn.Linear`` modules. ``inject``
builds a set on a *host*: a bare module tree that holds the model's linear layers under their qualified names, so the
model itself is never touched by ``inject`` (and PEFT's tuner lives on the host). ``AdapterSet.install`` puts the
set's modules into the model; ``remove`` puts the original linears back. Only one set is installed at a time, and
sets are built while none is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import nn

from bora.adapters import inject, merge_adapters


def _host(modules: Mapping[str, nn.Module]) -> nn.Module:
    """A module tree holding ``modules`` under their qualified names (``model.layers.0.self_attn.q_proj``)."""
    root = nn.Module()
    for name, module in modules.items():
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if part not in parent._modules:
                parent.add_module(part, nn.Module())
            parent = parent._modules[part]
        parent.add_module(leaf, module)
    return root


class AdapterSet:
    """Modules to put into ``model`` at given names; ``host`` holds them (and their trainable parameters)."""

    def __init__(self, model: nn.Module, host: nn.Module, names: list[str]):
        self.model, self.host, self.names = model, host, list(names)
        self.modules = {name: host.get_submodule(name) for name in self.names}
        self.originals = {name: model.get_submodule(name) for name in self.names}

    def _put(self, modules: Mapping[str, nn.Module]) -> None:
        for name, module in modules.items():
            parent, _, child = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, child, module)

    def install(self) -> None:
        self._put(self.modules)

    def remove(self) -> None:
        self._put(self.originals)

    @classmethod
    def inject(cls, model: nn.Module, method_cfg, target_map, total_steps: int = 10_000) -> AdapterSet:
        """The adapters ``inject`` would put into ``model``, built around its linears but kept out of it. Freezes
        the linears' weights (as ``inject`` does); freeze the rest of the model yourself."""
        host = _host({name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        names = inject(host, method_cfg, target_map, total_steps=total_steps)
        return cls(model, host, names)

    def merged(self) -> AdapterSet:
        """This set's adapters merged into copies of their linears: plain ``nn.Linear`` modules (the model's own
        linears stay as they are; the copies cost the targeted weights once more)."""
        host = _host({name: copy.deepcopy(module) for name, module in self.modules.items()})
        merge_adapters(host)
        return AdapterSet(self.model, host, self.names)
