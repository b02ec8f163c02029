"""``python -m bora.bench``: training-step time and peak memory of every method, side by side in one process.

(a) single linear layers at realistic widths (4096 -> 4096 as q/o of LLaMA-3-8B, 4096 -> 1024 as its GQA k/v), a
few hundred tokens, input requiring grad as inside a network; (b) a small real-architecture model (random weights,
built from its config's ``arch``) with the paper's targets. A step is forward, backward, AdamW step, zero_grad
(and AdaLoRA's rank allocation). Steps are interleaved round by round in a shuffled order, so machine load hits
every method alike; a ratio is the median over rounds of that round's ratio. Peak memory is the model's tensors
(weights, adapters, optimizer state, the input batch) plus the peak of what one step allocates, counted from the
profiler's allocation events. Also: merged inference against the base model. One torch thread by default: on a
shared machine a second OpenMP thread that gets descheduled stalls every small op and swamps the ratios.

Targets (issue #3): BoRA (r=8, b=16) <= 1.05x LoRA time and <= 1.02x LoRA memory; our LoRA no slower than PEFT's;
merged inference as fast as the base model.

``--device cuda`` times every step between ``torch.cuda.synchronize()`` calls and reads the step's peak from CUDA's
allocator statistics; ``--dtype bf16`` keeps the base weights in bf16 and computes under bf16 autocast, as training
with ``trainer.precision=bf16`` does (adapters stay float32). ``--table4``: the paper's Table 4 on the real
architecture (``bora.bench_table4``); ``--eval``: generation throughput (``bora.bench_eval``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

# The profiler (kineto) prints "USDT: ... profiler_start / profiler_stop" on every use below level 6.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bora.adapters import inject, merge_adapters, on_optimizer_step  # noqa: E402
from bora.config import load_config  # noqa: E402
from bora.errors import BoraError, run_tool  # noqa: E402
from bora.models import build_from_arch  # noqa: E402

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
LAYER_SHAPES = {"q/o 4096->4096": (4096, 4096), "GQA k/v 4096->1024": (4096, 1024)}
MODEL_TASKS = {"encoder": "rte", "decoder": "math"}


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
    take the block form on a CPU, the LoRA form on a GPU: ``bora.adapters.blocks``). Counted on CPUs so far."""

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


class LinearHost(nn.Module):
    """A single frozen ``nn.Linear`` named ``proj``, so ``inject`` can target it like a model's projection."""

    def __init__(self, n: int, m: int):
        super().__init__()
        self.proj = nn.Linear(n, m, bias=False)

    def forward(self, x):
        return self.proj(x)


def method_config(label: str, model: str, task: str):
    return load_config([f"model={model}", f"task={task}", *METHODS[label]]).method


def training_case(label: str, module: nn.Module, run: Callable[[nn.Module], torch.Tensor], method_cfg,
                  target_map, extra_tensors: list[torch.Tensor], runtime: Runtime = CPU) -> Case:
    torch.manual_seed(0)
    inject(module, method_cfg, target_map, total_steps=10_000)
    module.train()
    return stepping_case(label, module, module, run, extra_tensors, runtime)


def stepping_case(label: str, module: nn.Module, adapters: nn.Module, run: Callable[[nn.Module], torch.Tensor],
                  extra_tensors: list[torch.Tensor], runtime: Runtime = CPU, trainer_cfg=None, **hooks) -> Case:
    """A case whose step trains ``adapters``' trainable parameters (``adapters``: the model itself, or the host
    of a swapped adapter set) through the loss ``run(module)``: forward under the runtime's autocast, backward,
    with ``trainer_cfg`` the trainer's gradient clipping and AdamW settings (else AdamW at lr 1e-4), the optimizer
    step (and AdaLoRA's allocation), zero_grad."""
    params = [p for p in adapters.parameters() if p.requires_grad]
    optimizer, clip = torch.optim.AdamW(params, lr=1e-4), None
    if trainer_cfg is not None:
        tc = trainer_cfg
        optimizer = torch.optim.AdamW(params, lr=tc.lr, betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_eps,
                                      weight_decay=tc.weight_decay)
        clip = tc.max_grad_norm or None
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
        row = {"method": case.name, "step ms": 1000 * statistics.median(case.wall),
               "cpu ms": 1000 * statistics.median(case.cpu), "peak MB": case.peak_mb}
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


