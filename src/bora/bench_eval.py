"""``bora bench --eval``: generation time of LoRA and BoRA, side by side in one process.

Evaluation, not training, is where paper-scale runs spend their GPU hours (LLM-Adapters' 4,076 math questions,
256 new tokens each). A frozen BoRA layer is exactly a LoRA of rank ``b r`` (paper eq. 6), and in evaluation it runs
as one (``AdapterLayer.eval_as_lora``); this bench measures what that buys: greedy generation with LoRA (r=8), BoRA
(r=8, b=16) in its training (block) form, BoRA in its LoRA form, and BoRA merged into the weights, interleaved round
by round on one decoder with random weights (timing does not depend on their values; every row generates exactly
``--new-tokens`` tokens). The block and LoRA forms must generate the same tokens; the last line is
``bora_eval_time_x_lora: X``, BoRA's LoRA-form generation time over LoRA's.
"""

from __future__ import annotations

import copy
import statistics

import pandas as pd
import torch
from torch import nn

from bora.adapters import adapter_layers, inject, merge_adapters
from bora.config import load_config
from bora.models import build_from_arch

EVAL_METHODS = {"lora": ["method=lora"], "bora": ["method=bora"]}


def _adapted(base: nn.Module, overrides: list[str], seed: int) -> nn.Module:
    model = copy.deepcopy(base)
    cfg = load_config(overrides)
    inject(model, cfg.method, cfg.model.targets)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # trained-looking adapters: B away from its zero initialisation
        for _, layer in adapter_layers(model):
            layer.B.copy_(torch.randn(layer.B.shape, generator=generator) * 0.02)
    return model.eval()


def _block_form(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for _, layer in adapter_layers(model):
        layer.eval_as_lora = False  # the training form's block mix at every step, as before eq. 6 was used
    return model


def bench_generation(model_name: str, layers: int | None, batch: int, prompt_length: int, new_tokens: int,
                     rounds: int, warmup: int) -> pd.DataFrame:
    from bora.bench import Case, ratio, run_interleaved

    overrides = [f"model={model_name}", "task=math"] + ([f"++model.arch.num_hidden_layers={layers}"] if layers else [])
    model_cfg = load_config(overrides).model
    if model_cfg.kind != "decoder":
        raise ValueError(f"--eval needs a decoder model; {model_name} is an {model_cfg.kind}")
    base = build_from_arch(model_cfg).eval()
    lora = _adapted(base, [*overrides, *EVAL_METHODS["lora"]], seed=1)
    bora = _adapted(base, [*overrides, *EVAL_METHODS["bora"]], seed=2)
    models = {"lora (r=8)": lora, "bora (r=8, b=16), block form": _block_form(bora),
              "bora, LoRA form": bora, "bora merged": merge_adapters(copy.deepcopy(bora))}
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model_cfg.arch.vocab_size, (batch, prompt_length), generator=generator)
    pad = model_cfg.arch.get("pad_token_id", 0)
    settings = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=pad)
    outputs = {}

    def case(name: str, model: nn.Module) -> Case:
        def step():
            with torch.no_grad():
                outputs[name] = model.generate(**settings)
        return Case(name, step, lambda: 0)

    cases = [case(name, model) for name, model in models.items()]
    run_interleaved(cases, rounds, warmup)
    same = torch.equal(outputs["bora (r=8, b=16), block form"], outputs["bora, LoRA form"])
    rows = [{"model": c.name, "generate ms": 1000 * statistics.median(c.wall),
             "new tokens / s": batch * new_tokens / statistics.median(c.wall),
             "time x lora": ratio(c, cases[0], "wall")} for c in cases]
    frame = pd.DataFrame(rows)
    name = model_cfg.name + (f" ({layers} layers)" if layers else "")
    print(f"\n### generation: {name}, batch {batch}, prompt {prompt_length} tokens, {new_tokens} new tokens, "
          f"greedy, targets {load_config(overrides).method.targets}\n")
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    print(f"\nBoRA block form and LoRA form generate the same tokens: {same}")
    print(f"bora_eval_time_x_lora: {frame.loc[2, 'time x lora']:.3f}")
    return frame
