"""``bora bench --table4``: the paper's Table 4 (LLaMA-3-8B: adapter parameters, peak training memory, training
time) measured on the real architecture with random weights.

Step time and memory do not depend on the weights' values, so the model is built from its config's ``arch`` (no hub,
no download; on CUDA directly on the device). Batch and sequence length are Table 4's: the paper's batch size of 4
(sec. 4.6, one A6000) and Math10K's cutoff of 256 tokens (``task.max_length`` of ``experiment=table4``). The methods
are the table's rows (``conf/experiment/rows/main``) plus BoRA b=8 and PEFT's DoRA (the reference for ours). One base
model serves them all: each method's adapters are built around its linears and swapped in for that method's steps
(``bora.bench.swap``). A step is one batch as the trainer runs it: forward (under bf16 autocast with ``--dtype
bf16``), backward, gradient clipping, AdamW step on the adapters, zero_grad; gradient checkpointing as the model
config sets it. Steps are interleaved round by round; a ratio is the median of the rounds' ratios. Ratios to LoRA
stand beside the paper's (its minutes per epoch and GB over its LoRA row; blank for rows the paper lacks). A second
table gives each method's operators per adapted layer-step (its first adapted layer alone, forward, backward and AdamW:
``bench.timing.layer_ops_per_step``) and the form BoRA and MELoRA train through (``--lora-form``: the LoRA form that
GPUs take, on a CPU too).

Targets (issue 12): BoRA (r=8, b=16) <= 1.01x LoRA's step time and <= 1.005x its peak memory (paper: 1.005x,
1.003x); our DoRA no slower and no larger than PEFT's. The last lines give each as ``name: value``.

``--compile`` (issue 22): then every method once more, eager and through ``torch.compile`` of the whole model (what
``trainer.compile`` does: forward and backward compiled, the optimizer step eager), the two interleaved round by
round, one method after another on a fresh dynamo state (``compiled_pair``). A third table gives each method's compiled
step time over its eager one, the compile time (the first compiled step's wall time less the median compiled step)
and the graph breaks and graphs dynamo compiled for it; the last line is ``bora_compiled_time_x_eager: X``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pandas as pd
import torch
from omegaconf import OmegaConf

from bora.adapters import blocks
from bora.adapters.bora import BoraLayer
from bora.adapters.melora import MeloraLayer
from bora.bench.swap import AdapterSet
from bora.bench.timing import (
    LAYER_OPS,
    Case,
    Runtime,
    arch_overrides,
    layer_ops_per_step,
    ops_per_step,
    random_batch,
    ratio,
    run_interleaved,
    stepping_case,
)
from bora.config import load_config
from bora.config.resolvers import method_tag
from bora.models import build_from_arch
from bora.report.paper import paper_table, paper_tag

# Bench label -> config overrides on top of experiment=table4. The first is the reference of every ratio.
TABLE4 = {
    "lora (r=8)": ["+experiment/rows/main=lora-r8"],
    "bora (r=8, b=8)": ["+experiment/rows/main=bora-r8-b8"],
    "bora (r=8, b=16)": ["+experiment/rows/main=bora-r8-b16"],
    "melora (r=8, 4 blocks)": ["+experiment/rows/main=melora-r8-n4"],
    "hydralora (r=4, 3 heads)": ["+experiment/rows/main=hydralora-r4-h3"],
    "dora (r=8)": ["+experiment/rows/main=dora-r8"],
    "peft-dora (r=8)": ["method=peft", "+method.peft.use_dora=true"],
}
PAPER_BATCH = 4  # sec. 4.6: "an Nvidia A6000 GPU and a batch size of 4" (rows per forward / backward)
LORA, BORA, DORA, PEFT_DORA = "lora (r=8)", "bora (r=8, b=16)", "dora (r=8)", "peft-dora (r=8)"
TARGETS = {  # summary line -> (case, reference, attribute, bound)
    "bora_time_x_lora": (BORA, LORA, "time", 1.01),
    "bora_mem_x_lora": (BORA, LORA, "mem", 1.005),
    "dora_time_x_peft_dora": (DORA, PEFT_DORA, "time", 1.0),
    "dora_mem_x_peft_dora": (DORA, PEFT_DORA, "mem", 1.0),
}


def paper_ratios(targets: str) -> dict[str, dict[str, float]]:
    """Run-directory tag -> the paper's params M, time and memory over its LoRA row (Table 4)."""
    table = paper_table("table4_efficiency.csv")
    lora = table[table["method"] == "LoRA"].iloc[0]
    return {
        paper_tag(row, targets): {
            "paper params M": float(row["params_M"]),
            "paper time x lora": row["time_min"] / lora["time_min"],
            "paper mem x lora": row["memory_GB"] / lora["memory_GB"],
        }
        for _, row in table.iterrows()
    }


