"""LoRA (Hu et al., 2021): ``dW = (alpha / r) B A``, ``A`` kaiming-uniform, ``B`` zero."""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, kaiming_uniform_


class LoraLayer(AdapterLayer):
    def __init__(self, base_layer: nn.Linear, method_cfg, name: str = ""):
        super().__init__(base_layer, method_cfg, name)
        self.A = nn.Parameter(torch.empty(self.r, self.in_features))
        self.B = nn.Parameter(torch.zeros(self.out_features, self.r))
        kaiming_uniform_(self.A)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.A.T @ self.B.T) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.B.float() @ self.A.float()) * self.scaling
