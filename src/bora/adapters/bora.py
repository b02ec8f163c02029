"""BoRA (paper eq. 4-8): block-diversified LoRA.

``A`` (``r x n``) is split into ``b`` column blocks ``A_k`` and ``B`` (``m x r``) into ``b`` row blocks ``B_j``; block
``(j, k)`` of the update is ``s * B_j Sigma_jk A_k`` with ``Sigma_jk = diag(exp(sigma[j, k] / Mav(sigma)))``. The rank
of ``dW`` rises from ``r`` to ``min(m, n, b r)`` for ``b^2 r`` extra parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, kaiming_uniform_
from bora.errors import BoraError

_MAV_FLOOR = 1e-12  # Mav(sigma) = 0 only if sigma is all zeros; then sigma / Mav is 0 and Sigma = I (plain LoRA)


class BoraLayer(AdapterLayer):
    def __init__(self, base_layer: nn.Linear, method_cfg, name: str = ""):
        super().__init__(base_layer, method_cfg, name)
        b = method_cfg.blocks
        if b is None or b <= 0:
            raise BoraError(f"method.blocks={b} must be a positive integer for BoRA (e.g. method.blocks=16)")
        if self.in_features % b or self.out_features % b:
            raise BoraError(
                f"method.blocks={b} does not divide layer {name or '?'} ({self.out_features} out x "
                f"{self.in_features} in features); pick a common divisor of both"
            )
        self.blocks = int(b)
        self.use_exp = bool(method_cfg.use_exp)
        self.use_norm = bool(method_cfg.use_norm)
        self.A = nn.Parameter(torch.empty(self.r, self.in_features))
        self.B = nn.Parameter(torch.zeros(self.out_features, self.r))
        self.sigma = nn.Parameter(torch.empty(self.blocks, self.blocks, self.r))
        kaiming_uniform_(self.A)
        kaiming_uniform_(self.sigma)  # paper sec. 3.2: "the same Kaiming initialization applied to the matrix A"

    def block_scales(self) -> torch.Tensor:
        """The diagonals of all ``Sigma_jk`` as a ``(b, b, r)`` tensor (paper eq. 5; Table 7 switches)."""
        sigma = self.sigma
        if self.use_norm:
            sigma = sigma / sigma.abs().mean().clamp_min(_MAV_FLOOR)
        return sigma.exp() if self.use_exp else sigma

    def update(self, x: torch.Tensor) -> torch.Tensor:
        b, r = self.blocks, self.r
        segments = x.reshape(*x.shape[:-1], b, self.in_features // b)  # x_k
        a_blocks = self.A.view(r, b, -1)  # A_k = a_blocks[:, k, :]
        per_block = torch.einsum("...kc,rkc->...kr", segments, a_blocks)  # A_k x_k
        mixed = torch.einsum("...kr,jkr->...jr", per_block, self.block_scales())  # sum_k Sigma_jk A_k x_k
        b_blocks = self.B.view(b, self.out_features // b, r)  # B_j
        out = torch.einsum("...jr,jor->...jo", mixed, b_blocks)  # y_j = B_j (...)
        return out.reshape(*x.shape[:-1], self.out_features) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        b, r = self.blocks, self.r
        a_blocks = self.A.float().view(r, b, -1)
        b_blocks = self.B.float().view(b, self.out_features // b, r)
        blocks = torch.einsum("jor,jkr,rkc->jokc", b_blocks, self.block_scales().float(), a_blocks)
        return blocks.reshape(self.out_features, self.in_features) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blocks={self.blocks}, use_exp={self.use_exp}, use_norm={self.use_norm}"
