"""The shape every adapter method shares: wrap a frozen ``nn.Linear``, add an update, merge / unmerge it.

A method is one subclass of ``AdapterLayer`` (its parameters, ``update(x)`` and ``delta_weight()``) plus a registry
entry in ``bora.adapters.registry``. Shapes follow the paper: the base weight ``W`` is ``m x n`` (``m`` =
out_features, ``n`` = in_features).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bora.errors import BoraError


class AdapterLayer(nn.Module):
    """A frozen ``base_layer`` plus a trainable update: ``forward(x) = base_layer(x) + update(dropout(x))``."""

    mergeable = True  # False for input-dependent updates (HydraLoRA) that no single dW can represent

    def __init__(self, base_layer: nn.Linear, method_cfg, name: str = ""):
        super().__init__()
        if method_cfg.r <= 0:
            raise BoraError(f"method.r={method_cfg.r} must be a positive integer (the adapter rank)")
        self.base_layer = base_layer
        self.name = name  # qualified module name, for error messages
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.r = int(method_cfg.r)
        self.scaling = float(method_cfg.alpha) / self.r
        self.dropout = nn.Dropout(method_cfg.dropout) if method_cfg.dropout > 0 else nn.Identity()
        self.disabled = False
        self._weight_before_merge: torch.Tensor | None = None

    # --- what a method defines -------------------------------------------------------------------------------
    def update(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's contribution to the output for (dropped-out) input ``x``, without forming ``dW``."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The dense ``m x n`` update ``dW`` (float32), for analysis and merging."""
        raise NotImplementedError

    # --- shared behaviour ----------------------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        return self._weight_before_merge is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.disabled or self.merged:
            return result
        # Adapters keep float32 parameters while the base may run in bf16: compute in the adapter's dtype.
        adapter_dtype = self.adapter_dtype()
        return result + self.update(self.dropout(x).to(adapter_dtype)).to(result.dtype)

    def adapter_dtype(self) -> torch.dtype:
        # _parameters holds this layer's own parameters only (not base_layer's); cheap enough for every forward.
        own = next(iter(self._parameters.values()), None)
        return own.dtype if own is not None else self.base_layer.weight.dtype

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``dW`` into the base weight. The original weight is kept so ``unmerge`` restores it exactly."""
        if not self.mergeable:
            raise BoraError(
                f"{type(self).__name__} at {self.name or 'this layer'} is input-dependent and cannot be merged into "
                "a weight; keep the adapter unmerged"
            )
        if self.merged:
            return
        weight = self.base_layer.weight
        self._weight_before_merge = weight.detach().clone()
        weight.data = (weight.float() + self.delta_weight().to(weight.device)).to(weight.dtype)

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base_layer.weight.data = self._weight_before_merge
        self._weight_before_merge = None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, scaling={self.scaling}"


def kaiming_uniform_(tensor: torch.Tensor) -> torch.Tensor:
    """LoRA's initialisation of ``A`` (``nn.Linear``'s default, ``a = sqrt(5)``); BoRA reuses it for ``sigma``."""
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
