"""``python -m bora.bench``: training-step time and peak memory of every method, side by side in one process.

The command line of ``bora bench`` (the line above is its ``--help`` description): the default bench
(``bora.bench.steps``) or the one mode asked for, ``--table4`` (``bora.bench.table4``), ``--eval``
(``bora.bench.generation``), ``--decoding`` (``bora.bench.decoding``), ``--train-path`` (``bora.bench.train_path``)
or ``--dropout`` (``bora.bench.dropout``), each imported only when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os

import torch

from bora.adapters import blocks
from bora.bench.timing import DTYPES, METHODS, Runtime, check_device
from bora.config.schema import COMPILE_MODES
from bora.errors import run_tool


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
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(METHODS),
        help="methods of the default bench (default: all; --table4, --eval and --decoding each "
        "measure their own fixed set)",
    )
    parser.add_argument("--tokens", type=positive, default=512, help="tokens per step in the single-layer bench")
    parser.add_argument("--rounds", type=positive, default=10, help="timed steps per method (interleaved)")
    parser.add_argument("--warmup", type=at_least_zero, default=2)
    parser.add_argument(
        "--model",
        default=None,
        help="model config of the small-model bench (default minilm; "
        "with --eval tiny-decoder; with --table4 llama-3-8b)",
    )
    parser.add_argument("--layers", type=positive, default=None, help="override the model's number of layers")
    parser.add_argument(
        "--vocab",
        type=positive,
        default=None,
        help="override the model's vocabulary size (on a CPU the 128k-token embedding and head of "
        "LLaMA-3-8B dominate a shortened model)",
    )
    parser.add_argument(
        "--batch", type=positive, default=None, help="rows per step (default 8; --table4: the paper's 4)"
    )
    parser.add_argument(
        "--length",
        type=positive,
        default=None,
        help="tokens per row (default 64; --table4: the paper's cutoff 256; --eval: the prompt)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default=None,
        help="base weights: fp32, or bf16 under bf16 autocast as trainer.precision=bf16 (adapters "
        "stay float32); default: the model config's dtype without autocast (--table4: bf16 on "
        "cuda, fp32 on cpu)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine a descheduled second OpenMP thread "
        "stalls every small op, which swamps the ratios; 0 = torch's choice)",
    )
    parser.add_argument(
        "--lora-form",
        action="store_true",
        help="BoRA and MELoRA train through the rank-b r LoRA form on --device too (bora.adapters."
        "blocks.LORA_FORM_DEVICES; default: on cuda only): a GPU's code path, run and counted "
        "(--table4's operators per adapted layer-step) on a CPU",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="--table4: every method eager and through torch.compile of the whole model (as "
        "trainer.compile), interleaved; prints compiled / eager per method, compile time and "
        "graph breaks; last line bora_compiled_time_x_eager: X",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="--compile: the torch.compile backend (default inductor; aot_eager: graph capture and "
        "AOTAutograd without code generation, quick on a CPU)",
    )
    parser.add_argument(
        "--compile-mode",
        default=None,
        choices=list(COMPILE_MODES),
        help="--compile: the torch.compile mode (default: torch's; reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument(
        "--table4",
        action="store_true",
        help="the paper's Table 4 on the full architecture with random weights (bora.bench.table4): "
        "step time and peak memory of LoRA, BoRA b=8 / b=16, MELoRA, HydraLoRA, DoRA, PEFT's "
        "DoRA, with ratios to LoRA beside the paper's",
    )
    parser.add_argument(
        "--eval",
        action="store_true",
        help="generation time instead of training steps: LoRA, BoRA training form, BoRA LoRA form, "
        "merged (bora.bench.generation); last line bora_eval_time_x_lora: X",
    )
    parser.add_argument(
        "--decoding",
        action="store_true",
        help="the generation engines side by side, continuous batching vs padded batches, on real "
        "gsm8k questions (bora.bench.decoding; default model smollm2-135m); last line "
        "continuous_time_x_padded: X",
    )
    parser.add_argument(
        "--train-path",
        action="store_true",
        help="BoRA r=8 b=16 against LoRA r=8 through bora train's own step (the Trainer, our callbacks "
        "and guards; bora.bench.train_path), trainers taking turns step by step, CPU time per "
        "thread (default model minilm, batch 32 x 128); last line bora_train_path_cpu_x_lora: X",
    )
    parser.add_argument(
        "--dropout",
        action="store_true",
        help="what the adapters' dropout (p=0.05) costs and whether the same mask can be drawn "
        "cheaper: ways of drawing it side by side, and the model step with / without it "
        "(bora.bench.dropout; CPU; default model minilm, batch 32 x 128); last line "
        "dropout_share_of_step: X",
    )
    parser.add_argument("--questions", type=positive, default=32, help="--decoding: test questions decoded")
    parser.add_argument("--prompt", choices=["chat", "alpaca"], default="chat", help="--decoding: prompt template")
    parser.add_argument(
        "--new-tokens",
        type=positive,
        default=None,
        help="--eval: tokens generated per row (default 32); --decoding: the limit (default 256)",
    )
    args = parser.parse_args(argv)
    modes = [flag for flag in ("table4", "eval", "decoding", "train_path", "dropout") if getattr(args, flag)]
    if len(modes) > 1:
        parser.error("--table4, --eval, --decoding, --train-path and --dropout are separate benches; pass one of them")
    if args.methods and modes:
        parser.error(
            f"--methods picks the methods of the default bench only; --{modes[0].replace('_', '-')} "
            "measures its own fixed set: drop --methods"
        )
    if (args.compile or args.compile_mode or args.compile_backend != "inductor") and not args.table4:
        parser.error(
            "--compile (and --compile-backend, --compile-mode) times the --table4 bench compiled: add --table4"
        )
    args.methods = args.methods or list(METHODS)
    run_tool(lambda: _bench(args))


def _bench(args) -> None:
    with blocks.lora_form_on(args.device) if args.lora_form else contextlib.nullcontext():
        _run_bench(args)


def _run_bench(args) -> None:
    check_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    labels = ["lora", "peft-lora"] + [m for m in args.methods if m not in ("lora", "peft-lora")]
    where = (
        f"{torch.cuda.get_device_name()}, " if args.device == "cuda" else ""
    ) + f"{torch.get_num_threads()} thread(s)"
    print(
        f"torch {torch.__version__}, {where}, load average before: "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores"
    )
    if args.table4:
        from bora.bench.table4 import Compile, bench_table4

        dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
        compiling = args.compile or args.compile_mode or args.compile_backend != "inductor"
        bench_table4(
            args.model or "llama-3-8b",
            args.rounds,
            args.warmup,
            Runtime(args.device, dtype),
            layers=args.layers,
            vocab=args.vocab,
            batch=args.batch,
            length=args.length,
            compile_settings=Compile(args.compile_backend, args.compile_mode) if compiling else None,
        )
        return
    if args.train_path:
        from bora.bench.train_path import bench_train_path

        bench_train_path(
            args.model or "minilm",
            args.batch or 32,
            args.length or 128,
            args.rounds,
            args.warmup,
            args.layers,
            Runtime(args.device, args.dtype),
        )
        return
    if args.dropout:
        from bora.bench.dropout import bench_dropout

        bench_dropout(
            args.rounds,
            args.warmup,
            Runtime(args.device, args.dtype),
            model=args.model or "minilm",
            batch=args.batch or 32,
            length=args.length or 128,
            layers=args.layers,
            vocab=args.vocab,
        )
        return
    batch, length = args.batch or 8, args.length or 64
    if args.decoding:
        from bora.bench.decoding import bench_decoding

        bench_decoding(
            args.model or "smollm2-135m", args.questions, batch, args.new_tokens or 256, args.rounds, args.prompt
        )
        return
    runtime = Runtime(args.device, args.dtype)
    if args.eval:
        from bora.bench.generation import bench_generation

        bench_generation(
            args.model or "tiny-decoder",
            args.layers,
            batch,
            length,
            args.new_tokens or 32,
            args.rounds,
            args.warmup,
            runtime=runtime,
            vocab=args.vocab,
        )
        return
    from bora.bench.steps import bench_layers, bench_model

    if not args.skip_layers:
        bench_layers(labels, args.tokens, args.rounds, args.warmup, runtime)
    if not args.skip_model:
        bench_model(
            labels, args.model or "minilm", batch, length, args.rounds, args.warmup, args.layers, runtime, args.vocab
        )
    print(f"\nload average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