@dataclass(frozen=True)
class Compile:
    """``--compile``: ``torch.compile``'s backend and mode (None: torch's default mode)."""

    backend: str = "inductor"
    mode: str | None = None


@dataclass
class CompileWatch:
    """What compiling cost one method: its first compiled step's wall time, and the graph breaks and graphs dynamo
    compiled for it (read around its steps, outside the timed region)."""

    first_s: float | None = None
    graph_breaks: int = 0
    graphs: int = 0
    _before: tuple[int, int] = (0, 0)

    @staticmethod
    def counts() -> tuple[int, int]:
        from torch._dynamo.utils import counters

        return sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"]

    def enter(self) -> None:
        self._before = self.counts()

    def leave(self) -> None:
        breaks, graphs = self.counts()
        self.graph_breaks += breaks - self._before[0]
        self.graphs += graphs - self._before[1]

    def timed_first(self, step, runtime: Runtime):
        def first_timed() -> None:
            if self.first_s is not None:
                return step()
            runtime.sync()
            start = time.perf_counter()
            step()
            runtime.sync()
            self.first_s = time.perf_counter() - start

        return first_timed


def compiled_pair(
    label: str,
    base: torch.nn.Module,
    adapters: AdapterSet,
    run,
    inputs: list[torch.Tensor],
    runtime: Runtime,
    trainer_cfg,
    settings: Compile,
) -> tuple[Case, Case, CompileWatch]:
    """One method eager and compiled (``torch.compile(base)``), on a fresh dynamo state. Each method gets its own:
    compiled code is cached per code object (transformers' decorators share one), and with every method's graphs in
    one cache, once PEFT's DoRA (graph breaks) had compiled, the other methods' compiled steps recompiled nested frames
    at every call and ran at 80-130x their eager time (measured on the tiny decoder)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    watch = CompileWatch()
    compiled = torch.compile(base, backend=settings.backend, mode=settings.mode)

    def enter():
        adapters.install()
        watch.enter()

    def leave():
        watch.leave()
        adapters.remove()

    eager = stepping_case(
        label,
        base,
        adapters.host,
        run,
        inputs,
        runtime,
        trainer_cfg=trainer_cfg,
        enter=adapters.install,
        leave=adapters.remove,
    )
    case = stepping_case(
        f"{label} compiled",
        compiled,
        adapters.host,
        run,
        inputs,
        runtime,
        trainer_cfg=trainer_cfg,
        enter=enter,
        leave=leave,
    )
    case.step = watch.timed_first(case.step, runtime)
    return eager, case, watch


def bench_table4(
    model_name: str,
    rounds: int,
    warmup: int,
    runtime: Runtime,
    layers: int | None = None,
    vocab: int | None = None,
    batch: int | None = None,
    length: int | None = None,
    compile_settings: Compile | None = None,
) -> pd.DataFrame:
    overrides = ["experiment=table4", f"model={model_name}", *arch_overrides(layers, vocab), *runtime.model_overrides()]
    cfg = load_config(overrides)
    batch, length = batch or PAPER_BATCH, length or cfg.task.max_length
    start = time.perf_counter()
    base = build_from_arch(cfg.model, device=runtime.device)
    base.requires_grad_(False)
    if cfg.model.kind == "encoder" and base.config.problem_type is None:
        # what the head sets at its first forward (the batch's labels are class ids); set then, it would fail a guard
        # of the compiled graph (--compile) and compile every method twice
        base.config.problem_type = "single_label_classification"
    checkpointing = bool(cfg.trainer.gradient_checkpointing)
    if checkpointing:  # as the trainer: recompute activations; the frozen embeddings still pass gradients on
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()
    base.train()
    inputs = random_batch(cfg.model, batch, length, runtime.device)
    runtime.sync()
    print(
        f"base model built on {runtime.device} in {time.perf_counter() - start:.1f} s: "
        f"{sum(p.numel() for p in base.parameters()) / 1e9:.2f} B parameters, {cfg.model.dtype}"
    )

    def run(module):
        return module(**inputs).loss

    cases, tags, params, layer_ops, method_sets = [], {}, {}, {}, {}
    for label, method_overrides in TABLE4.items():
        method_cfg = load_config([*overrides, *method_overrides])
        torch.manual_seed(0)
        adapters = AdapterSet.inject(base, method_cfg.method, method_cfg.model.targets)
        adapters.host.train()  # adapter dropout on, as in training
        tags[label] = method_tag(OmegaConf.to_container(method_cfg.method, resolve=True))
        # the host holds the frozen linears and the adapters: its trainable parameters are the adapters', once each
        params[label] = sum(p.numel() for p in adapters.host.parameters() if p.requires_grad)
        first = adapters.names[0]  # one adapted layer alone (a copy): its operators do not depend on the tokens
        layer_ops[label] = {
            "layer": first,
            "form": update_form(adapters.modules[first], runtime.device),
            **layer_ops_per_step(adapters.modules[first], runtime, trainer_cfg=method_cfg.trainer),
        }
        cases.append(
            stepping_case(
                label,
                base,
                adapters.host,
                run,
                list(inputs.values()),
                runtime,
                trainer_cfg=method_cfg.trainer,
                enter=adapters.install,
                leave=adapters.remove,
            )
        )
        method_sets[label] = (adapters, method_cfg.trainer)
    run_interleaved(cases, rounds, warmup, runtime=runtime)
    name = (
        cfg.model.name
        + (f" ({layers} layer{'s' * (layers > 1)})" if layers else "")
        + (f", vocabulary {vocab}" if vocab else "")
    )
    setting = (
        f"batch {batch} x {length} tokens, targets {cfg.method.targets}, {runtime.device}, base "
        f"{cfg.model.dtype}"
        + (", bf16 autocast" if runtime.dtype == "bf16" else "")
        + f", gradient checkpointing {'on' if checkpointing else 'off'}, {rounds} rounds"
        + (
            ", BoRA / MELoRA in the LoRA form where b r (m + n) < m n"
            if runtime.device in blocks.LORA_FORM_DEVICES
            else ", BoRA / MELoRA in the block form"
        )
    )
    ops = {case.name: ops_per_step(case) for case in cases}
    frame = report_table4(
        f"Table 4: {name}, {setting}", cases, tags, params, paper_ratios(cfg.method.targets), ops, layer_ops
    )
    if compile_settings:
        settings = compile_settings
        title = f"torch.compile ({settings.backend}, mode {settings.mode or 'default'}) vs eager: {name}, {setting}"
        print(f"\n{title}: each method eager and compiled, interleaved, {rounds} rounds", flush=True)
        rows = []
        for label, (adapters, trainer_cfg) in method_sets.items():
            eager, compiled, watch = compiled_pair(
                label, base, adapters, run, list(inputs.values()), runtime, trainer_cfg, settings
            )
            run_interleaved([eager, compiled], rounds, max(warmup, 1), runtime=runtime)  # 1st compiled step: untimed
            rows.append(compiled_row(eager, compiled, watch))
            print(
                f"compiled {label}: {rows[-1]['compiled x eager']:.4f}x eager, {rows[-1]['compile s']:.1f} s "
                f"compiling, {watch.graph_breaks} graph breaks",
                flush=True,
            )
        report_compiled(title, rows)
    return frame


def compiled_row(eager: Case, compiled: Case, watch: CompileWatch) -> dict:
    step = statistics.median(compiled.wall)
    return {
        "method": eager.name,
        "eager ms": 1000 * statistics.median(eager.wall),
        "compiled ms": 1000 * step,
        "compiled x eager": ratio(compiled, eager, "wall"),
        "compiled mem x eager": compiled.peak_mb / eager.peak_mb,
        "compile s": (watch.first_s or 0.0) - step,
        "graph breaks": watch.graph_breaks,
        "graphs": watch.graphs,
    }


def report_compiled(title: str, rows: list[dict]) -> pd.DataFrame:
    """Each method's compiled step beside its eager one (the two interleaved in the same rounds)."""
    frame = pd.DataFrame(rows)
    lora = frame.set_index("method").loc[LORA, "compiled ms"]
    frame.insert(4, "compiled ms x lora compiled", frame["compiled ms"] / lora)
    print(f"\n### {title}\n")
    print(frame.to_markdown(index=False, floatfmt=("", ".4g", ".4g", ".4f", ".4f", ".4f", ".1f", "d", "d")))
    print(
        "\ncompiled: torch.compile of the whole model (forward and backward; the optimizer step eager), as "
        "trainer.compile; each method on a fresh dynamo state, its eager and compiled steps interleaved (compiled x "
        "eager: the median of the rounds' ratios; compiled ms x lora compiled: of the medians, methods measured one "
        "after another). compile s: the first compiled step's wall time less the median compiled step. graphs: "
        "what dynamo compiled for the method (a recompilation counts; a graph break adds one).\n"
    )
    value = frame.set_index("method").loc[BORA, "compiled x eager"]
    print(f"bora_compiled_time_x_eager: {value:.4f}")
    return frame


