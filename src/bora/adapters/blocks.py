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

On a GPU a small step is launch-bound, and the block form is many small ops: 90 non-view operators per 4096-wide layer
at b = 16, forward and backward (one matmul per block, the mix, Sigma's chain of small ops, their backward; LoRA: 24),
and a LLaMA-3-8B step took 2.2x LoRA's on an H100 (bf16, batch 4 x 256). (Operator counts here: one layer, forward and
backward, views excluded, bf16 autocast unless said; counted on a CPU for the same code path by
``bench.timing.layer_ops_per_step``, as ``bora bench --table4 --lora-form`` prints them.) There ``_LoraFormUpdate``
runs the same update as the rank ``b r`` LoRA of eq. 6,

    h = x A'^T       A' (b r x n) block-diagonal: row block k holds A_k at column block k
    y = s h B'^T     B' (m x b r): row block j, column block k is B_j diag(Sigma_jk)
                     (MELoRA: B_j where j = k, else 0)

in two dense matmuls, the second adding into the base output. Backward takes two more (``dL/dh``, ``dL/dB'``) and one
batched matmul each for ``dL/dA`` and ``dL/dx``: ``A'`` is block-diagonal, so block by block they need neither ``A'``
nor ``b``-fold flops. The function computes ``Sigma`` from ``sigma`` itself (5 operators) and writes out its gradient
(6), where autograd ran ``sigma_scales``' chain (7) and its backward (13); ``s`` rides in the matmuls' ``alpha``;
``B'`` is built in the parameters' dtype, cast once and saved (``b r m`` numbers per layer, ``b`` times ``B``;
rebuilding it in backward would cost 2 operators more under autocast); ``A'`` comes from a cached identity. That
makes 36 operators (LoRA 24, MELoRA 25; float32 without autocast: 31, LoRA 16, MELoRA 20). The previous version,
which built both factors by broadcast multiplies, rebuilt them in backward and took ``Sigma`` from autograd,
dispatched 65 (MELoRA 36; float32: 56 and 29), and BoRA's step was 1.75x LoRA's on an H200 (where MELoRA, HydraLoRA
and DoRA kept their H100 ratios, 1.34-1.43x). The forward does ``b`` times the adapter's ``A`` flops, a fraction of a
percent of a large layer's; the function saves ``x``, ``h`` (``b r`` numbers per token, a few percent of a transformer
layer's activations at b r = 128) and ``B'``. It is taken on the devices in ``LORA_FORM_DEVICES`` while
``b r (m + n) < m n`` (past that, the two factors hold more numbers than ``dW`` itself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PER_BLOCK_MIN_WIDTH = 64  # block width from which one matmul per block beats a batched matmul plus a copy
LORA_FORM_DEVICES = {"cuda"}  # device types that train through the rank-b r LoRA form (launch-bound block form)


@contextlib.contextmanager
def lora_form_on(device_type: str) -> Iterator[None]:
    """Train through the LoRA form on ``device_type`` too while the block runs (``bora bench --lora-form``: a GPU's
    code path, run and counted on a CPU)."""
    global LORA_FORM_DEVICES
    saved = LORA_FORM_DEVICES
    LORA_FORM_DEVICES = saved | {device_type}
    try:
        yield
    finally:
        LORA_FORM_DEVICES = saved


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype if x.dtype == weight.dtype else torch.promote_types(x.dtype, weight.dtype)


def _per_block(width: int) -> bool:
    """Whether wide blocks are written one by one into column slices of one tensor (``out=``), which saves the
    full-size temporary; under ``torch.compile`` the batched form instead, since dynamo cannot trace ``out=`` into a
    strided slice and would break the graph in every adapted layer (the compiler plans the memory itself)."""
    return width >= PER_BLOCK_MIN_WIDTH and not torch.compiler.is_compiling()


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
            if _per_block(width):
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
    if not _per_block(width):
        return torch.bmm(grad_p.transpose(1, 2), a_blocks).transpose(0, 1).reshape(x.shape)
    grad_x = x.new_empty(x.shape)
    for k in range(blocks):
        torch.mm(grad_p[k].T, a_blocks[k], out=grad_x[:, k * width : (k + 1) * width])
    return grad_x


def sigma_scales(sigma: torch.Tensor, use_exp: bool, use_norm: bool) -> torch.Tensor:
    """BoRA's ``Sigma`` (paper eq. 5) from ``sigma``: ``exp(sigma / Mav(sigma))`` (``Mav``: the mean absolute value),
    ``sigma / Mav`` without ``use_exp`` (Table 7 "w/o Exp"), ``exp(sigma)`` without ``use_norm`` ("w/o Norm"). Plain
    autograd ops: the block form and ``BoraLayer`` use it; the LoRA form computes the same inside its function."""
    if use_norm:
        mav = sigma.abs().mean()
        # Mav = 0 only if sigma is all zeros; dividing by 1 then keeps Sigma = exp(0) = I (plain LoRA) and the
        # gradient finite, where a tiny floor would blow it up by 1 / floor.
        sigma = sigma / torch.where(mav > 0, mav, torch.ones_like(mav))
    return sigma.exp() if use_exp else sigma


_EYES: dict[tuple, torch.Tensor] = {}


def _eye(blocks: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``b x b`` identity, a constant built once per ``(b, dtype, device)``: building it at every call would be
    one more operator per layer and pass."""
    key = (blocks, dtype, device)
    eye = _EYES.get(key)
    if eye is None:
        with torch.inference_mode(False):  # a normal tensor even if first asked for under inference mode
            eye = torch.eye(blocks, dtype=dtype, device=device)
        if type(eye) is torch.Tensor:  # not a tracing mode's stand-in (a FakeTensor, say)
            _EYES[key] = eye
    return eye


def _lora_A(A: torch.Tensor, blocks: int) -> torch.Tensor:
    """``A'`` (``b r x n``): row block ``k`` holds ``A_k`` at column block ``k``, zeros elsewhere."""
    r, n = A.shape
    eye = _eye(blocks, A.dtype, A.device)
    return (eye.view(blocks, 1, blocks, 1) * A.view(1, r, blocks, n // blocks)).reshape(blocks * r, n)


def _lora_B(B: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``B'`` (``m x b r``): row block ``j``, column block ``k`` is ``B_j diag(scales_jk)``, ``scales`` the ``(b, b,
    r)`` diagonals of ``Sigma`` (or ``(b, b, 1)``: MELoRA's identity)."""
    (m, r), blocks = B.shape, scales.shape[0]
    return (B.view(blocks, m // blocks, 1, r) * scales.unsqueeze(1)).reshape(m, blocks * r)


def _sigma(sigma: torch.Tensor, use_exp: bool, use_norm: bool):
    """``(Sigma, z, Mav)``: ``sigma_scales``' ``Sigma`` in 5 operators (its autograd graph: 7, and 13 in backward),
    with the exponent ``z`` (``sigma / Mav``; ``sigma`` without ``use_norm``) and ``Mav`` (None without ``use_norm``)
    kept for backward."""
    z, mav = sigma, None
    if use_norm:
        l1 = torch.linalg.vector_norm(sigma, 1)
        mav = torch.add(l1 == 0, l1, alpha=1 / sigma.numel())  # l1 / numel, or 1 if sigma is all zeros (the guard)
        z = sigma / mav
    return (z.exp() if use_exp else z), z, mav


def _sigma_grad(grad_lora_B, lora_B, B, sigma, z, mav, use_exp: bool, use_norm: bool) -> torch.Tensor:
    """``dL/dsigma`` from ``dL/dB'`` (``(j, m/b, k, r)``, the scale included), by the chain rule through ``Sigma``.
    The products run in the compute dtype (bf16 under autocast, as the previous version's einsum did), the sums over
    ``o`` in sigma's dtype."""
    if use_exp:  # B'_jk = B_j exp(z_jk): sum_o dL/dB' * B' is dL/dz, one product with the B' at hand
        grad = (grad_lora_B * lora_B.view(grad_lora_B.shape)).sum(1, dtype=sigma.dtype)
    else:  # dL/dSigma_jk = sum_o dL/dB'_jk * B_j
        blocks, rows, _, r = grad_lora_B.shape
        grad = (grad_lora_B * B.view(blocks, rows, 1, r)).sum(1, dtype=sigma.dtype)
    if not use_norm:
        return grad
    # z = sigma / Mav, Mav = |sigma|_1 / N: dL/dsigma = (dL/dz - sign(sigma) <dL/dz, z> / N) / Mav. With sigma all
    # zeros that is dL/dz (Mav = 1, sign = 0): sigma_scales' guard.
    inner = torch.dot(grad.view(-1), z.view(-1))
    return torch.addcmul(grad, sigma.sign(), inner, value=-1 / sigma.numel()).div_(mav)


def _scaled_mm(like: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``scaling * a @ b`` as one operator: ``addmm`` with ``beta=0`` ignores its input, ``like`` (any tensor of the
    output's shape and dtype), so the scale costs no elementwise pass."""
    return torch.addmm(like, a, b, beta=0, alpha=scaling)


def _contiguous(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as a contiguous tensor of ``dtype``: one copy, which casts too."""
    return t.contiguous() if t.dtype == dtype else t.to(dtype, memory_format=torch.contiguous_format)


class _LoraFormUpdate(torch.autograd.Function):
    """``result + s x A'^T B'^T`` (module docstring), ``Sigma`` computed from ``sigma`` inside (``sigma=None``:
    MELoRA), with a hand-written backward: few operators for the same maths, since on a GPU each costs a launch.
    ``B'`` is built in the parameters' dtype (one rounding to the compute dtype), cast once and saved; ``A'`` is
    built in forward only (backward's ``dL/dx`` and ``dL/dA`` are block-wise ``bmm``s)."""

    @staticmethod
    def forward(
        ctx, result, x, A, B, sigma, scaling: float, blocks: int, dtype: torch.dtype, use_exp: bool, use_norm: bool
    ):
        with torch.autocast(x.device.type, enabled=False):
            if sigma is None:
                scales, z, mav = _eye(blocks, B.dtype, B.device).unsqueeze(-1), None, None
            else:
                scales, z, mav = _sigma(sigma, use_exp, use_norm)
            x_c, A_c = x.to(dtype), A.to(dtype)
            lora_B = _lora_B(B, scales).to(dtype)
            hidden = x_c @ _lora_A(A_c, blocks).T  # (T, b r)
            out = torch.addmm(result, hidden, lora_B.T, alpha=scaling)
        ctx.save_for_backward(x_c, hidden, A_c, B, lora_B, sigma, scales, z, mav)
        ctx.scaling, ctx.blocks, ctx.use_exp, ctx.use_norm = scaling, blocks, use_exp, use_norm
        ctx.dtypes = (x.dtype, A.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, hidden, A, B, lora_B, sigma, scales, z, mav = ctx.saved_tensors
        blocks, scaling = ctx.blocks, ctx.scaling
        x_dtype, A_dtype = ctx.dtypes
        (r, n), (m, _), tokens = A.shape, B.shape, x.shape[0]
        need_x, need_A, need_B, need_sigma = ctx.needs_input_grad[1:5]
        grad_x = grad_A = grad_B = grad_sigma = None
        with torch.autocast(x.device.type, enabled=False):
            grad = grad.to(A.dtype)
            if need_B or need_sigma:  # dL/dB' as (j, m/b, k, r)
                grad_lora_B = _scaled_mm(lora_B, grad.T, hidden, scaling).view(blocks, m // blocks, blocks, r)
                if need_B:  # B'_jk = B_j diag(scales_jk): dL/dB_j = sum_k dL/dB'_jk * scales_jk
                    grad_B = (grad_lora_B * scales.unsqueeze(1)).sum(2).reshape(m, r).to(B.dtype)
                if need_sigma:
                    grad_sigma = _sigma_grad(grad_lora_B, lora_B, B, sigma, z, mav, ctx.use_exp, ctx.use_norm)
            if need_x or need_A:  # A' is block-diagonal: dL/dx and dL/dA block by block, one bmm each
                grad_hidden = _scaled_mm(hidden, grad, lora_B, scaling).view(tokens, blocks, r)  # (T, k, r)
                if need_A:  # dL/dA_k = dL/dh_k^T x_k, (k, r, n/b) -> (r, k, n/b)
                    segments = x.view(tokens, blocks, n // blocks).transpose(0, 1)
                    grad_A = torch.bmm(grad_hidden.permute(1, 2, 0), segments).transpose(0, 1)
                    grad_A = _contiguous(grad_A, A_dtype).view(r, n)
                if need_x:  # dL/dx_k = dL/dh_k A_k, (k, T, n/b) -> (T, k, n/b)
                    grad_x = torch.bmm(grad_hidden.transpose(0, 1), A.view(r, blocks, n // blocks).transpose(0, 1))
                    grad_x = _contiguous(grad_x.transpose(0, 1), x_dtype).view(tokens, n)
        return grad, grad_x, grad_A, grad_B, grad_sigma, None, None, None, None, None


def takes_lora_form(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, blocks: int) -> bool:
    """Whether the update runs as the rank ``b r`` LoRA (``_LoraFormUpdate``) rather than block by block."""
    return x.device.type in LORA_FORM_DEVICES and lora_form_fits(A, B, blocks)


def lora_form_fits(A: torch.Tensor, B: torch.Tensor, blocks: int) -> bool:
    """Whether the LoRA form's two factors hold fewer numbers than ``dW``: ``b r (m + n) < m n``."""
    (r, n), (m, _) = A.shape, B.shape
    return blocks * r * (m + n) < m * n


def add_block_update(
    result: torch.Tensor,
    x: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    sigma: torch.Tensor | None,
    scaling: float,
    blocks: int,
    *,
    use_exp: bool = False,
    use_norm: bool = False,
) -> torch.Tensor:
    """``result + s concat_j B_j sum_k Sigma_jk A_k x_k`` (BoRA; ``Sigma`` = ``sigma_scales(sigma, use_exp,
    use_norm)``, the ``(b, b, r)`` diagonals of all ``Sigma_jk``: ``sigma`` itself with both switches off), or with
    ``sigma=None`` the block-diagonal ``result + s concat_j B_j A_j x_j`` (MELoRA)."""
    x = x.reshape(-1, x.shape[-1])
    x = x if x.is_contiguous() else x.contiguous()
    dtype = compute_dtype(x, A)
    flat = result.reshape(-1, result.shape[-1])
    if takes_lora_form(x, A, B, blocks):
        update, extra = _LoraFormUpdate, (use_exp, use_norm)  # it computes Sigma from sigma itself
    else:
        update, extra = _BlockUpdate, ()
        sigma = None if sigma is None else sigma_scales(sigma, use_exp, use_norm)
    if result.dtype != dtype:  # a bf16 base without autocast: compute in float32, add in the base dtype
        added = update.apply(flat.new_zeros(flat.shape, dtype=dtype), x, A, B, sigma, scaling, blocks, dtype, *extra)
        return result + added.to(result.dtype).view(result.shape)
    return update.apply(flat, x, A, B, sigma, scaling, blocks, dtype, *extra).view(result.shape)
