"""The default bench (``bora bench`` without a mode flag): training steps of every method on (a) single linear
layers at realistic widths and (b) a small real-architecture model with the paper's targets, then merged inference
against the base model (see ``bora.bench`` for what is measured and the targets)."""

from __future__ import annotations

import copy
import statistics

import pandas as pd
import torch
from torch import nn

from bora.adapters import inject, merge_adapters
from bora.bench.timing import (
    CPU,
    METHODS,
    Case,
    Runtime,
    arch_overrides,
    method_config,
    random_batch,
    ratio,
    report,
    run_interleaved,
    training_case,
)
from bora.config import load_config
from bora.models import build_from_arch

LAYER_SHAPES = {"q/o 4096->4096": (4096, 4096), "GQA k/v 4096->1024": (4096, 1024)}
MODEL_TASKS = {"encoder": "rte", "decoder": "math"}


class LinearHost(nn.Module):
    """A single frozen ``nn.Linear`` named ``proj``, so ``inject`` can target it like a model's projection."""

    def __init__(self, n: int, m: int):
        super().__init__()
        self.proj = nn.Linear(n, m, bias=False)

    def forward(self, x):
        return self.proj(x)


def bench_layers(
    labels: list[str], tokens: int, rounds: int, warmup: int, runtime: Runtime = CPU
) -> list[pd.DataFrame]:
    frames = []
    target_map = dict.fromkeys("QKVOGUD", "proj")  # IA3 treats `proj` as its feed-forward module
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


def bench_model(
    labels: list[str],
    model_name: str,
    batch: int,
    length: int,
    rounds: int,
    warmup: int,
    layers: int | None,
    runtime: Runtime = CPU,
    vocab: int | None = None,
) -> list[pd.DataFrame]:
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
        cases.append(
            training_case(
                label, copy.deepcopy(base), run, cfg.method, cfg.model.targets, list(inputs.values()), runtime
            )
        )
    run_interleaved(cases, rounds, warmup, runtime=runtime)
    name = f"{model_cfg.name}" + (f" ({layers} layers)" if layers else "")
    targets = load_config([*overrides, f"task={task}"]).method.targets  # the paper's targets for this task
    frames = [report(f"(b) {name}, batch {batch} x {length} tokens, targets {targets} (IA3: KVD)", cases)]
    frames.append(bench_merged_inference(base, overrides, task, inputs, rounds, runtime))
    return frames


def bench_merged_inference(
    base: nn.Module, overrides: list[str], task: str, inputs: dict, rounds: int, runtime: Runtime = CPU
):
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
    rows = [
        {
            "model": c.name,
            "forward ms": 1000 * statistics.median(c.wall),
            "time x base": ratio(c, cases[0], "wall"),
            "cpu x base": ratio(c, cases[0], "cpu"),
        }
        for c in cases
    ]
    frame = pd.DataFrame(rows)
    print("\n### merged inference (BoRA r=8 b=16 merged into the weights vs. the base model)\n")
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    return frame