def update_form(layer, device: str) -> str:
    """Which form a BoRA or MELoRA layer trains through on ``device`` (``bora.adapters.blocks``); "-" for others."""
    if not isinstance(layer, (BoraLayer, MeloraLayer)):
        return "-"
    lora_form = device in blocks.LORA_FORM_DEVICES and blocks.lora_form_fits(layer.A, layer.B, layer.blocks)
    return "LoRA" if lora_form else "block"


def report_table4(
    title: str,
    cases: list[Case],
    tags: dict[str, str],
    params: dict[str, int],
    paper: dict[str, dict[str, float]],
    ops: dict[str, int],
    layer_ops: dict[str, dict] | None = None,
) -> pd.DataFrame:
    by_name = {c.name: c for c in cases}
    lora = by_name[LORA]
    rows = []
    for case in cases:
        row = {
            "method": case.name,
            "params M": params[case.name] / 1e6,
            "step ms": 1000 * statistics.median(case.wall),
            "peak GB": case.peak_mb * 2**20 / 1e9,
            "time x lora": ratio(case, lora, "wall"),
            "mem x lora": case.peak_mb / lora.peak_mb,
            "ops / step": ops[case.name],
        }
        row.update(paper.get(tags[case.name], {}))
        rows.append(row)
    frame = pd.DataFrame(
        rows,
        columns=[
            "method",
            "params M",
            "step ms",
            "peak GB",
            "time x lora",
            "mem x lora",
            "ops / step",
            "paper params M",
            "paper time x lora",
            "paper mem x lora",
        ],
    )
    print(f"\n### {title}\n")
    blank = frame.astype(object).where(frame.notna(), None)  # tabulate leaves None blank (a NaN it prints)
    print(
        blank.to_markdown(
            index=False, missingval="", floatfmt=("", ".4g", ".4g", ".4g", ".4f", ".4f", "d", ".4g", ".4f", ".4f")
        )
    )
    print(
        "\nops / step: ATen operators one step dispatches (views excluded). Where the host launching kernels bounds "
        "a step (a small batch on a fast GPU), every extra operator costs time that the flops do not show."
    )
    if layer_ops:
        print_layer_ops(layer_ops)
    print()
    for line, (case, reference, attr, bound) in TARGETS.items():
        value = (
            ratio(by_name[case], by_name[reference], "wall")
            if attr == "time"
            else by_name[case].peak_mb / by_name[reference].peak_mb
        )
        print(f"{line}: {value:.4f}  (target <= {bound}: {'met' if value <= bound else 'MISSED'})")
    return frame


def print_layer_ops(layer_ops: dict[str, dict]) -> None:
    """The operators of one adapted layer-step per method (``timing.layer_ops_per_step``), as a table."""
    rows = [
        {
            "method": label,
            "layer": counts["layer"],
            "form": counts["form"],
            **{phase: counts[phase] for phase in LAYER_OPS},
            "fwd + bwd": counts["forward"] + counts["backward"],
            "total": sum(counts[p] for p in LAYER_OPS),
        }
        for label, counts in layer_ops.items()
    ]
    print("\n### Operators per adapted layer-step (one layer alone; views excluded)\n")
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(
        "\nforward: the frozen base, dropout and the update; backward: to the input and the adapter's parameters; "
        "optimizer: AdamW on the layer's parameters alone (on a CPU a loop of 9 operators per parameter; on a GPU "
        "foreach AdamW groups all the model's parameters, so its share per layer is far smaller). form: the update "
        "form BoRA / MELoRA train through here (bora.adapters.blocks; --lora-form forces the LoRA form)."
    )
