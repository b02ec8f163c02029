"""MELoRA (Ren et al., 2024): ``N`` mini LoRAs of rank ``r`` on a block diagonal (``N = method.blocks``).

Mini LoRA ``i`` maps input slice ``i`` (``n / N`` features) to output slice ``i`` (``m / N``), so ``dW`` is block
diagonal with rank up to ``N r`` for ``r (m + n)`` parameters. It is BoRA with ``Sigma_jj = I`` and ``Sigma_jk = 0``;
``A`` (``r x n``) and ``B`` (``m x r``) hold the mini LoRAs side by side in BoRA's block layout.
"""

from __future__ import annotations

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, block_size, kaiming_uniform_
from bora.adapters.blocks import add_block_update


class MeloraLayer(AdapterLayer):
    eval_as_lora = True  # frozen, it is exactly a LoRA of rank b r (``lora_factors``)

    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float, dropout: float, blocks: int, name: str = ""):
        super().__init__(base_layer, r=r, alpha=alpha, dropout=dropout, name=name)
        block_size(self, blocks)
        self.blocks = int(blocks)
        self.A = self.new_param(self.r, self.in_features)
        for mini_A in self.A.data.view(self.r, self.blocks, -1).unbind(1):
            kaiming_uniform_(mini_A)  # each mini LoRA initialised as a LoRA of its own (fan-in n / N)
        self.B = nn.init.zeros_(self.new_param(self.out_features, self.r))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_update(x.new_zeros(*x.shape[:-1], self.out_features), x)

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return add_block_update(result, x, self.A, self.B, None, self.scaling, self.blocks)

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same update as one LoRA of rank ``N r``: block-diagonal ``A`` and ``B``."""
        r, N = self.r, self.blocks
        lora_A = torch.block_diag(*self.A.float().view(r, N, -1).unbind(1))
        lora_B = torch.block_diag(*self.B.float().view(N, -1, r).unbind(0))
        return lora_A, lora_B

    def delta_weight(self) -> torch.Tensor:
        lora_A, lora_B = self.lora_factors()
        return (lora_B @ lora_A) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blocks={self.blocks}"
