"""BoRA (paper eq. 4-8): block-diversified LoRA.

``A`` (``r x n``) is split into ``b`` column blocks ``A_k`` and ``B`` (``m x r``) into ``b`` row blocks ``B_j``; block
``(j, k)`` of the update is ``s * B_j Sigma_jk A_k`` with ``Sigma_jk = diag(exp(sigma[j, k] / Mav(sigma)))``. The rank
of ``dW`` rises from ``r`` to ``min(m, n, b r)`` for ``b^2 r`` extra parameters.

Forward (eq. 8), never forming ``dW``: ``p_k = A_k x_k`` (one batched matmul over blocks), ``h_j = sum_k Sigma_jk p_k``
(a ``b x b`` mix per rank index, ``b^2 r`` multiply-adds per token), ``y_j = B_j h_j`` (one batched matmul); see
``bora.adapters.blocks`` for the autograd function that keeps its memory at LoRA's.
"""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, block_size, kaiming_uniform_
from bora.adapters.blocks import add_block_update, sigma_scales


class BoraLayer(AdapterLayer):
    eval_as_lora = True  # frozen, it is exactly a LoRA of rank b r (``lora_factors``)

    def __init__(
        self,
        base_layer: nn.Linear,
        *,
        r: int,
        alpha: float,
        dropout: float,
        blocks: int,
        use_exp: bool = True,
        use_norm: bool = True,
        name: str = "",
    ):
        super().__init__(base_layer, r=r, alpha=alpha, dropout=dropout, name=name)
        block_size(self, blocks)
        self.blocks = int(blocks)
        self.use_exp = bool(use_exp)  # Table 7 "w/o Exp": Sigma = sigma / Mav(sigma)
        self.use_norm = bool(use_norm)  # Table 7 "w/o Norm": Sigma = exp(sigma)
        self.A = kaiming_uniform_(self.new_param(self.r, self.in_features))
        self.B = nn.init.zeros_(self.new_param(self.out_features, self.r))
        # Paper sec. 3.2: "the same Kaiming initialization applied to the matrix A".
        self.sigma = kaiming_uniform_(self.new_param(self.blocks, self.blocks, self.r))

    def block_scales(self) -> torch.Tensor:
        """The diagonals of all ``Sigma_jk`` as a ``(b, b, r)`` tensor (paper eq. 5, with the Table 7 switches)."""
        return sigma_scales(self.sigma, self.use_exp, self.use_norm)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_update(x.new_zeros(*x.shape[:-1], self.out_features), x)

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return add_block_update(
            result,
            x,
            self.A,
            self.B,
            self.sigma,
            self.scaling,
            self.blocks,
            use_exp=self.use_exp,
            use_norm=self.use_norm,
        )

    def delta_weight(self) -> torch.Tensor:
        b, r = self.blocks, self.r
        a_blocks = self.A.float().view(r, b, -1)
        b_blocks = self.B.float().view(b, -1, r)
        blocks = torch.einsum("jor,jkr,rkc->jokc", b_blocks, self.block_scales().float(), a_blocks)
        return blocks.reshape(self.out_features, self.in_features) * self.scaling

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A', B' Sigma')`` of paper eq. 6: the same update as a LoRA of rank ``b r`` (``dW = s B' Sigma' A'``)."""
        b, r = self.blocks, self.r
        a_blocks = self.A.float().view(r, b, -1).unbind(1)
        lora_A = torch.block_diag(*a_blocks)  # (b r, n): block k holds A_k
        b_blocks = self.B.float().view(b, -1, r)  # B_j
        # Row block j, column block k of B' Sigma' is B_j diag(Sigma_jk).
        lora_B = torch.einsum("jor,jkr->jokr", b_blocks, self.block_scales().float()).reshape(self.out_features, -1)
        return lora_A, lora_B

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blocks={self.blocks}, use_exp={self.use_exp}, use_norm={self.use_norm}"
