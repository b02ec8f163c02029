"""The block-wise update shared by BoRA and MELoRA, as one autograd function with LoRA's memory footprint.

``A`` (``r x n``) is read as ``b`` column blocks ``A_k`` (``r x n/b``), ``B`` (``m x r``) as ``b`` row blocks ``B_j``
(``m/b x r``), an input ``x`` (``T x n``) as ``b`` segments ``x_k``. BoRA's update (paper eq. 8) for all tokens is

    p_k = A_k x_k            one batched matmul over the blocks, reading x through a view
    h_j = sum_k S_jk * p_k   a b x b mix per rank index (b^2 r multiply-adds per token); MELoRA: h_j = s p_j
    y_j = B_j h_j            added to the base output block by block (or one batched matmul and one add)

``dW`` is never formed. Plain autograd would keep ``p`` and ``h`` (``2 b r`` numbers per token, 32 times LoRA's
``r`` at b = 16) and put ``y`` and ``dL/dx`` together from blocks through an extra full-size copy. This function saves
only ``x`` and the parameters (as LoRA does) and recomputes ``p`` and ``h`` in backward (a few percent of the
adapter's small cost). For wide blocks it writes each ``y_j`` and each ``dL/dx_k`` straight into its column slice
of the one output or gradient, so no full-size temporary exists at any time (LoRA's ``addmm`` has none either); for
narrow blocks (below ``PER_BLOCK_MIN_WIDTH``) one batched matmul plus one copy is faster than ``b`` tiny calls, and
the temporary is small. It computes in one explicit dtype (autocast's when autocast is on, as a matmul would) and
runs its backward in the same dtype.

On a GPU a small step is launch-bound, and the block form is many small ops: 74 non-view operators per 4096-wide layer
and step at b = 16 (one matmul per block, the mix, their backward; LoRA: 24), and a LLaMA-3-8B step took 2.2x LoRA's
on an H100 (bf16, batch 4 x 256). There ``_LoraFormUpdate`` runs the same update as the rank ``b r`` LoRA of eq. 6,

    h = x A'^T      A' (b r x n) block-diagonal: row block k holds A_k at column block k
    y = h (s B')^T  B' (m x b r): row block j, column block k is B_j diag(Sigma_jk)
                    (MELoRA: B_j where j = k, else 0)

in two dense matmuls (and four in backward), with ``A'`` and ``B'`` built by one broadcast multiply each and rebuilt in
backward rather than saved: 65 operators, and 1.75x LoRA's step on an H200 (where MELoRA, HydraLoRA and DoRA kept
their H100 ratios, 1.34-1.43x). It does ``b`` times the adapter's ``A`` flops, a fraction of a percent of a large
layer's; it saves ``x`` and ``h`` (``b r`` numbers per token, a few percent of a transformer layer's activations at
b r = 128). It is taken on the devices in ``LORA_FORM_DEVICES`` while ``b r (m + n) < m n`` (past that, the two
factors hold more numbers than ``dW`` itself).
"""

from __future__ import annotations

import torch

PER_BLOCK_MIN_WIDTH = 64  # block width from which one matmul per block beats a batched matmul plus a copy
LORA_FORM_DEVICES = {"cuda"}  # device types that train through the rank-b r LoRA form (launch-bound block form)


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


