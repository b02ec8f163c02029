"""BoRA against the paper: eq. 8 forward without dW, rank min(m, n, b r), the LoRA and MELoRA special cases,
Mav(sigma) = 0, and the Table 7 ablation switches."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bora.adapters.bora import BoraLayer
from bora.adapters.lora import LoraLayer
from bora.adapters.melora import MeloraLayer
from bora.adapters.registry import layer_arguments


def method(**fields) -> dict:
    defaults = {"name": "bora", "r": 4, "alpha": 8, "dropout": 0.0, "blocks": 4, "use_exp": True, "use_norm": True}
    return {**defaults, **fields}


def layer(cls=BoraLayer, m=24, n=16, seed=0, **fields) -> nn.Module:
    """A ``cls`` layer with the fields of ``method(**fields)`` that it takes, as the injection passes them."""
    torch.manual_seed(seed)
    adapter = cls(nn.Linear(n, m), name="layer", **layer_arguments(cls, method(**fields)))
    with torch.no_grad():
        for p in adapter.parameters():
            if p is not adapter.base_layer.weight and p is not adapter.base_layer.bias:
                p.copy_(torch.randn_like(p) * 0.5)  # random, full-rank factors
    return adapter


def eq8_reference(adapter: BoraLayer, x: torch.Tensor) -> torch.Tensor:
    """Paper eq. 8 with explicit loops: y_j = B_j sum_k Sigma_jk A_k x_k, then s * concat_j y_j."""
    b = adapter.blocks
    n_b, m_b = adapter.in_features // b, adapter.out_features // b
    sigma = adapter.sigma
    Sigma = torch.exp(sigma / sigma.abs().mean())  # eq. 5, diagonals
    outputs = []
    for j in range(b):
        B_j = adapter.B[j * m_b : (j + 1) * m_b]
        acc = 0
        for k in range(b):
            A_k = adapter.A[:, k * n_b : (k + 1) * n_b]
            acc = acc + (x[:, k * n_b : (k + 1) * n_b] @ A_k.T) * Sigma[j, k]
        outputs.append(acc @ B_j.T)
    return adapter.scaling * torch.cat(outputs, dim=-1)


@pytest.fixture(params=["per-block", "batched", "lora-form"])
def block_path(request, monkeypatch):
    """Run a test with every form of the block update: one matmul per block, one batched matmul, and the rank-b r
    LoRA form that GPUs train through."""
    from bora.adapters import blocks

    monkeypatch.setattr(blocks, "PER_BLOCK_MIN_WIDTH", 1 if request.param == "per-block" else 10**9)
    monkeypatch.setattr(blocks, "takes_lora_form", lambda *args: request.param == "lora-form")
    return request.param


def test_forward_follows_eq8(block_path):
    adapter = layer()
    x = torch.randn(7, 16)
    with torch.no_grad():
        torch.testing.assert_close(adapter.update(x), eq8_reference(adapter, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(adapter(x), adapter.base_layer(x) + eq8_reference(adapter, x), rtol=1e-5, atol=1e-5)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op allocates (views of existing tensors, like ``W.t()``, do not count)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("cls", [BoraLayer, MeloraLayer])
def test_training_step_never_materialises_delta_weight(cls, block_path):
    m, n, tokens = 256, 128, 32  # tokens * m < m * n: no legitimate activation is as large as dW
    adapter = layer(cls, m=m, n=n, blocks=8, dropout=0.05).train()
    adapter.base_layer.requires_grad_(False)
    x = torch.randn(tokens, n, requires_grad=True)
    with LargestTensor() as probe:
        adapter(x).square().sum().backward()
    assert probe.largest < m * n
    assert adapter.A.grad is not None and adapter.B.grad is not None
    if cls is BoraLayer:
        assert adapter.sigma.grad is not None and torch.isfinite(adapter.sigma.grad).all()


def test_lora_form_is_taken_on_gpus_while_its_factors_are_smaller_than_delta_weight(monkeypatch):
    from bora.adapters import blocks

    x, A, B = torch.zeros(3, 128), torch.zeros(8, 128), torch.zeros(256, 8)  # b r (m + n) = 384 b against m n = 32768
    assert not blocks.takes_lora_form(x, A, B, 8)  # a CPU trains block by block
    monkeypatch.setattr(blocks, "LORA_FORM_DEVICES", {"cpu"})
    assert blocks.takes_lora_form(x, A, B, 8)
    assert not blocks.takes_lora_form(x, A, B, 16)  # 16 * 8 * 384 >= 32768


@pytest.mark.parametrize(("m", "n", "b", "r"), [(24, 16, 4, 2), (32, 32, 8, 2), (16, 48, 4, 8), (64, 32, 2, 4)])
def test_rank_is_min_m_n_br(m, n, b, r):
    bora = layer(m=m, n=n, blocks=b, r=r)
    lora = layer(LoraLayer, m=m, n=n, r=r)
    with torch.no_grad():  # rtol: float32 rounding of dW leaves ~1e-8 relative singular values
        assert torch.linalg.matrix_rank(bora.delta_weight(), rtol=1e-6) == min(m, n, b * r)
        assert torch.linalg.matrix_rank(lora.delta_weight(), rtol=1e-6) == r


def twin(cls, source: BoraLayer) -> nn.Module:
    """A ``cls`` layer with the base weights and the ``A``, ``B`` of ``source``."""
    other = layer(cls)
    with torch.no_grad():
        other.A.copy_(source.A)
        other.B.copy_(source.B)
        other.base_layer.load_state_dict(source.base_layer.state_dict())
    return other


def assert_same_layer(a: nn.Module, b: nn.Module) -> None:
    x = torch.randn(5, 16)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.delta_weight(), b.delta_weight(), rtol=1e-5, atol=1e-6)


def test_identity_sigma_is_lora():
    bora = layer(use_exp=True, use_norm=False)
    with torch.no_grad():
        bora.sigma.zero_()  # Sigma = exp(0) = I
    assert_same_layer(bora, twin(LoraLayer, bora))


def test_block_identity_sigma_is_melora(block_path):
    bora = layer(use_exp=False, use_norm=False)  # Sigma = sigma as given
    with torch.no_grad():
        bora.sigma.zero_()
        for j in range(bora.blocks):
            bora.sigma[j, j] = 1.0  # Sigma_jj = I, Sigma_jk = 0
    assert_same_layer(bora, twin(MeloraLayer, bora))


def test_melora_delta_weight_is_block_diagonal():
    melora = layer(MeloraLayer, m=24, n=16, blocks=4)
    dW = melora.delta_weight()
    mask = torch.block_diag(*[torch.ones(6, 4)] * 4).bool()
    assert dW[~mask].abs().max() == 0 and dW[mask].abs().min() > 0
    assert torch.linalg.matrix_rank(dW, rtol=1e-6) == min(24, 16, 4 * melora.r)


def test_all_zero_sigma_stays_finite(block_path):
    bora = layer()
    with torch.no_grad():
        bora.sigma.zero_()  # Mav(sigma) = 0
    lora = twin(LoraLayer, bora)
    x = torch.randn(5, 16)
    out = bora(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(bora.sigma.grad).all()
    assert bora.sigma.grad.abs().max() < 1e3  # no 1 / epsilon blow-up
    torch.testing.assert_close(out, lora(x), rtol=1e-5, atol=1e-5)  # Sigma = I


def test_ablation_switches():
    full, no_exp, no_norm = layer(), layer(use_exp=False), layer(use_norm=False)  # same seed: same sigma
    sigma = full.sigma.detach()
    mav = sigma.abs().mean()
    torch.testing.assert_close(full.block_scales(), torch.exp(sigma / mav))
    torch.testing.assert_close(no_exp.block_scales(), sigma / mav)  # "w/o Exp"
    torch.testing.assert_close(no_norm.block_scales(), torch.exp(sigma))  # "w/o Norm"
    # Normalisation makes BoRA invariant to the scale of sigma; without it, the scale matters.
    x = torch.randn(5, 16)
    with torch.no_grad():
        before_full, before_no_norm = full(x), no_norm(x)
        full.sigma.mul_(3.0)
        no_norm.sigma.mul_(3.0)
        torch.testing.assert_close(full(x), before_full, rtol=1e-5, atol=1e-5)
        assert (no_norm(x) - before_no_norm).abs().max() > 1e-2


def test_sigma_initialised_like_A():
    bora = BoraLayer(nn.Linear(4096, 1024), r=8, alpha=8, dropout=0.0, blocks=16)
    bound_A = 1 / 4096**0.5  # kaiming-uniform with a = sqrt(5): bound = 1 / sqrt(fan_in)
    assert bora.A.abs().max() <= bound_A and bora.A.abs().max() > 0.9 * bound_A
    bound_sigma = 1 / (16 * 8) ** 0.5  # fan_in of a (b, b, r) tensor is b * r
    assert bora.sigma.abs().max() <= bound_sigma and bora.sigma.std() > 0.4 * bound_sigma
    assert bora.B.abs().max() == 0


SWITCHES = {
    "melora": None,
    "sigma-as-given": (False, False),
    "w/o-norm": (True, False),
    "w/o-exp": (False, True),
    "bora": (True, True),
}  # (use_exp, use_norm); None: no sigma


@pytest.mark.parametrize("switches", SWITCHES.values(), ids=SWITCHES.keys())
def test_block_update_passes_gradcheck(switches, block_path):
    """Gradients of the input, A, B and sigma, through Sigma = exp(sigma / Mav) and the Table 7 variants (the LoRA
    form computes Sigma and its gradient itself)."""
    from bora.adapters.blocks import add_block_update

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    result, x, A, B = leaf(2, 3, 8), leaf(2, 3, 12), leaf(2, 12), leaf(8, 2)
    sigma = None if switches is None else leaf(4, 4, 2)
    use_exp, use_norm = switches or (False, False)
    assert torch.autograd.gradcheck(
        lambda *t: add_block_update(*t, scaling=1.5, blocks=4, use_exp=use_exp, use_norm=use_norm),
        (result, x, A, B, sigma),
    )


def _step(adapter: nn.Module, x: torch.Tensor, monkeypatch, form: str, autocast: bool = False) -> list[torch.Tensor]:
    """Output and gradients (input, then each trainable parameter) of one backward pass through ``form``."""
    from bora.adapters import blocks

    monkeypatch.setattr(blocks, "takes_lora_form", lambda *args: form == "lora-form")
    adapter.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = adapter(x)
    (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).square().sum().backward()
    return [out, x.grad] + [p.grad for p in adapter.parameters() if p.requires_grad]


@pytest.mark.parametrize(
    "cls, switches",
    [(BoraLayer, s) for s in list(SWITCHES.values())[2:]] + [(BoraLayer, (False, False)), (MeloraLayer, None)],
)
def test_lora_form_equals_block_form_and_delta_weight(cls, switches, monkeypatch):
    use_exp, use_norm = switches or (True, True)
    fields = {"name": "melora"} if cls is MeloraLayer else {"use_exp": use_exp, "use_norm": use_norm}
    adapter = layer(cls, m=64, n=32, blocks=4, r=2, **fields)
    adapter.base_layer.requires_grad_(False)
    x = torch.randn(3, 5, 32)
    lora_form, block_form = _step(adapter, x, monkeypatch, "lora-form"), _step(adapter, x, monkeypatch, "block")
    with torch.no_grad():
        dense = adapter.base_layer(x) + x @ adapter.delta_weight().T
    for a, b in [*zip(lora_form, block_form, strict=True), (lora_form[0], dense)]:
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()  # float32 rounding, relative to the largest entry


@pytest.mark.parametrize("adapter_dtype", [torch.float32, torch.bfloat16])
def test_lora_form_under_autocast_returns_each_gradient_in_its_dtype(adapter_dtype, monkeypatch):
    """bf16 autocast over a bf16 base: the update computes in bf16 in both forms; gradients come back in each
    input's dtype (float32 adapters, or bf16 ones: trainer.adapter_dtype=bf16) and agree to bf16 precision."""
    adapter = layer(BoraLayer, m=64, n=32, blocks=4, r=2)
    adapter.base_layer.to(torch.bfloat16).requires_grad_(False)
    adapter.to(adapter_dtype)
    x = torch.randn(3, 5, 32).to(torch.bfloat16)
    lora_form, block_form = (
        _step(adapter, x, monkeypatch, "lora-form", True),
        _step(adapter, x, monkeypatch, "block", True),
    )
    assert lora_form[0].dtype == torch.bfloat16 and lora_form[1].dtype == torch.bfloat16
    assert all(g.dtype == adapter_dtype for g in lora_form[2:])
    for a, b in zip(lora_form, block_form, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=0.05, atol=0.05 * b.float().abs().max().item())


