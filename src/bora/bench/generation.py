"""``bora bench --eval``: generation time of LoRA and BoRA, side by side in one process.

Evaluation, not training, is where paper-scale runs spend their GPU hours (LLM-Adapters' 4,076 math questions, 256 new
tokens each). A frozen BoRA layer is exactly a LoRA of rank ``b r`` (paper eq. 6), and in evaluation it runs as one
(``AdapterLayer.eval_as_lora``); this bench measures what that buys: greedy generation with LoRA (r=8), BoRA (r=8, b=16)
in its training form (the block form on a CPU), BoRA in its LoRA form, and BoRA merged into the weights, interleaved
round by round on one decoder with random weights (timing does not depend on their values; every row generates exactly
``--new-tokens`` tokens). One base model serves all four: each variant's modules are swapped in around its linears
(``bora.bench.swap``), so LLaMA-3-8B fits one GPU once. Generation runs as the project's evaluation does: base weights
in the model's dtype (``--dtype``), adapters in float32, no autocast. The training and LoRA forms must generate the same
tokens; the last line is ``bora_eval_time_x_lora: X``, BoRA's LoRA-form generation time over LoRA's."""

from __future__ import annotations

import statistics

import pandas as pd
import torch
from torch import nn

from bora.adapters import adapter_layers
from bora.bench.swap import AdapterSet
from bora.bench.timing import CPU, Case, arch_overrides, ratio, run_interleaved
from bora.config import load_config
from bora.models import build_from_arch

EVAL_METHODS = {"lora": ["method=lora"], "bora": ["method=bora"]}


def _adapted(base: nn.Module, overrides: list[str], seed: int) -> AdapterSet:
    cfg = load_config(overrides)
    adapters = AdapterSet.inject(base, cfg.method, cfg.model.targets)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # trained-looking adapters: B away from its zero initialisation
        for _, layer in adapter_layers(adapters.host):
            layer.B.copy_(torch.randn(layer.B.shape, generator=generator) * 0.02)
    adapters.host.eval()
    return adapters


def bench_generation(
    model_name: str,
    layers: int | None,
    batch: int,
    prompt_length: int,
    new_tokens: int,
    rounds: int,
    warmup: int,
    runtime=None,
    vocab: int | None = None,
) -> pd.DataFrame:
    runtime = runtime or CPU
    overrides = [f"model={model_name}", "task=math", *arch_overrides(layers, vocab), *runtime.model_overrides()]
    model_cfg = load_config(overrides).model
    if model_cfg.kind != "decoder":
        raise ValueError(f"--eval needs a decoder model; {model_name} is an {model_cfg.kind}")
    base = build_from_arch(model_cfg, device=runtime.device).eval()
    base.requires_grad_(False)
    lora = _adapted(base, [*overrides, *EVAL_METHODS["lora"]], seed=1)
    bora = _adapted(base, [*overrides, *EVAL_METHODS["bora"]], seed=2)
    merged = bora.merged()
    bora_layers = [layer for _, layer in adapter_layers(bora.host)]

    def training_form(on: bool) -> None:  # the training form at every step (the block mix on a CPU; on a GPU the
        # rank-b r factors rebuilt per call, bora.adapters.blocks), as before eq. 6 was cached
        for layer in bora_layers:
            layer.eval_as_lora = not on

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model_cfg.arch.vocab_size, (batch, prompt_length), generator=generator).to(runtime.device)
    pad = model_cfg.arch.get("pad_token_id", 0)
    settings = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad,
    )
    outputs = {}

    def case(name: str, adapters: AdapterSet, training: bool = False) -> Case:
        def step():
            with torch.no_grad():
                outputs[name] = base.generate(**settings)

        def enter():
            adapters.install()
            training_form(training)

        def leave():
            training_form(False)
            adapters.remove()

        return Case(name, step, lambda: 0, enter=enter, leave=leave, measure_peak=False)

    cases = [
        case("lora (r=8)", lora),
        case("bora (r=8, b=16), training form", bora, training=True),
        case("bora, LoRA form", bora),
        case("bora merged", merged),
    ]
    run_interleaved(cases, rounds, warmup, runtime=runtime)
    same = torch.equal(outputs["bora (r=8, b=16), training form"], outputs["bora, LoRA form"])
    rows = [
        {
            "model": c.name,
            "generate ms": 1000 * statistics.median(c.wall),
            "new tokens / s": batch * new_tokens / statistics.median(c.wall),
            "time x lora": ratio(c, cases[0], "wall"),
        }
        for c in cases
    ]
    frame = pd.DataFrame(rows)
    name = (
        model_cfg.name
        + (f" ({layers} layer{'s' * (layers > 1)})" if layers else "")
        + (f", vocabulary {vocab}" if vocab else "")
    )
    print(
        f"\n### generation: {name}, {runtime.device}, {model_cfg.dtype}, batch {batch}, prompt {prompt_length} "
        f"tokens, {new_tokens} new tokens, greedy, targets {load_config(overrides).method.targets}\n"
    )
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    print(f"\nBoRA training form and LoRA form generate the same tokens: {same}")
    print(f"bora_eval_time_x_lora: {frame.loc[2, 'time x lora']:.3f}")
    return frame