def bench_layers(labels: list[str], tokens: int, rounds: int, warmup: int,
                 runtime: Runtime = CPU) -> list[pd.DataFrame]:
    frames = []
    target_map = {letter: "proj" for letter in "QKVOGUD"}  # IA3 treats `proj` as its feed-forward module
    for shape_name, (n, m) in LAYER_SHAPES.items():
        torch.manual_seed(0)
        host = LinearHost(n, m).to(runtime.device, runtime.torch_dtype())
        x = torch.randn(2, tokens // 2, n).to(runtime.device).requires_grad_()
        grad_out = torch.randn(2, tokens // 2, m).to(runtime.device)

        def run(module, x=x, grad_out=grad_out):
            x.grad = None
            return (module(x) * grad_out).sum()  # backward sends grad_out into the layer, as from the next layer

        cases = []
        for label in labels:
            cfg = method_config(label, "tiny-decoder", "toy-math").copy()
            cfg.targets = "Q"
            cases.append(training_case(label, copy.deepcopy(host), run, cfg, target_map, [x, grad_out], runtime))
        run_interleaved(cases, rounds, warmup, runtime=runtime)
        frames.append(report(f"(a) one linear layer, {shape_name}, {tokens} tokens", cases))
    return frames


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
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                         "labels": labels}.items()}


def bench_model(labels: list[str], model_name: str, batch: int, length: int, rounds: int, warmup: int,
                layers: int | None, runtime: Runtime = CPU, vocab: int | None = None) -> list[pd.DataFrame]:
    overrides = [f"model={model_name}", *arch_overrides(layers, vocab), *runtime.model_overrides()]
    model_cfg = load_config(overrides).model
    task = MODEL_TASKS[model_cfg.kind]
    base = build_from_arch(model_cfg, num_labels=2, device=runtime.device)
    inputs = random_batch(model_cfg, batch, length, runtime.device)

    def run(module):
        return module(**inputs).loss

    cases = []
    for label in labels:
        cfg = load_config([*overrides, f"task={task}", *METHODS[label]])
        cases.append(training_case(label, copy.deepcopy(base), run, cfg.method, cfg.model.targets,
                                   list(inputs.values()), runtime))
    run_interleaved(cases, rounds, warmup, runtime=runtime)
    name = f"{model_cfg.name}" + (f" ({layers} layers)" if layers else "")
    targets = load_config([*overrides, f"task={task}"]).method.targets  # the paper's targets for this task
    frames = [report(f"(b) {name}, batch {batch} x {length} tokens, targets {targets} (IA3: KVD)", cases)]
    frames.append(bench_merged_inference(base, overrides, task, inputs, rounds, runtime))
    return frames


def bench_merged_inference(base: nn.Module, overrides: list[str], task: str, inputs: dict, rounds: int,
                           runtime: Runtime = CPU):
    cfg = load_config([*overrides, f"task={task}", "method=bora"])
    adapted = copy.deepcopy(base)
    inject(adapted, cfg.method, cfg.model.targets)
    merged = merge_adapters(copy.deepcopy(adapted))
    forward_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    cases = []
    for name, module in (("base model", base), ("bora merged", merged), ("bora unmerged", adapted)):
        module.eval()

        def step(module=module):
            with torch.no_grad():
                module(**forward_inputs)

        cases.append(Case(name, step, lambda: 0, measure_peak=False))
    run_interleaved(cases, rounds, warmup=1, runtime=runtime)
    rows = [{"model": c.name, "forward ms": 1000 * statistics.median(c.wall),
             "time x base": ratio(c, cases[0], "wall"), "cpu x base": ratio(c, cases[0], "cpu")} for c in cases]
    frame = pd.DataFrame(rows)
    print("\n### merged inference (BoRA r=8 b=16 merged into the weights vs. the base model)\n")
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    return frame


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value


def positive(text: str) -> int:
    """An argparse type: an integer >= 1 (0 rounds has no median, 0 tokens no time per token)."""
    return _integer(text, 1)


