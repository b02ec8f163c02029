"""``bora bench --dropout``: what the adapters' input dropout (``method.dropout``, the paper's p = 0.05) costs on a
CPU, and whether the same noise can be drawn more cheaply.

Every adapter layer computes ``update(dropout(x))`` (``bora.adapters.base``), PEFT-style: an independent i.i.d. mask
per layer and step, each element kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``. On a CPU torch's
``F.dropout`` is ``x * empty_like(x).bernoulli_(1 - p).div_(1 - p)``, and ``bernoulli_`` (outside Intel CPUs, where
torch goes through MKL) is a serial loop that draws a 53-bit uniform per element (two 32-bit mt19937 outputs) and
keeps the element when it is ``< 1 - p`` in double: its keep probability is ``1 - p`` rounded to a multiple of
2^-53, exactly. That loop is what costs; the multiplies around it are vectorised.

The tables, all CPU time of steps interleaved round by round in one process (``bora.bench.timing``), a ratio being
the median over rounds of that round's ratio:

(b) per shape (MiniLM's adapter input, 32 * 128 tokens x 384, and a LLaMA-ish row, 4 x 256 x 4096): forward and
    backward of one dropout, for every way of drawing the mask in ``VARIANTS``, beside ``F.dropout``. Columns say,
    computed rather than claimed, whether a variant has exactly today's distribution (its exact keep probability and
    the value a kept element is multiplied by) and whether it gives today's output bit for bit from the same seed
    (then it also draws the same random stream, and runs recorded with it would reproduce);
(a) the model step (``bora.bench.steps``' model bench: random weights, the paper's targets) of LoRA and BoRA with
    ``method.dropout`` 0.05 against 0, plus LoRA with the exact variants of (b) swapped in, with (c) one mask shared
    by the layers that read the same input (Q and V read the same hidden states), and with no dropout at all (the
    model's own hidden and attention dropout off too, to apportion ``bernoulli_``'s share of a profile).

Sharing a mask keeps every layer's marginal distribution but correlates the layers' noise: a different joint
distribution from PEFT's and the paper's independent masks, so it is reported as a cost, never as a drop-in. A variant
that draws other bits, even with exactly the same distribution, changes every run's random stream: runs recorded with
``F.dropout`` would no longer reproduce bit for bit. The last line is ``dropout_share_of_step: X``: 1 - LoRA's step
CPU time without adapter dropout over its time with it.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bora.adapters import adapter_layers
from bora.bench.steps import MODEL_TASKS
from bora.bench.timing import CPU, Case, Runtime, arch_overrides, random_batch, ratio, run_interleaved, training_case
from bora.config import load_config
from bora.errors import BoraError
from bora.models import build_from_arch

P = 0.05  # the paper's adapter dropout (conf/method/*.yaml)
SHAPES = {"MiniLM adapter input, 32*128 x 384": (32 * 128, 384), "LLaMA-ish row, 4 x 256 x 4096": (4, 256, 4096)}
MICRO_ROUNDS_PER_ROUND = 4  # one dropout is ~100x shorter than a model step: more rounds for the same seconds

# torch's CPU bernoulli_ (outside MKL) compares a 53-bit uniform k / 2^53 with 1 - p; the exact variant below draws
# the same 53 bits' worth of decision from one 31-bit draw, and 22 more bits only on a tie (probability 2^-31).
UNIFORM_BITS, HIGH_BITS = 53, 31
LOW_BITS = UNIFORM_BITS - HIGH_BITS


# --- exact keep probabilities ----------------------------------------------------------------------------------------
def bernoulli_keep(p: float) -> Fraction:
    """``bernoulli_(1 - p)``'s keep probability on torch's default CPU kernel: the share of ``k`` in [0, 2^53) with
    ``k / 2^53 < 1 - p`` (the double ``F.dropout`` passes), i.e. ``ceil((1 - p) 2^53) / 2^53``."""
    return Fraction(math.ceil(Fraction(1.0 - p) * 2**UNIFORM_BITS), 2**UNIFORM_BITS)


def rand_fp32_keep(p: float) -> Fraction:
    """``rand_like(x) > p``'s keep probability for float32 ``x``: ``rand`` draws ``k / 2^24`` (24 bits of one 32-bit
    draw) and the comparison runs in float32, against ``float32(p)``; kept: ``k > float32(p) 2^24``."""
    threshold = Fraction(float(np.float32(p))) * 2**24
    return Fraction(2**24 - math.floor(threshold) - 1, 2**24)


def exact_threshold(p: float) -> tuple[int, int]:
    """``(high, low)`` with ``high 2^22 + low`` = the number of 53-bit uniforms ``bernoulli_(1 - p)`` keeps."""
    count = bernoulli_keep(p) * 2**UNIFORM_BITS
    assert count.denominator == 1
    return divmod(int(count), 2**LOW_BITS)


def exact_keep(p: float) -> Fraction:
    """The exact variant's keep probability, from its own thresholds: ``P(r < high) + P(r = high) P(s < low)`` for a
    31-bit ``r`` and a 22-bit ``s``."""
    high, low = exact_threshold(p)
    return Fraction(high, 2**HIGH_BITS) + Fraction(1, 2**HIGH_BITS) * Fraction(low, 2**LOW_BITS)


# --- ways to draw the mask -------------------------------------------------------------------------------------------
def keep_from_draws(high_draws: torch.Tensor, high: int, low: int, generator=None) -> torch.Tensor:
    """The kept elements for 31-bit uniform draws: ``draw < high``; where ``draw == high`` (each element with
    probability 2^-31) a further 22-bit draw decides, ``< low``. Together: a 53-bit uniform below ``high 2^22 +
    low``, exactly ``bernoulli_``'s decision in distribution, from about half its random bits."""
    keep = high_draws < high
    tied = high_draws == high
    if tied.any():
        low_draws = torch.randint(0, 2**LOW_BITS, (int(tied.sum()),), generator=generator, device=keep.device)
        keep[tied] = low_draws < low
    return keep