def test_lora_form_on_forces_the_lora_form_for_a_while():
    from bora.adapters import blocks

    before = set(blocks.LORA_FORM_DEVICES)
    x, A, B = torch.zeros(3, 128), torch.zeros(8, 128), torch.zeros(256, 8)
    with blocks.lora_form_on("cpu"):
        assert blocks.takes_lora_form(x, A, B, 8) and "cuda" in blocks.LORA_FORM_DEVICES
    assert blocks.LORA_FORM_DEVICES == before and not blocks.takes_lora_form(x, A, B, 8)


@pytest.mark.parametrize(
    "cls, fields",
    [
        (BoraLayer, {}),
        (BoraLayer, {"use_exp": False}),
        (BoraLayer, {"use_norm": False}),
        (MeloraLayer, {"name": "melora"}),
    ],
)
@pytest.mark.parametrize("m, n, dense", [(32, 24, True), (96, 80, False)])
def test_evaluation_runs_the_equivalent_lora_and_equals_the_training_form(cls, fields, m, n, dense):
    """Frozen BoRA / MELoRA evaluate as the rank-b r LoRA of eq. 6 (as its dense product where the rank is near the
    layer's width), built once: same outputs as the block form."""
    adapter = layer(cls, m=m, n=n, dropout=0.1, **fields)
    x = torch.randn(3, 5, n)
    adapter.eval()
    with torch.no_grad():
        block_form = adapter.add_update(adapter.base_layer(x), x)
        lora_form = adapter(x)
        cached = adapter._lora_form
        assert cached is not None and adapter(x).equal(lora_form) and adapter._lora_form is cached  # reused
        assert (cached[1] is None) == dense
    torch.testing.assert_close(lora_form, block_form, rtol=1e-5, atol=1e-5)

    with torch.no_grad():
        adapter.B.mul_(2.0)  # an optimizer step or a load: the next call rebuilds the factors
        rebuilt = adapter(x)
        torch.testing.assert_close(rebuilt, adapter.add_update(adapter.base_layer(x), x), rtol=1e-5, atol=1e-5)
    assert not rebuilt.allclose(lora_form)
    adapter.train()
    assert adapter._lora_form is None  # training drops the cache
    assert adapter(x).requires_grad  # and runs the block form with its graph


