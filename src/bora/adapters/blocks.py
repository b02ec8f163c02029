"""Block-wise products shared by BoRA and MELoRA, laid out for fast batched matmuls and no copies of the input.

``A`` (``r x n``) is read as ``b`` column blocks ``A_k`` (``r x n/b``) and ``B`` (``m x r``) as ``b`` row blocks
``B_j`` (``m/b x r``); the input ``x`` (``T x n``) as ``b`` segments ``x_k``. The layouts below are the ones CPU
``bmm`` handles without a per-batch copy (measured with ``python -m bora.bench``), and the input enters only as a view,
so autograd saves no copy of it.
"""

from __future__ import annotations

import torch


def block_inputs(x: torch.Tensor, A: torch.Tensor, blocks: int) -> torch.Tensor:
    """``A_k x_k`` for every block ``k``: ``(T, n) -> (b, r, T)``."""
    r, n = A.shape
    a_blocks = A.view(r, blocks, n // blocks).transpose(0, 1)  # (b, r, n/b)
    segments = x.reshape(-1, blocks, n // blocks).permute(1, 2, 0)  # (b, n/b, T), a view of x
    return torch.bmm(a_blocks, segments)


def block_outputs(hidden: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``B_j h_j`` for every block ``j``: ``hidden`` ``(b, T, r)`` -> ``(b, T, m/b)`` (output block ``j`` of each token)."""
    blocks = hidden.shape[0]
    m, r = B.shape
    return torch.bmm(hidden, B.view(blocks, m // blocks, r).transpose(1, 2))


def concat_blocks(out_blocks: torch.Tensor, leading_shape: torch.Size) -> torch.Tensor:
    """``(b, T, m/b) -> (..., m)``: concatenate the output blocks of every token."""
    return out_blocks.transpose(0, 1).reshape(*leading_shape, -1)


def add_blocks(result: torch.Tensor, out_blocks: torch.Tensor) -> torch.Tensor:
    """``result + concat_blocks(out_blocks)`` in one pass (the strided add writes ``result``'s contiguous layout)."""
    blocks = out_blocks.shape[0]
    out_blocks = out_blocks.to(result.dtype)
    return (result.reshape(-1, blocks, result.shape[-1] // blocks) + out_blocks.transpose(0, 1)).view(result.shape)