def at_least_zero(text: str) -> int:
    return _integer(text, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bora bench", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="methods of the default bench (default: all; --table4, --eval and --decoding each "
                             "measure their own fixed set)")
    parser.add_argument("--tokens", type=positive, default=512, help="tokens per step in the single-layer bench")
    parser.add_argument("--rounds", type=positive, default=10, help="timed steps per method (interleaved)")
    parser.add_argument("--warmup", type=at_least_zero, default=2)
    parser.add_argument("--model", default=None, help="model config of the small-model bench (default minilm; "
                        "with --eval tiny-decoder; with --table4 llama-3-8b)")
    parser.add_argument("--layers", type=positive, default=None, help="override the model's number of layers")
    parser.add_argument("--vocab", type=positive, default=None,
                        help="override the model's vocabulary size (on a CPU the 128k-token embedding and head of "
                             "LLaMA-3-8B dominate a shortened model)")
    parser.add_argument("--batch", type=positive, default=None, help="rows per step (default 8; --table4: the paper's 4)")
    parser.add_argument("--length", type=positive, default=None,
                        help="tokens per row (default 64; --table4: the paper's cutoff 256; --eval: the prompt)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None,
                        help="base weights: fp32, or bf16 under bf16 autocast as trainer.precision=bf16 (adapters "
                             "stay float32); default: the model config's dtype without autocast (--table4: bf16 on "
                             "cuda, fp32 on cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine a descheduled second OpenMP thread "
                             "stalls every small op, which swamps the ratios; 0 = torch's choice)")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--table4", action="store_true",
                        help="the paper's Table 4 on the full architecture with random weights (bora.bench_table4): "
                             "step time and peak memory of LoRA, BoRA b=8 / b=16, MELoRA, HydraLoRA, DoRA, PEFT's "
                             "DoRA, with ratios to LoRA beside the paper's")
    parser.add_argument("--eval", action="store_true",
                        help="generation time instead of training steps: LoRA, BoRA training form, BoRA LoRA form, "
                             "merged (bora.bench_eval); last line bora_eval_time_x_lora: X")
    parser.add_argument("--decoding", action="store_true",
                        help="the generation engines side by side, continuous batching vs padded batches, on real "
                             "gsm8k questions (bora.bench_decoding; default model smollm2-135m); last line "
                             "continuous_time_x_padded: X")
    parser.add_argument("--questions", type=positive, default=32, help="--decoding: test questions decoded")
    parser.add_argument("--prompt", choices=["chat", "alpaca"], default="chat", help="--decoding: prompt template")
    parser.add_argument("--new-tokens", type=positive, default=None,
                        help="--eval: tokens generated per row (default 32); --decoding: the limit (default 256)")
    args = parser.parse_args(argv)
    if args.table4 + args.eval + args.decoding > 1:
        parser.error("--table4, --eval and --decoding are separate benches; pass one of them")
    if args.methods and (args.table4 or args.eval or args.decoding):
        parser.error("--methods picks the methods of the default bench only; --table4, --eval and --decoding "
                     "measure their own fixed set: drop --methods")
    args.methods = args.methods or list(METHODS)
    run_tool(lambda: _bench(args))


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise BoraError(f"--device cuda: torch {torch.__version__} sees no CUDA device; run on a GPU machine with a "
                        "CUDA build of torch, or use --device cpu")


def _bench(args) -> None:
    check_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    labels = ["lora", "peft-lora"] + [m for m in args.methods if m not in ("lora", "peft-lora")]
    where = (f"{torch.cuda.get_device_name()}, " if args.device == "cuda" else "") + \
        f"{torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__}, {where}, load average before: "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    if args.table4:
        from bora.bench_table4 import bench_table4

        dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
        bench_table4(args.model or "llama-3-8b", args.rounds, args.warmup, Runtime(args.device, dtype),
                     layers=args.layers, vocab=args.vocab, batch=args.batch, length=args.length)
        return
    batch, length = args.batch or 8, args.length or 64
    if args.decoding:
        from bora.bench_decoding import bench_decoding

        bench_decoding(args.model or "smollm2-135m", args.questions, batch, args.new_tokens or 256, args.rounds,
                       args.prompt)
        return
    runtime = Runtime(args.device, args.dtype)
    if args.eval:
        from bora.bench_eval import bench_generation

        bench_generation(args.model or "tiny-decoder", args.layers, batch, length, args.new_tokens or 32,
                         args.rounds, args.warmup, runtime=runtime, vocab=args.vocab)
        return
    if not args.skip_layers:
        bench_layers(labels, args.tokens, args.rounds, args.warmup, runtime)
    if not args.skip_model:
        bench_model(labels, args.model or "minilm", batch, length, args.rounds, args.warmup, args.layers, runtime,
                    args.vocab)
    print(f"\nload average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
