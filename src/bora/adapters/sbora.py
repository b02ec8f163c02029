"""SBoRA (Po et al., 2024): LoRA with one factor fixed to ``r`` standard-basis vectors.

- ``sbora-fa``: ``A`` = rows ``e_i`` for ``r`` input indices; only ``B`` (``m x r``, zero-init) is trained, so only
  those ``r`` columns of ``W`` change. ``A x`` is a gather of ``r`` input features: no matmul.
- ``sbora-fb``: ``B`` = columns ``e_i`` for ``r`` output indices; only ``A`` (``r x n``, zero-init) is trained, so only
  those ``r`` rows of ``W`` change.

Indices are drawn without replacement from a seeded generator (``method.index_seed`` and the layer name; null draws
from torch's global RNG, which the trainer seeds) and saved with the adapter as the buffer ``indices``.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from bora.adapters.base import AdapterLayer, add_product, flat
from bora.errors import BoraError


def draw_indices(count: int, population: int, seed: int | None, name: str) -> torch.Tensor:
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode()))
    return torch.randperm(population, generator=generator)[:count].sort().values


class _StandardBasisLayer(AdapterLayer):
    fixed_side = ""  # "A" (FA) or "B" (FB)

    def __init__(
        self,
        base_layer: nn.Linear,
        *,
        r: int,
        alpha: float,
        dropout: float,
        index_seed: int | None = None,
        name: str = "",
    ):
        super().__init__(base_layer, r=r, alpha=alpha, dropout=dropout, name=name)
        population = self.in_features if self.fixed_side == "A" else self.out_features
        if self.r > population:
            raise BoraError(
                f"method.r={self.r} exceeds the {population} {'inputs' if self.fixed_side == 'A' else 'outputs'} "
                f"of layer {name or '?'}; SBoRA picks r distinct standard-basis vectors"
            )
        indices = draw_indices(self.r, population, index_seed, name)
        self.register_buffer("indices", indices.to(self.base_layer.weight.device))
        # The other factor is the trained one, zero-initialised so the update starts at zero.
        if self.fixed_side == "A":
            self.B = nn.init.zeros_(self.new_param(self.out_features, self.r))
        else:
            self.A = nn.init.zeros_(self.new_param(self.r, self.in_features))

    def basis(self) -> torch.Tensor:
        """The fixed factor as a dense 0/1 matrix: ``A`` (``r x n``) for FA, ``B`` (``m x r``) for FB."""
        size = self.in_features if self.fixed_side == "A" else self.out_features
        eye = torch.zeros(self.r, size, device=self.indices.device)
        eye[torch.arange(self.r, device=eye.device), self.indices] = 1.0
        return eye if self.fixed_side == "A" else eye.T

    def delta_weight(self) -> torch.Tensor:
        lora_A, lora_B = self.lora_factors()
        return (lora_B @ lora_A) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fixed={self.fixed_side}"


class SboraFALayer(_StandardBasisLayer):
    fixed_side = "A"

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return (x.index_select(-1, self.indices) * self.scaling) @ self.B.T

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return add_product(result, flat(x).index_select(-1, self.indices) * self.scaling, self.B)

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.basis(), self.B.float()


class SboraFBLayer(_StandardBasisLayer):
    fixed_side = "B"

    def update(self, x: torch.Tensor) -> torch.Tensor:
        hidden = (x @ self.A.T) * self.scaling
        return hidden.new_zeros(*x.shape[:-1], self.out_features).index_copy(-1, self.indices, hidden)

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hidden = (x @ self.A.T) * self.scaling
        return result.index_add(-1, self.indices, hidden.to(result.dtype))  # only r output features change

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.A.float(), self.basis()
