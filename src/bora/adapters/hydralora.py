"""HydraLoRA (Tian et al., 2024): one shared ``A``, ``N`` heads ``B_i``, and a per-token router.

``update(x) = s * sum_i w_i(x) B_i A x`` with ``w(x) = softmax(R x)`` in float32 (``R``: bias-free ``N x n`` router,
kaiming like ``nn.Linear``; it sees the input before dropout, as in the authors' code). The update depends on the
input, so no single ``dW`` represents it: the layer refuses to merge.
"""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, flat, kaiming_uniform_
from bora.errors import BoraError


class HydraLoraLayer(AdapterLayer):
    mergeable = False

    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float, dropout: float, heads: int, name: str = ""):
        super().__init__(base_layer, r=r, alpha=alpha, dropout=dropout, name=name)
        if not isinstance(heads, int) or isinstance(heads, bool) or heads <= 0:
            raise BoraError(f"method.heads={heads!r} must be a positive integer for HydraLoRA (e.g. method.heads=3)")
        self.heads = heads
        self.A = kaiming_uniform_(self.new_param(self.r, self.in_features))
        self.B = nn.init.zeros_(self.new_param(heads, self.out_features, self.r))
        self.router = kaiming_uniform_(self.new_param(heads, self.in_features))

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token head weights ``(T, N)``, softmax in float32."""
        return torch.softmax(flat(x) @ self.router.T.to(x.dtype), dim=-1, dtype=torch.float32)

    def update(self, x: torch.Tensor, route: torch.Tensor | None = None) -> torch.Tensor:
        """The update for (dropped-out) ``x``; ``route`` defaults to the router's weights for ``x`` itself."""
        weights = self.route(x) if route is None else route
        hidden = flat(x) @ self.A.T  # (T, r), shared by all heads
        per_head = (weights.to(hidden.dtype).unsqueeze(-1) * hidden.unsqueeze(1)) * self.scaling  # (T, N, r)
        heads_side_by_side = self.B.permute(1, 0, 2).reshape(self.out_features, -1)  # [B_1 ... B_N], (m, N r)
        return (per_head.flatten(1) @ heads_side_by_side.T).view(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.disabled:
            return result
        x = self.to_adapter_dtype(x)
        return result + self.update(self.dropout(x), route=self.route(x)).to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        raise BoraError(f"HydraLoRA at {self.name or 'this layer'} is input-dependent: it has no single delta weight")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, heads={self.heads}"
