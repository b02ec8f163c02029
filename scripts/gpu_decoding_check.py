"""Continuous batching against padded batches on a GPU (issue 12): do the two generation engines decode the same
text there, as they do on a CPU (tests/tasks/test_llm_adapters.py)? On CUDA transformers' continuous batching sizes
its paged cache from free GPU memory and may pick other attention kernels than padded ``generate``.

Random-weight llama-style decoders built from config (no hub, no download) with the offline byte tokenizer: the
2-layer CI decoder in float32 and a widened 4-layer one in bfloat16, each plain and with BoRA (r=8, b=4) injected
and its adapter tensors moved off their initialisation so that they act. Prints, per case, how many of the prompts
decode to the same text under both engines and each engine's wall time; exits non-zero when a float32 case differs
(bfloat16 may legitimately flip a near-tied argmax between kernels; it is reported, not failed).

Usage (run by scripts/gpu_check.sh): PYTHONPATH=src python scripts/gpu_decoding_check.py [--device cuda]
"""

import argparse
import sys
import time

import torch

from bora.adapters import adapter_parameters, inject
from bora.config import load_config
from bora.models import build_from_arch, load_tokenizer
from bora.tasks.generation import generate

QUESTIONS = [
    "Add 2 and 3.",
    "What is twelve and forty one?",
    "x",
    "Is 7 odd?",
    "Natalia sold clips to 48 of her friends.",
    "A train leaves at noon and travels 60 miles per hour for three hours. How far does it go?",
    "Hi",
    "Which is larger, 0.5 or 0.45?",
    "Please compute 17 * 23 and explain each step carefully.",
    "yes or no",
]
PROMPT = "Below is an instruction. Write a response.\n\n### Instruction:\n{}\n\n### Response:\n"
WIDE = [
    "model.arch.hidden_size=1024",
    "model.arch.intermediate_size=2816",
    "model.arch.num_hidden_layers=4",
    "model.arch.num_attention_heads=16",
    "model.arch.num_key_value_heads=8",
    "model.dtype=bfloat16",
]


def build(overrides: list[str], method: str | None, device: str):
    method_overrides = [f"method={method}", "method.blocks=4"] if method else []
    cfg = load_config(["model=tiny-decoder", "task=toy-math", *method_overrides, *overrides])
    model = build_from_arch(cfg.model, device=device)
    if method:
        inject(model, cfg.method, cfg.model.targets, total_steps=10)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _, param in adapter_parameters(model):
                param.add_(torch.randn(param.shape, generator=generator).to(param.device))
        model.to(device=device, dtype=next(model.get_input_embeddings().parameters()).dtype)
    return model, load_tokenizer(cfg.model), cfg.model.dtype


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    prompts = [PROMPT.format(q) for q in QUESTIONS] * 2 + QUESTIONS  # 30 prompts, mixed lengths, some repeated
    failed = False
    print(
        f"torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    )
    print("| model | dtype | adapter | identical | padded s | continuous s |\n|:--|:--|:--|--:|--:|--:|")
    for name, overrides in (("tiny-decoder", []), ("tiny-decoder widened", WIDE)):
        for method in (None, "bora"):
            model, tokenizer, dtype = build(overrides, method, args.device)

            def run(engine: str, model=model, tokenizer=tokenizer) -> list[str]:
                return generate(model, tokenizer, prompts, args.batch, args.new_tokens, engine=engine)

            run("padded"), run("continuous")  # warm-up (kernels, cache allocation)
            padded, padded_s = timed(lambda: run("padded"))
            continuous, continuous_s = timed(lambda: run("continuous"))
            same = sum(a == b for a, b in zip(padded, continuous))
            print(
                f"| {name} | {dtype} | {method or '-'} | {same}/{len(prompts)} | {padded_s:.2f} | {continuous_s:.2f} |"
            )
            if dtype == "float32" and same != len(prompts):
                failed = True
                for a, b in zip(padded, continuous):
                    if a != b:
                        print(f"  first difference: padded {a!r} vs continuous {b!r}")
                        break
            del model
    print("continuous_equals_padded_float32:", not failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
