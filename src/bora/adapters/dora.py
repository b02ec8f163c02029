"""DoRA (Liu et al., 2024): a magnitude vector times the normalised direction ``W + s B A``.

``W' = mag / ||W + s B A||_row * (W + s B A)``, ``mag`` initialised to the row norms of ``W`` (so ``W' = W`` at
initialisation). The norm is detached from the graph (DoRA sec. 4.3), exactly as PEFT's ``use_dora=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.lora import LoraLayer


class DoraLayer(LoraLayer):
    # lora_factors() are its direction's (what PEFT's DoRA export stores beside the magnitude); dW itself is not
    # their product, so analysis (bora.adapters.stats) must take delta_weight()
    delta_is_lora_product = False

    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float, dropout: float, name: str = ""):
        super().__init__(base_layer, r=r, alpha=alpha, dropout=dropout, name=name)
        with torch.no_grad():
            self.magnitude = nn.Parameter(self.base_weight().norm(dim=1))
        self._frozen_norm: tuple[tuple, torch.Tensor] | None = None  # (parameter versions, norm) in evaluation

    @torch.no_grad()
    def weight_norm(self) -> torch.Tensor:
        """``||W + s B A||`` per output row, float32, outside the graph."""
        return (self.base_weight() + (self.B @ self.A) * self.scaling).norm(dim=1)

    def _rescale(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self.magnitude / self.weight_norm()
        # Frozen (evaluation): the norm of W + s B A changes only with the parameters; compute it once, not per call.
        key = tuple((p._version, p.data_ptr()) for p in self._parameters.values())
        if self._frozen_norm is None or self._frozen_norm[0] != key:
            self._frozen_norm = (key, self.weight_norm())
        return self.magnitude / self._frozen_norm[1]

    def train(self, mode: bool = True) -> DoraLayer:
        if mode:
            self._frozen_norm = None
        return super().train(mode)

    def _dora_output(self, base_out: torch.Tensor, x: torch.Tensor, rescale: torch.Tensor) -> torch.Tensor:
        """``(rescale - 1) W x + rescale s B A x``: what DoRA adds to the base output for input ``x``."""
        return (rescale - 1) * base_out + rescale * super().update(x)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        base_out = nn.functional.linear(x, self.base_weight().to(x.dtype))
        return self._dora_output(base_out, x, self._rescale())

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.training and not isinstance(self.dropout, nn.Identity):
            return result + self.update(x).to(result.dtype)  # W x must be recomputed for the dropped-out input
        # Without dropout W x is already in result: reuse it (as PEFT does) instead of a second full matmul.
        bias = self.base_layer.bias
        base_out = result if bias is None else result - bias
        return result + self._dora_output(base_out, x, self._rescale()).to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        weight = self.base_weight()
        rescale = self._rescale().unsqueeze(1)
        return rescale * (weight + super().delta_weight()) - weight

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dora=True"