def _blocks(A: torch.Tensor, B: torch.Tensor, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``A_k`` as ``(b, r, n/b)`` and ``B_j`` as ``(b, m/b, r)`` (views)."""
    (r, n), (m, _) = A.shape, B.shape
    return A.view(r, blocks, n // blocks).transpose(0, 1), B.view(blocks, m // blocks, r)


def _hidden(x, a_blocks, mix, scaling):
    """``(p, h)``: ``p`` ``(b, r, T)`` and ``h`` ``(b, T, r)``, as defined in the module docstring (BoRA's ``mix``
    already holds the scale; MELoRA scales here). Every operand keeps a unit stride in one of its last two
    dimensions: otherwise CPU ``bmm`` copies it batch by batch."""
    blocks, width = a_blocks.shape[0], a_blocks.shape[2]
    p = torch.bmm(a_blocks, x.view(-1, blocks, width).permute(1, 2, 0))  # (k, r, T); x_k^T is a view
    if mix is None:
        return p, (p * scaling).transpose(1, 2)
    mixed = torch.bmm(mix, p.transpose(0, 1))  # (r, j, T): sum_k S_jk p_k per rank index; mix is (r, j, k)
    return p, mixed.permute(1, 2, 0)


class _BlockUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, result, x, A, B, mix, scaling: float, blocks: int, dtype: torch.dtype):
        with torch.autocast(x.device.type, enabled=False):
            x_c, A_c, B_c = x.to(dtype), A.to(dtype), B.to(dtype)
            mix_c = None if mix is None else (mix * scaling).to(dtype).permute(2, 0, 1).contiguous()  # (r, j, k)
            a_blocks, b_blocks = _blocks(A_c, B_c, blocks)
            _, hidden = _hidden(x_c, a_blocks, mix_c, scaling)
            width = B.shape[0] // blocks
            if width >= PER_BLOCK_MIN_WIDTH:
                out = torch.empty_like(result)
                for j in range(blocks):  # out_j = result_j + h_j B_j^T, written in place
                    cols = slice(j * width, (j + 1) * width)
                    torch.addmm(result[:, cols], hidden[j], b_blocks[j].T, out=out[:, cols])
            else:  # result first: the sum takes result's contiguous (T, m) layout
                out = result.view(-1, blocks, width) + torch.bmm(hidden, b_blocks.transpose(1, 2)).transpose(0, 1)
        ctx.save_for_backward(x_c, A_c, B_c, mix_c)
        ctx.scaling, ctx.blocks = scaling, blocks
        ctx.dtypes = (x.dtype, A.dtype, B.dtype, None if mix is None else mix.dtype)
        return out.view(result.shape)

    @staticmethod
    def backward(ctx, grad):
        x, A, B, mix = ctx.saved_tensors
        blocks, scaling = ctx.blocks, ctx.scaling
        x_dtype, A_dtype, B_dtype, mix_dtype = ctx.dtypes
        (r, n), (m, _) = A.shape, B.shape
        grad_x = grad_A = grad_B = grad_mix = None
        with torch.autocast(x.device.type, enabled=False):
            a_blocks, b_blocks = _blocks(A, B, blocks)
            p, hidden = _hidden(x, a_blocks, mix, scaling)  # recomputed instead of saved
            grad_out = grad.to(A.dtype).view(-1, blocks, m // blocks).transpose(0, 1)  # (j, T, m/b)
            if ctx.needs_input_grad[3]:
                grad_B = torch.bmm(hidden.transpose(1, 2), grad_out).transpose(1, 2).reshape(m, r).to(B_dtype)
            del hidden  # free small temporaries early: the input gradient below is the big allocation
            grad_hidden = torch.bmm(b_blocks.transpose(1, 2), grad_out.transpose(1, 2))  # (j, r, T)
            grad_p, grad_mix = _through_mix(grad_hidden, p, mix, scaling, ctx.needs_input_grad[4])
            del p, grad_hidden
            if ctx.needs_input_grad[2]:
                segments = x.view(-1, blocks, n // blocks).transpose(0, 1)  # (k, T, n/b)
                grad_A = torch.bmm(grad_p, segments).transpose(0, 1).reshape(r, n).to(A_dtype)
            if ctx.needs_input_grad[1]:
                grad_x = _input_grad(grad_p, a_blocks, x).to(x_dtype)
        grad_mix = None if grad_mix is None else grad_mix.to(mix_dtype)
        return grad, grad_x, grad_A, grad_B, grad_mix, None, None, None


def _through_mix(grad_hidden, p, mix, scaling, need_mix: bool):
    """``(dL/dp (k, r, T), dL/dSigma (j, k, r) or None)`` from ``dL/dh`` ``(j, r, T)``."""
    if mix is None:
        return grad_hidden * scaling, None
    per_rank = grad_hidden.transpose(0, 1)  # (r, j, T)
    grad_mix = None
    if need_mix:
        grad_mix = torch.bmm(per_rank, p.permute(1, 2, 0)).permute(1, 2, 0) * scaling  # sum_t dh_j p_k^T
    return torch.bmm(mix.transpose(1, 2), per_rank).transpose(0, 1), grad_mix  # sum_j S_jk dh_j


def _input_grad(grad_p, a_blocks, x):
    """``dL/dx_k = dL/dp_k^T A_k`` for every block, as one ``(T, n)`` tensor."""
    blocks, width = a_blocks.shape[0], a_blocks.shape[2]
    if width < PER_BLOCK_MIN_WIDTH:
        return torch.bmm(grad_p.transpose(1, 2), a_blocks).transpose(0, 1).reshape(x.shape)
    grad_x = x.new_empty(x.shape)
    for k in range(blocks):
        torch.mm(grad_p[k].T, a_blocks[k], out=grad_x[:, k * width : (k + 1) * width])
    return grad_x


def lora_form_factors(A: torch.Tensor, B: torch.Tensor, mix: torch.Tensor | None, scaling: float, blocks: int):
    """``(A', s B' Sigma')`` of paper eq. 6 from ``A`` (``r x n``), ``B`` (``m x r``) and the ``(b, b, r)`` mix
    (``None``: MELoRA's identity), one broadcast multiply each."""
    (r, n), (m, _) = A.shape, B.shape
    eye = torch.eye(blocks, dtype=A.dtype, device=A.device)
    lora_A = (eye.view(blocks, 1, blocks, 1) * A.view(1, r, blocks, n // blocks)).reshape(blocks * r, n)
    scales = eye.unsqueeze(-1) if mix is None else mix  # (j, k, r), or (j, k, 1) for MELoRA
    lora_B = B.view(blocks, m // blocks, 1, r) * (scales * scaling).unsqueeze(1)  # (j, m/b, k, r)
    return lora_A, lora_B.reshape(m, blocks * r)


class _LoraFormUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, result, x, A, B, mix, scaling: float, blocks: int, dtype: torch.dtype):
        with torch.autocast(x.device.type, enabled=False):
            x_c, A_c, B_c = x.to(dtype), A.to(dtype), B.to(dtype)
            mix_c = None if mix is None else mix.to(dtype)
            lora_A, lora_B = lora_form_factors(A_c, B_c, mix_c, scaling, blocks)
            hidden = x_c @ lora_A.T  # (T, b r)
            out = torch.addmm(result, hidden, lora_B.T)
        ctx.save_for_backward(x_c, hidden, A_c, B_c, mix_c)
        ctx.scaling, ctx.blocks = scaling, blocks
        ctx.dtypes = (x.dtype, A.dtype, B.dtype, None if mix is None else mix.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, hidden, A, B, mix = ctx.saved_tensors
        blocks, scaling = ctx.blocks, ctx.scaling
        x_dtype, A_dtype, B_dtype, mix_dtype = ctx.dtypes
        (r, n), (m, _) = A.shape, B.shape
        grad_x = grad_A = grad_B = grad_mix = None
        with torch.autocast(x.device.type, enabled=False):
            grad = grad.to(A.dtype)
            lora_A, lora_B = lora_form_factors(A, B, mix, scaling, blocks)
            grad_hidden = grad @ lora_B  # (T, b r)
            if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
                # dL/d(s B' Sigma') as (j, m/b, k, r); B' Sigma' is B_j Sigma_jk elementwise over r
                grad_lora_B = (grad.T @ hidden).view(blocks, m // blocks, blocks, r)
                scales = torch.eye(blocks, dtype=A.dtype, device=A.device).unsqueeze(-1) if mix is None else mix
                if ctx.needs_input_grad[3]:
                    grad_B = (grad_lora_B * scales.unsqueeze(1)).sum(2).reshape(m, r).mul_(scaling).to(B_dtype)
                if ctx.needs_input_grad[4]:
                    grad_mix = torch.einsum("jokr,jor->jkr", grad_lora_B, B.view(blocks, m // blocks, r))
                    grad_mix = (grad_mix * scaling).to(mix_dtype)
            if ctx.needs_input_grad[2]:  # only the diagonal blocks of dL/dA' reach A
                grad_lora_A = (grad_hidden.T @ x).view(blocks, r, blocks, n // blocks)
                grad_A = grad_lora_A.diagonal(dim1=0, dim2=2).permute(0, 2, 1).reshape(r, n).to(A_dtype)
            if ctx.needs_input_grad[1]:
                grad_x = (grad_hidden @ lora_A).to(x_dtype)
        return grad, grad_x, grad_A, grad_B, grad_mix, None, None, None


def takes_lora_form(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, blocks: int) -> bool:
    """Whether the update runs as the rank ``b r`` LoRA (``_LoraFormUpdate``) rather than block by block."""
    (r, n), (m, _) = A.shape, B.shape
    return x.device.type in LORA_FORM_DEVICES and blocks * r * (m + n) < m * n


def add_block_update(result: torch.Tensor, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                     mix: torch.Tensor | None, scaling: float, blocks: int) -> torch.Tensor:
    """``result + s concat_j B_j sum_k Sigma_jk A_k x_k`` (BoRA; ``mix`` = the ``(b, b, r)`` diagonals of Sigma),
    or with ``mix=None`` the block-diagonal ``result + s concat_j B_j A_j x_j`` (MELoRA)."""
    x = x.reshape(-1, x.shape[-1])
    x = x if x.is_contiguous() else x.contiguous()
    dtype = compute_dtype(x, A)
    flat = result.reshape(-1, result.shape[-1])
    update = _LoraFormUpdate if takes_lora_form(x, A, B, blocks) else _BlockUpdate
    if result.dtype != dtype:  # a bf16 base without autocast: compute in float32, add in the base dtype
        added = update.apply(flat.new_zeros(flat.shape, dtype=dtype), x, A, B, mix, scaling, blocks, dtype)
        return result + added.to(result.dtype).view(result.shape)
    return update.apply(flat, x, A, B, mix, scaling, blocks, dtype).view(result.shape)