def exact_mask(x: torch.Tensor, p: float, generator=None) -> torch.Tensor:
    # int32 random_() is one 32-bit mt19937 draw per element, taken modulo 2^31: uniform on [0, 2^31)
    draws = torch.empty(x.shape, dtype=torch.int32, device=x.device).random_(generator=generator)
    return keep_from_draws(draws, *exact_threshold(p), generator=generator)


def _bernoulli_mask(x: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    # the same kernel and the same draws as F.dropout's fp32 mask, whatever the dtype it writes
    return torch.empty(x.shape, dtype=dtype, device=x.device).bernoulli_(1 - p)


def _apply(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """``x * noise``, ``noise`` = the kept elements' ``1 / (1 - p)`` in ``x``'s dtype: ``F.dropout``'s own last steps
    (its mask ``.div_(1 - p)``, then ``x * mask``; backward: ``grad * mask``, one pass), so variants differ only in
    how ``keep`` is drawn. Measured cheaper than ``torch.where(keep, x * s, 0)`` (two passes each way)."""
    return x * keep.to(x.dtype).mul_(1 / (1 - p))


@dataclass(frozen=True)
class Variant:
    """One way to apply dropout: ``apply(x, p)`` (differentiable), its exact keep probability ``keep(p)``, and the
    dtype its input is cast to first (None: as given, float32)."""

    apply: Callable[[torch.Tensor, float], torch.Tensor]
    keep: Callable[[float], Fraction]
    input_dtype: torch.dtype | None = None


TODAY = "F.dropout (today)"
BOOL_MASK = "bernoulli_ bool mask"
EXACT = "int32 random_ + tie-break (exact)"
RAND = "rand_like(x) > p"
VARIANTS = {
    TODAY: Variant(lambda x, p: F.dropout(x, p, training=True), bernoulli_keep),
    "bernoulli_ fp32 mask, x * mask / (1-p)": Variant(
        lambda x, p: x * _bernoulli_mask(x, p, x.dtype) / (1 - p), bernoulli_keep
    ),
    "torch.native_dropout": Variant(lambda x, p: torch.native_dropout(x, p, True)[0], bernoulli_keep),
    BOOL_MASK: Variant(lambda x, p: _apply(x, _bernoulli_mask(x, p, torch.bool), p), bernoulli_keep),
    "bernoulli_ uint8 mask": Variant(lambda x, p: _apply(x, _bernoulli_mask(x, p, torch.uint8), p), bernoulli_keep),
    # a {0, 1} mask is exact in bf16; the scale is applied in float32 (1 / 0.95 rounds to 1.0546875 in bf16)
    "bernoulli_ bf16 mask": Variant(lambda x, p: _apply(x, _bernoulli_mask(x, p, torch.bfloat16), p), bernoulli_keep),
    # dropout before the cast to the adapters' float32: F.dropout folds the scale into a bf16 mask
    "F.dropout at bf16 (before the fp32 cast)": Variant(
        lambda x, p: F.dropout(x, p, training=True), bernoulli_keep, torch.bfloat16
    ),
    RAND: Variant(lambda x, p: _apply(x, torch.rand_like(x) > p, p), rand_fp32_keep),
    EXACT: Variant(lambda x, p: _apply(x, exact_mask(x, p), p), exact_keep),
}


def kept_multiplier(variant: Variant, p: float) -> float:
    """What a kept element is multiplied by, as the variant computes it (on ones, in its input dtype)."""
    torch.manual_seed(0)
    out = variant.apply(torch.ones(4096, dtype=variant.input_dtype or torch.float32), p).float()
    values = out[out != 0].unique()
    assert len(values) == 1, values
    return float(values[0])


def same_output_as_today(variant: Variant, p: float, x: torch.Tensor) -> bool:
    """Whether, from the same seed, the variant returns ``F.dropout``'s output and input gradient bit for bit (so it
    draws the same stream: runs recorded with ``F.dropout`` would reproduce)."""
    results = []
    for apply, dtype in ((VARIANTS[TODAY].apply, x.dtype), (variant.apply, variant.input_dtype or x.dtype)):
        leaf = x.detach().to(dtype).requires_grad_()
        torch.manual_seed(1)
        out = apply(leaf, p)
        out.backward(torch.ones_like(out) * 3)
        results.append((out.detach(), leaf.grad))
    (today, today_grad), (out, grad) = results
    return out.dtype == today.dtype and torch.equal(out, today) and torch.equal(grad, today_grad)


def default_bernoulli_kernel() -> bool:
    """Whether this CPU's ``bernoulli_`` is torch's default kernel (53-bit uniform < 1 - p in double; the keep
    probabilities here are computed for it): then it gives the same mask as ``rand(float64) < 1 - p`` from the same
    seed. On Intel CPUs torch draws it through MKL instead (another stream)."""
    torch.manual_seed(2)
    mask = torch.empty(4096).bernoulli_(1 - P)
    torch.manual_seed(2)
    return torch.equal(mask.bool(), torch.rand(4096, dtype=torch.float64) < 1 - P)


# --- (b) one dropout, forward and backward ---------------------------------------------------------------------------
def _variant_case(name: str, variant: Variant, shape: tuple[int, ...], p: float) -> Case:
    generator = torch.Generator().manual_seed(0)
    dtype = variant.input_dtype or torch.float32
    x = torch.randn(shape, generator=generator).to(dtype).requires_grad_()
    grad = torch.randn(shape, generator=generator).to(dtype)

    def step() -> None:
        x.grad = None
        variant.apply(x, p).backward(grad)

    return Case(name, step, lambda: x.nbytes + grad.nbytes)


def bench_variants(shape_name: str, shape: tuple[int, ...], rounds: int, warmup: int, p: float = P) -> pd.DataFrame:
    cases = [_variant_case(name, variant, shape, p) for name, variant in VARIANTS.items()]
    run_interleaved(cases, rounds, warmup)
    today = cases[0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    today_keep, today_multiplier = VARIANTS[TODAY].keep(p), kept_multiplier(VARIANTS[TODAY], p)
    rows = []
    for case, (name, variant) in zip(cases, VARIANTS.items()):
        keep, multiplier = variant.keep(p), kept_multiplier(variant, p)
        difference = float(keep - today_keep)
        rows.append(
            {
                "mask drawn by": name,
                "P(keep) - today's": f"{difference:.3g}" if difference else "0",
                "kept x": f"{multiplier:.7f}",
                "same distribution": "yes" if (keep, multiplier) == (today_keep, today_multiplier) else "no",
                "same output, same seed": "yes" if same_output_as_today(variant, p, x) else "no",
                "cpu ms": 1000 * statistics.median(case.cpu),
                "peak MB": case.peak_mb,
                "cpu x today": ratio(case, today, "cpu"),
                "time x today": ratio(case, today, "wall"),
            }
        )
    frame = pd.DataFrame(rows)
    print(f"\n### (b) one dropout (p={p}), forward + backward: {shape_name} ({' x '.join(map(str, shape))})\n")
    print(frame.to_markdown(index=False, floatfmt=".3f", disable_numparse=[1, 2]))  # those two as written
    return frame


# --- (a), (c) the model step -----------------------------------------------------------------------------------------
class DrawnDropout(nn.Module):
    """Dropout through one of ``VARIANTS`` (in training; the identity in evaluation, as ``nn.Dropout``)."""

    def __init__(self, p: float, variant: Variant):
        super().__init__()
        self.p, self.variant = p, variant

    def forward(self, x):
        return self.variant.apply(x, self.p) if self.training else x


class SharedInputDropout(nn.Module):
    """One ``F.dropout`` per distinct input: layers called one after another on the same tensor (Q, K, V on the
    hidden states) get the same dropped-out input. It holds the last input and output (one activation between
    steps); ``drawn`` / ``reused`` count masks drawn and shared."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.drawn = self.reused = 0
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def forward(self, x):
        if not self.training:
            return x
        if x is self._input:
            self.reused += 1
            return self._output
        self.drawn += 1
        self._input, self._output = x, F.dropout(x, self.p, training=True)
        return self._output


def _use_variant(variant: Variant) -> Callable[[nn.Module], None]:
    def change(model: nn.Module) -> None:
        for _, layer in adapter_layers(model):
            layer.dropout = DrawnDropout(layer.dropout.p, variant)

    return change


def _share_masks(model: nn.Module) -> None:
    layers = [layer for _, layer in adapter_layers(model)]
    shared = SharedInputDropout(layers[0].dropout.p)
    for layer in layers:
        layer.dropout = shared


def _no_dropout_anywhere(model: nn.Module) -> None:
    """The model's own dropout off too (BERT: embeddings, hidden states, attention probabilities: its attention
    reads ``self.dropout.p``); the adapters' is 0 in this row's config."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


@dataclass(frozen=True)
class StepRow:
    name: str
    method: str
    dropout: float
    change: Callable[[nn.Module], None] | None = None


LORA, LORA_NONE, BORA, BORA_NONE = (
    "lora, dropout 0.05 (today)",
    "lora, dropout 0",
    "bora, dropout 0.05 (today)",
    "bora, dropout 0",
)
SHARED = "lora, one mask per input (shared by Q, V)"
ALL_OFF = "lora, no dropout at all (model's too)"
STEP_ROWS = [
    StepRow(LORA, "lora", P),
    StepRow(LORA_NONE, "lora", 0.0),
    StepRow(f"lora, {BOOL_MASK}", "lora", P, _use_variant(VARIANTS[BOOL_MASK])),
    StepRow(f"lora, {EXACT}", "lora", P, _use_variant(VARIANTS[EXACT])),
    StepRow(SHARED, "lora", P, _share_masks),
    StepRow(ALL_OFF, "lora", 0.0, _no_dropout_anywhere),
    StepRow(BORA, "bora", P),
    StepRow(BORA_NONE, "bora", 0.0),
]


def bench_step(
    model_name: str,
    batch: int,
    length: int,
    rounds: int,
    warmup: int,
    layers: int | None = None,
    vocab: int | None = None,
    runtime: Runtime = CPU,
) -> dict[str, float]:
    overrides = [f"model={model_name}", *arch_overrides(layers, vocab), *runtime.model_overrides()]
    model_cfg = load_config(overrides).model
    task = MODEL_TASKS[model_cfg.kind]
    base = build_from_arch(model_cfg, num_labels=2)
    inputs = random_batch(model_cfg, batch, length, "cpu")

    def run(module):
        return module(**inputs).loss

    cases, models = [], {}
    for row in STEP_ROWS:
        cfg = load_config([*overrides, f"task={task}", f"method={row.method}", f"method.dropout={row.dropout}"])
        models[row.name] = model = copy.deepcopy(base)
        cases.append(training_case(row.name, model, run, cfg.method, cfg.model.targets, list(inputs.values()), runtime))
        cases[-1].measure_peak = False  # time is the question here; a peak costs one more step per row
        if row.change:
            row.change(model)
    run_interleaved(cases, rounds, warmup, runtime=runtime)
    by_name = {case.name: case for case in cases}
    shared = next(layer.dropout for _, layer in adapter_layers(models[SHARED]))
    if not shared.reused:
        raise BoraError(f"{model_name}: no two adapted layers read the same input tensor, so no mask was shared")
    rows = []
    for row, case in zip(STEP_ROWS, cases):
        reference = by_name[BORA if row.method == "bora" else LORA]
        rows.append(
            {
                "step": row.name,
                "cpu ms": 1000 * statistics.median(case.cpu),
                "cpu x today": ratio(case, reference, "cpu"),
                "time x today": ratio(case, reference, "wall"),
            }
        )
    frame = pd.DataFrame(rows)
    targets = load_config([*overrides, f"task={task}"]).method.targets
    name = model_cfg.name + (f" ({layers} layers)" if layers else "")
    print(f"\n### (a) the model step: {name}, batch {batch} x {length} tokens, targets {targets}, random weights\n")
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    steps, calls = rounds + warmup, shared.drawn + shared.reused
    print(
        f"\none mask per input: {shared.drawn / steps:.0f} masks drawn per step instead of {calls / steps:.0f} "
        "(the same marginal per layer, correlated noise across layers: not PEFT's or the paper's joint "
        "distribution)"
    )
    cpu_ratio = {row["step"]: row["cpu x today"] for row in rows}
    return {"lora": 1 - cpu_ratio[LORA_NONE], "bora": 1 - cpu_ratio[BORA_NONE], "all": 1 - cpu_ratio[ALL_OFF]}


def bench_dropout(
    rounds: int,
    warmup: int,
    runtime: Runtime = CPU,
    model: str = "minilm",
    batch: int = 32,
    length: int = 128,
    layers: int | None = None,
    vocab: int | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, float]:
    if runtime.device != "cpu" or runtime.dtype == "bf16":
        raise BoraError(
            "--dropout measures torch's CPU dropout kernels on float32 adapter inputs (on CUDA dropout "
            "is one fused Philox kernel): drop --device cuda / --dtype bf16"
        )
    keep = bernoulli_keep(P)
    kernel = (
        "torch's default kernel"
        if default_bernoulli_kernel()
        else "MKL (an Intel CPU): the keep probabilities below are the default kernel's, not this one's"
    )
    print(
        f"\nbernoulli_ on this CPU: {kernel}; today's keep probability at p={P}: {keep * 2**UNIFORM_BITS} / "
        f"2^{UNIFORM_BITS} = {float(keep):.20f}"
    )
    for shape_name, shape in (shapes or SHAPES).items():
        bench_variants(shape_name, shape, rounds * MICRO_ROUNDS_PER_ROUND, warmup)
    shares = bench_step(model, batch, length, rounds, warmup, layers, vocab, runtime)
    print(
        f"\nadapter dropout's share of the step (1 - cpu without it / with it): lora {shares['lora']:.3f}, "
        f"bora {shares['bora']:.3f}"
    )
    print(f"all dropout's share of lora's step (adapters' and the model's own): {shares['all']:.3f}")
    print(f"dropout_share_of_step: {shares['lora']:.3f}")
    return shares
