"""LoRA (Hu et al., 2021): ``dW = (alpha / r) B A``, ``A`` kaiming-uniform, ``B`` zero."""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, add_product, flat, kaiming_uniform_


class LoraLayer(AdapterLayer):
    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float, dropout: float, name: str = ""):
        super().__init__(base_layer, r=r, alpha=alpha, dropout=dropout, name=name)
        self.A = kaiming_uniform_(self.new_param(self.r, self.in_features))
        self.B = nn.init.zeros_(self.new_param(self.out_features, self.r))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        # Scale the r-wide hidden rather than the m-wide output: one output-sized temporary less than (B A x) * s.
        return ((x @ self.A.T) * self.scaling) @ self.B.T

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return add_product(result, (flat(x) @ self.A.T) * self.scaling, self.B)

    def delta_weight(self) -> torch.Tensor:
        return (self.B.float() @ self.A.float()) * self.scaling

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` with ``dW = scaling * B A`` (what ``export_peft_lora`` writes)."""
        return self.A.float(), self.B.float()