def test_evaluation_under_autocast_uses_the_autocast_dtype_like_the_training_form():
    adapter = layer(BoraLayer, m=32, n=32).eval()
    x = torch.randn(4, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        lora_form = adapter(x)
        block_form = adapter.add_update(adapter.base_layer(x), x)
    assert lora_form.dtype == block_form.dtype
    torch.testing.assert_close(lora_form.float(), block_form.float(), rtol=0.05, atol=0.05)


def test_frozen_dora_computes_its_weight_norm_once_until_a_parameter_changes(monkeypatch):
    from bora.adapters.dora import DoraLayer

    adapter = layer(DoraLayer, m=16, n=12, name="dora").eval()
    x = torch.randn(2, 12)
    calls = []
    norm = DoraLayer.weight_norm
    monkeypatch.setattr(DoraLayer, "weight_norm", lambda self: calls.append(1) or norm(self))
    with torch.no_grad():
        first, second = adapter(x), adapter(x)
        assert first.equal(second) and len(calls) == 1
        adapter.A.add_(0.1)  # a changed parameter: the norm is recomputed, and the output follows
        changed = adapter(x)
    assert len(calls) == 2 and not changed.allclose(first)
    adapter.train()
    with torch.no_grad():
        torch.testing.assert_close(adapter.update(x) + adapter.base_layer(x), changed)  # the training form agrees
