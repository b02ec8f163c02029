"""What every bench shares: where steps run (``Runtime``), one method's steps (``Case``), timing them interleaved
round by round (``run_interleaved``), a step's peak memory (``step_peak_bytes``), its operator count
(``ops_per_step``; one adapted layer's alone, by phase: ``layer_ops_per_step``), ratios over rounds and the Markdown
report, and the configs and inputs of the benched models.

A step's wall time is read between ``Runtime.sync`` calls (``torch.cuda.synchronize()`` on CUDA), with its CPU
time beside it; a ratio is the median over rounds of that round's ratio, so machine load hits every method alike.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# The profiler (kineto) prints "USDT: ... profiler_start / profiler_stop" on every use below level 6.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import pandas as pd
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm import tqdm

from bora.adapters import inject, on_optimizer_step
from bora.config import load_config
from bora.errors import BoraError

# Bench label -> config overrides. The first two are the references of every ratio.
METHODS = {
    "lora": ["method=lora"],
    "peft-lora": ["method=peft"],
    "bora": ["method=bora"],
    "melora": ["method=melora"],
    "dora": ["method=dora"],
    "peft-dora": ["method=peft", "+method.peft.use_dora=true"],
    "hydralora": ["method=hydralora"],
    "sbora-fa": ["method=sbora-fa"],
    "sbora-fb": ["method=sbora-fb"],
    "adalora": ["method=adalora"],
    "ia3": ["method=ia3"],
}


DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # --dtype -> model.dtype


@dataclass(frozen=True)
class Runtime:
    """Where steps run: ``device`` (cpu / cuda) and ``dtype`` (None: the model config's, no autocast; fp32; bf16:
    bf16 base weights and bf16 autocast, as the trainer's ``precision=bf16``)."""

    device: str = "cpu"
    dtype: str | None = None

    def autocast(self):
        if self.dtype == "bf16":
            return torch.autocast(self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def model_overrides(self) -> list[str]:
        return [f"model.dtype={DTYPES[self.dtype]}"] if self.dtype else []

    def torch_dtype(self) -> torch.dtype | None:
        return {"fp32": torch.float32, "bf16": torch.bfloat16}.get(self.dtype)


CPU = Runtime()


def _nothing() -> None:
    pass


@dataclass
class Case:
    """One method on one workload: ``step()`` runs one training step; times and memory are collected here.
    ``enter`` / ``leave`` run around every step, untimed (swapping a method's adapters into a shared model);
    ``measure_peak=False`` skips the memory measurement."""

    name: str
    step: Callable[[], None]
    persistent_bytes: Callable[[], int]
    enter: Callable[[], None] = _nothing
    leave: Callable[[], None] = _nothing
    measure_peak: bool = True
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mb: float = 0.0


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched while it is active, views excluded (they launch no kernel). On a GPU a
    small step is bound by the host launching kernels, and every op costs launch time whatever its size, so this
    count shows a cost there that flops do not. It depends on the device only where the code does (BoRA and MELoRA
    take the block form on a CPU, the LoRA form on a GPU: ``bora.adapters.blocks``; ``bora bench --lora-form`` runs
    the LoRA form on a CPU too). Counted on CPUs so far."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(case: Case) -> int:
    """The non-view ATen operators one more (untimed) step of ``case`` dispatches, forward to optimizer."""
    case.enter()
    try:
        with OpCounter() as counter:
            case.step()
    finally:
        case.leave()
    return counter.count


def adamw(params: list[torch.Tensor], trainer_cfg=None) -> torch.optim.AdamW:
    """AdamW with the trainer's settings (``trainer_cfg``), else at lr 1e-4."""
    if trainer_cfg is None:
        return torch.optim.AdamW(params, lr=1e-4)
    tc = trainer_cfg
    return torch.optim.AdamW(
        params, lr=tc.lr, betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_eps, weight_decay=tc.weight_decay
    )


LAYER_OPS = ("forward", "backward", "optimizer")


def layer_ops_per_step(layer: nn.Module, runtime: Runtime = CPU, tokens: int = 16, trainer_cfg=None) -> dict[str, int]:
    """The non-view ATen operators of one training step of one adapted layer alone (a copy of ``layer``), by phase:
    ``forward`` (the frozen base, dropout, the update, under the runtime's autocast, on a ``(tokens, n)`` input in
    the base weight's dtype; a model's 3-D input adds one operator to the base's ``linear``, for every method),
    ``backward`` (from an upstream gradient to the input and the adapter's parameters) and ``optimizer`` (AdamW's
    step on the layer's trainable parameters alone: on a CPU a loop of 9 operators per parameter, plus 2 profiler
    marks; on a GPU AdamW's foreach implementation runs one set of operators per step for all the model's
    parameters, so its share per layer is far smaller there). Counted on a second step: the first builds AdamW's
    state. Gradient clipping and zero_grad are left out (one set of operators per step for the whole model). The
    counts do not depend on ``tokens``."""
    layer = copy.deepcopy(layer).train()
    layer.base_layer.requires_grad_(False)  # frozen, as ``inject`` leaves it
    params = [p for p in layer.parameters() if p.requires_grad]
    optimizer = adamw(params, trainer_cfg)
    weight = layer.base_layer.weight
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, layer.base_layer.in_features, generator=generator).to(weight.device, weight.dtype)
    x.requires_grad_()
    counts = {}
    for _ in range(2):  # the counts of the second step stay
        x.grad = None
        with OpCounter() as forward, runtime.autocast():
            out = layer(x)
        grad = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
        with OpCounter() as backward:
            out.backward(grad)
        with OpCounter() as step:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        counts = {"forward": forward.count, "backward": backward.count, "optimizer": step.count}
    return counts


def method_config(label: str, model: str, task: str):
    return load_config([f"model={model}", f"task={task}", *METHODS[label]]).method


def training_case(
    label: str,
    module: nn.Module,
    run: Callable[[nn.Module], torch.Tensor],
    method_cfg,
    target_map,
    extra_tensors: list[torch.Tensor],
    runtime: Runtime = CPU,
) -> Case:
    torch.manual_seed(0)
    inject(module, method_cfg, target_map, total_steps=10_000)
    module.train()
    return stepping_case(label, module, module, run, extra_tensors, runtime)


def stepping_case(
    label: str,
    module: nn.Module,
    adapters: nn.Module,
    run: Callable[[nn.Module], torch.Tensor],
    extra_tensors: list[torch.Tensor],
    runtime: Runtime = CPU,
    trainer_cfg=None,
    **hooks,
) -> Case:
    """A case whose step trains ``adapters``' trainable parameters (``adapters``: the model itself, or the host
    of a swapped adapter set) through the loss ``run(module)``: forward under the runtime's autocast, backward,
    with ``trainer_cfg`` the trainer's gradient clipping and AdamW settings (else AdamW at lr 1e-4), the optimizer
    step (and AdaLoRA's allocation), zero_grad."""
    params = [p for p in adapters.parameters() if p.requires_grad]
    optimizer = adamw(params, trainer_cfg)
    clip = None if trainer_cfg is None else trainer_cfg.max_grad_norm or None
    counter = {"step": 0}

    def step() -> None:
        with runtime.autocast():
            loss = run(module)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        on_optimizer_step(adapters, counter["step"])
        optimizer.zero_grad(set_to_none=True)
        counter["step"] += 1

    def persistent_bytes() -> int:
        tensors = [*module.parameters(), *module.buffers(), *extra_tensors]
        tensors += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    return Case(label, step, persistent_bytes, **hooks)


def step_peak_bytes(fn: Callable[[], None], device: str = "cpu") -> int:
    """Peak of (allocated - freed) bytes while ``fn`` runs: on a CPU from the profiler's allocation events, on CUDA
    from the allocator's statistics (peak allocated minus what was allocated before)."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch._C._profiler import _EventType

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes = []

    def walk(node):
        if node.tag == _EventType.Allocation:
            sizes.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    current = peak = 0
    for _, size in sorted(sizes):
        current += size
        peak = max(peak, current)
    return peak


def run_interleaved(cases: list[Case], rounds: int, warmup: int, seed: int = 0, runtime: Runtime = CPU) -> None:
    order = random.Random(seed)
    for case in cases:
        case.enter()
        for _ in range(warmup):
            case.step()
        if case.measure_peak:
            case.peak_mb = (case.persistent_bytes() + step_peak_bytes(case.step, runtime.device)) / 2**20
        case.leave()
    for _ in tqdm(range(rounds), desc=", ".join(c.name for c in cases[:3]) + ", ...", leave=False):
        shuffled = list(cases)
        order.shuffle(shuffled)
        for case in shuffled:
            case.enter()
            runtime.sync()
            wall, cpu = time.perf_counter(), time.process_time()
            case.step()
            runtime.sync()
            case.cpu.append(time.process_time() - cpu)
            case.wall.append(time.perf_counter() - wall)
            case.leave()


def ratio(case: Case, reference: Case, attr: str) -> float:
    return statistics.median(a / b for a, b in zip(getattr(case, attr), getattr(reference, attr)))


def report(title: str, cases: list[Case]) -> pd.DataFrame:
    by_name = {c.name: c for c in cases}
    rows = []
    for case in cases:
        row = {
            "method": case.name,
            "step ms": 1000 * statistics.median(case.wall),
            "cpu ms": 1000 * statistics.median(case.cpu),
            "peak MB": case.peak_mb,
        }
        for ref in ("lora", "peft-lora"):
            if ref in by_name:
                row[f"time x {ref}"] = ratio(case, by_name[ref], "wall")
                row[f"cpu x {ref}"] = ratio(case, by_name[ref], "cpu")
                row[f"mem x {ref}"] = case.peak_mb / by_name[ref].peak_mb
        rows.append(row)
    frame = pd.DataFrame(rows)
    print(f"\n### {title}\n")
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    return frame


def arch_overrides(layers: int | None = None, vocab: int | None = None) -> list[str]:
    """Config overrides that shorten a model's architecture (fewer layers, a smaller vocabulary)."""
    shorter = [f"++model.arch.num_hidden_layers={layers}"] if layers else []
    if vocab:  # special tokens inside the smaller vocabulary
        shorter += [f"++model.arch.vocab_size={vocab}", "++model.arch.bos_token_id=1", "++model.arch.eos_token_id=2"]
    return shorter


def random_batch(model_cfg, batch: int, length: int, device: str) -> dict[str, torch.Tensor]:
    """Random token ids (seeded), all attended; labels: the ids (decoder) or class 0 (encoder)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model_cfg.arch.vocab_size, (batch, length), generator=generator)
    labels = ids if model_cfg.kind == "decoder" else torch.zeros(batch, dtype=torch.long)
    return {
        k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}.items()
    }


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise BoraError(
            f"--device cuda: torch {torch.__version__} sees no CUDA device; run on a GPU machine with a "
            "CUDA build of torch, or use --device cpu"
        )
