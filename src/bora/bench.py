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
"""

from __future__ import annotations

import argparse
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
from tqdm import tqdm  # noqa: E402

from bora.adapters import inject, merge_adapters, on_optimizer_step  # noqa: E402
from bora.config import load_config  # noqa: E402
from bora.errors import run_tool  # noqa: E402
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


@dataclass
class Case:
    """One method on one workload: ``step()`` runs one training step; times and memory are collected here."""

    name: str
    step: Callable[[], None]
    persistent_bytes: Callable[[], int]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mb: float = 0.0


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
                  target_map, extra_tensors: list[torch.Tensor]) -> Case:
    torch.manual_seed(0)
    inject(module, method_cfg, target_map, total_steps=10_000)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    counter = {"step": 0}

    def step() -> None:
        run(module).backward()
        optimizer.step()
        on_optimizer_step(module, counter["step"])
        optimizer.zero_grad(set_to_none=True)
        counter["step"] += 1

    def persistent_bytes() -> int:
        tensors = [*module.parameters(), *module.buffers(), *extra_tensors]
        tensors += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    return Case(label, step, persistent_bytes)


def step_peak_bytes(fn: Callable[[], None]) -> int:
    """Peak of (allocated - freed) bytes while ``fn`` runs, from the profiler's allocation events."""
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


def run_interleaved(cases: list[Case], rounds: int, warmup: int, seed: int = 0) -> None:
    order = random.Random(seed)
    for case in cases:
        for _ in range(warmup):
            case.step()
        case.peak_mb = (case.persistent_bytes() + step_peak_bytes(case.step)) / 2**20
    for _ in tqdm(range(rounds), desc=", ".join(c.name for c in cases[:3]) + ", ...", leave=False):
        shuffled = list(cases)
        order.shuffle(shuffled)
        for case in shuffled:
            wall, cpu = time.perf_counter(), time.process_time()
            case.step()
            case.cpu.append(time.process_time() - cpu)
            case.wall.append(time.perf_counter() - wall)


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


def bench_layers(labels: list[str], tokens: int, rounds: int, warmup: int) -> list[pd.DataFrame]:
    frames = []
    target_map = {letter: "proj" for letter in "QKVOGUD"}  # IA3 treats `proj` as its feed-forward module
    for shape_name, (n, m) in LAYER_SHAPES.items():
        torch.manual_seed(0)
        host = LinearHost(n, m)
        x = torch.randn(2, tokens // 2, n, requires_grad=True)
        grad_out = torch.randn(2, tokens // 2, m)

        def run(module, x=x, grad_out=grad_out):
            x.grad = None
            return (module(x) * grad_out).sum()  # backward sends grad_out into the layer, as from the next layer

        cases = []
        for label in labels:
            cfg = method_config(label, "tiny-decoder", "toy-math").copy()
            cfg.targets = "Q"
            cases.append(training_case(label, copy.deepcopy(host), run, cfg, target_map, [x, grad_out]))
        run_interleaved(cases, rounds, warmup)
        frames.append(report(f"(a) one linear layer, {shape_name}, {tokens} tokens", cases))
    return frames


def bench_model(labels: list[str], model_name: str, batch: int, length: int, rounds: int, warmup: int,
                layers: int | None) -> list[pd.DataFrame]:
    overrides = [f"model={model_name}"] + ([f"++model.arch.num_hidden_layers={layers}"] if layers else [])
    model_cfg = load_config(overrides).model
    task = MODEL_TASKS[model_cfg.kind]
    base = build_from_arch(model_cfg, num_labels=2)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model_cfg.arch.vocab_size, (batch, length), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs["labels"] = ids if model_cfg.kind == "decoder" else torch.zeros(batch, dtype=torch.long)

    def run(module):
        return module(**inputs).loss

    cases = []
    for label in labels:
        cfg = load_config([*overrides, f"task={task}", *METHODS[label]])
        cases.append(training_case(label, copy.deepcopy(base), run, cfg.method, cfg.model.targets,
                                   list(inputs.values())))
    run_interleaved(cases, rounds, warmup)
    name = f"{model_cfg.name}" + (f" ({layers} layers)" if layers else "")
    targets = load_config([*overrides, f"task={task}"]).method.targets  # the paper's targets for this task
    frames = [report(f"(b) {name}, batch {batch} x {length} tokens, targets {targets} (IA3: KVD)", cases)]
    frames.append(bench_merged_inference(base, overrides, task, inputs, rounds))
    return frames


def bench_merged_inference(base: nn.Module, overrides: list[str], task: str, inputs: dict, rounds: int):
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

        cases.append(Case(name, step, lambda: 0))
    run_interleaved(cases, rounds, warmup=1)
    rows = [{"model": c.name, "forward ms": 1000 * statistics.median(c.wall),
             "time x base": ratio(c, cases[0], "wall"), "cpu x base": ratio(c, cases[0], "cpu")} for c in cases]
    frame = pd.DataFrame(rows)
    print("\n### merged inference (BoRA r=8 b=16 merged into the weights vs. the base model)\n")
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bora bench", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tokens", type=int, default=512, help="tokens per step in the single-layer bench")
    parser.add_argument("--rounds", type=int, default=10, help="timed steps per method (interleaved)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model", default=None,
                        help="model config of the small-model bench (default minilm; with --eval tiny-decoder)")
    parser.add_argument("--layers", type=int, default=None, help="override the model's number of layers")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine a descheduled second OpenMP thread "
                             "stalls every small op, which swamps the ratios; 0 = torch's choice)")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--eval", action="store_true",
                        help="generation time instead of training steps: LoRA, BoRA block form, BoRA LoRA form, "
                             "merged (bora.bench_eval); last line bora_eval_time_x_lora: X")
    parser.add_argument("--new-tokens", type=int, default=32, help="--eval: tokens generated per row")
    args = parser.parse_args(argv)
    run_tool(lambda: _bench(args))


def _bench(args) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    labels = ["lora", "peft-lora"] + [m for m in args.methods if m not in ("lora", "peft-lora")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average before: "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    if args.eval:
        from bora.bench_eval import bench_generation

        bench_generation(args.model or "tiny-decoder", args.layers, args.batch, args.length, args.new_tokens,
                         args.rounds, args.warmup)
        return
    if not args.skip_layers:
        bench_layers(labels, args.tokens, args.rounds, args.warmup)
    if not args.skip_model:
        bench_model(labels, args.model or "minilm", args.batch, args.length, args.rounds, args.warmup, args.layers)
    print(f"\nload average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
