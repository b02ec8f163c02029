"""The shape every adapter method shares: wrap a frozen ``nn.Linear``, add an update, merge / unmerge it.

A method is one subclass of ``AdapterLayer`` (its parameters, ``update(x)`` and ``delta_weight()``) plus a registry
entry in ``bora.adapters.registry``. A layer takes the settings it uses as keyword-only arguments named like the
method config's fields (``r``, ``alpha``, ``dropout``, ``blocks``, ...), as PEFT's ``update_layer(r, lora_alpha, ...)``
does, and checks them itself; ``registry.layer_arguments`` is the one place that reads them from a config.

Shapes follow the paper: the base weight ``W`` is ``m x n`` (``m`` = out_features, ``n`` = in_features). Adapter
parameters live in float32 on the base weight's device (also on the meta device, so parameters of a 14B model can be
counted without weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from omegaconf import OmegaConf
from torch import nn

from bora.adapters.blocks import compute_dtype
from bora.errors import BoraError


def is_4bit(weight: torch.Tensor) -> bool:
    """Whether a weight is a packed 4-bit bitsandbytes parameter (its values need ``dense_weight``)."""
    return getattr(weight, "quant_state", None) is not None


def dense_weight(weight: torch.Tensor) -> torch.Tensor:
    """A weight as an ordinary float tensor: dequantised when it is a 4-bit bitsandbytes parameter."""
    if not is_4bit(weight):
        return weight
    import bitsandbytes.functional as bnb_functional

    return bnb_functional.dequantize_4bit(weight.data, weight.quant_state)


class AdapterLayer(nn.Module):
    """A frozen ``base_layer`` plus a trainable update: ``forward(x) = base_layer(x) + update(dropout(x))``."""

    mergeable = True  # False for input-dependent updates (HydraLoRA) that no single dW can represent
    # True for block methods (BoRA, MELoRA) whose frozen update is exactly a LoRA of rank b r (paper eq. 6): in
    # evaluation they run as that LoRA, two matmuls per call instead of the block mix's many small ops per step.
    eval_as_lora = False

    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float, dropout: float, name: str = ""):
        super().__init__()
        check_rank(r)
        if not 0 <= dropout < 1:
            raise BoraError(f"method.dropout={dropout} must be in [0, 1)")
        self.base_layer = base_layer
        self.name = name  # qualified module name, for error messages
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.r = int(r)
        self.scaling = float(alpha) / self.r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.disabled = False
        self._weight_before_merge: torch.Tensor | None = None
        # in evaluation: (key, A', s B'), or (key, None, s B' A') when the dense update is cheaper
        self._lora_form: tuple[tuple, torch.Tensor | None, torch.Tensor] | None = None

    # --- what a method defines -------------------------------------------------------------------------------
    def update(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's contribution to the output for (dropped-out) input ``x``, without forming ``dW``."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The dense ``m x n`` update ``dW`` (float32), for analysis and merging."""
        raise NotImplementedError

    def add_update(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``result + update(x)``. Methods override it to fold the addition into their last product, which saves
        one output-sized temporary per call (that is most of the adapter's memory traffic)."""
        return result + self.update(x).to(result.dtype)

    # --- shared behaviour ----------------------------------------------------------------------------------
    def new_param(self, *shape: int) -> nn.Parameter:
        """An uninitialised float32 adapter parameter on the base weight's device."""
        return nn.Parameter(torch.empty(*shape, device=self.base_layer.weight.device, dtype=torch.float32))

    def base_weight(self) -> torch.Tensor:
        """The frozen base weight ``W`` as a float32 matrix (dequantised from a 4-bit base)."""
        return dense_weight(self.base_layer.weight).float()

    @property
    def merged(self) -> bool:
        return self._weight_before_merge is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.disabled or self.merged:
            return result
        if self.eval_as_lora and not self.training and not torch.is_grad_enabled():
            return self.add_lora_form(result, x)  # frozen: no dropout, no graph
        return self.add_update(result, self.dropout(self.to_adapter_dtype(x)))

    def add_lora_form(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``result + x A'^T (s B')^T`` with the factors of ``lora_factors()`` (or their product, where the rank
        makes that cheaper), built once and reused until a parameter changes (an optimizer step or a load bumps its
        version) or the layer goes back to training."""
        x = self.to_adapter_dtype(x)
        dtype = compute_dtype(x, next(iter(self._parameters.values())))  # the training form's (autocast's or fp32)
        key = (dtype, x.device, *((p._version, p.data_ptr()) for p in self._parameters.values()))
        if self._lora_form is None or self._lora_form[0] != key:
            lora_A, lora_B = self.lora_factors()
            lora_B = lora_B * self.scaling
            if lora_A.shape[0] * (self.in_features + self.out_features) >= self.in_features * self.out_features:
                # a rank b r near the layer's width costs more as two factors than as the dense s B' A' (m x n)
                self._lora_form = (key, None, (lora_B @ lora_A).to(x.device, dtype))
            else:
                self._lora_form = (key, lora_A.to(x.device, dtype), lora_B.to(x.device, dtype))
        _, lora_A, lora_B = self._lora_form
        hidden = flat(x.to(dtype))
        return add_product(result, hidden if lora_A is None else hidden @ lora_A.T, lora_B)

    def train(self, mode: bool = True) -> AdapterLayer:
        if mode:
            self._lora_form = None  # trained weights change at every step: the cache is for evaluation only
        return super().train(mode)

    def to_adapter_dtype(self, x: torch.Tensor) -> torch.Tensor:
        # The base may run in bf16 while adapters keep float32 parameters: compute the update in float32
        # (under autocast the matmuls still run in bf16). _parameters holds this layer's own parameters only.
        own = next(iter(self._parameters.values()), None)
        return x if own is None or own.dtype == x.dtype else x.to(own.dtype)

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
        if is_4bit(weight):
            raise BoraError(
                f"{self.name or 'this layer'}: the base weight is 4-bit (model.quantization); merging "
                "would re-quantise dW away. Keep the adapter unmerged, or load the base unquantised "
                "(model.quantization=null) and merge there"
            )
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


def check_rank(r) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise BoraError(f"method.r={r!r} must be a positive integer (the adapter rank)")


def block_size(layer: AdapterLayer, blocks, key: str = "method.blocks") -> tuple[int, int]:
    """``(n / b, m / b)`` for ``b = blocks`` equal blocks of the layer's input and output; a clear error otherwise."""
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks <= 0:
        raise BoraError(f"{key}={blocks!r} must be a positive integer (e.g. {key}=16)")
    if layer.in_features % blocks or layer.out_features % blocks:
        raise BoraError(
            f"{key}={blocks} does not divide layer {layer.name or '?'} ({layer.out_features} out x "
            f"{layer.in_features} in features); pick a common divisor of both"
        )
    return layer.in_features // blocks, layer.out_features // blocks


def kaiming_uniform_(tensor: torch.Tensor) -> torch.Tensor:
    """LoRA's initialisation of ``A`` (``nn.Linear``'s default, ``a = sqrt(5)``); BoRA reuses it for ``sigma``."""
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


def flat(x: torch.Tensor) -> torch.Tensor:
    """``(..., features)`` -> ``(tokens, features)`` (a view for contiguous input)."""
    return x.reshape(-1, x.shape[-1])


def add_product(result: torch.Tensor, hidden: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``result + hidden @ B.T`` for ``hidden`` ``(T, r)``: one ``addmm`` (no output-sized temporary) when dtypes
    agree."""
    if hidden.dtype != result.dtype:  # bf16 base without autocast: compute in float32, add in the base dtype
        return result + (hidden @ B.T).to(result.dtype).view_as(result)
    return torch.addmm(flat(result), hidden, B.T).view_as(result)


def plain_dict(value) -> dict:
    """A config node (OmegaConf, dataclass, mapping or namespace) as a plain, JSON-ready dict."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, Mapping) else dict(vars(value))
