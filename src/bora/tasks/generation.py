"""Decoding the test questions of the generation tasks: two engines, the same predictions.

- ``continuous``: transformers' continuous batching (``generate_batch``, paged attention): up to ``batch_size``
  questions decode at once and a finished one hands its slot to the next, so no batch waits for its one runaway row
  (LLM-Adapters allows 256 new tokens). Greedy search only.
- ``padded``: batches of ``batch_size`` prompts, longest first, left padding, ``model.generate``; greedy or beam search.

``task.generation_engine=auto`` (default) takes ``continuous`` for greedy search on a CPU and ``padded`` otherwise
(beams; any GPU). Measured on a CPU (SmolLM2-135M-Instruct, 32 gsm8k questions, batch 8, up to 256 new tokens,
answers of 32-256 tokens): continuous 312 s against padded 380 s (0.82x), identical generations for all 32; when
every row runs to the limit there is nothing to refill and continuous costs more per token (1.4x, 96 tokens each).
Measured on an H100 and an H200 (scripts/gpu_decoding_check.py, random-weight decoders that never stop early, 30
prompts): continuous took 1.3x-11x padded's time, and in bfloat16 it decoded other text than padded batches for
0-18 of 30 prompts (float32: all identical); no GPU measurement has shown it ahead, so a GPU takes padded batches
unless ``continuous`` is asked for.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from tqdm import tqdm  # text bars also in notebooks (tqdm.auto warns there without ipywidgets)
from transformers import GenerationConfig, PreTrainedTokenizerBase

from bora.config.schema import GenerationEngine
from bora.errors import BoraError

ENGINES = tuple(engine.value for engine in GenerationEngine)  # task.generation_engine
PAGE_TOKENS = 32  # KV-cache page on a CPU; transformers sizes the cache from free GPU memory on a GPU


def generate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    batch_size: int,
    max_new_tokens: int,
    desc: str = "generate",
    num_beams: int = 1,
    engine: str = "auto",
    file_order: bool = False,
    pad_token_id: int | None = None,
) -> list[str]:
    """The decoded continuation of every prompt (special tokens dropped), in the order of ``prompts``."""
    ids = generate_ids(
        model, tokenizer, prompts, batch_size, max_new_tokens, desc, num_beams, engine, file_order, pad_token_id
    )
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def generate_ids(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    batch_size: int,
    max_new_tokens: int,
    desc: str = "generate",
    num_beams: int = 1,
    engine: str = "auto",
    file_order: bool = False,
    pad_token_id: int | None = None,
) -> list[list[int]]:
    """The new token ids of every prompt, each ending at its first EOS (kept) or at ``max_new_tokens``.

    ``file_order`` and ``pad_token_id`` shape the ``padded`` engine's batches (a protocol's, bora.tasks.protocols):
    consecutive prompts (else longest first), left-padded with that id (else the tokenizer's pad token)."""
    if engine not in ENGINES:
        raise BoraError(f"task.generation_engine={engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "continuous" and num_beams != 1:
        raise BoraError(
            f"task.generation_engine=continuous decodes greedily only, but task.num_beams={num_beams}; "
            "use task.generation_engine=padded (or auto) for beam search"
        )
    on_cpu = next(model.parameters()).device.type == "cpu"
    if chosen_engine(engine, num_beams, on_cpu) == "padded":
        return batched_generate_ids(
            model, tokenizer, prompts, batch_size, max_new_tokens, desc, num_beams, file_order, pad_token_id
        )
    return continuous_generate_ids(model, tokenizer, prompts, batch_size, max_new_tokens, desc)


def chosen_engine(engine: str, num_beams: int, on_cpu: bool) -> str:
    """The engine ``generate_ids`` decodes with: ``auto`` is ``continuous`` for greedy search on a CPU, else
    ``padded`` (what a run records as ``generation_engine.used``)."""
    if engine == "auto":
        return "continuous" if num_beams == 1 and on_cpu else "padded"
    return engine


def until_eos(ids: list[int], eos_token_id: int | None) -> list[int]:
    """``ids`` up to and including the first EOS (what follows it is padding of a finished row)."""
    if eos_token_id is not None and eos_token_id in ids:
        return ids[: ids.index(eos_token_id) + 1]
    return ids


def continuous_generate(model, tokenizer, prompts, batch_size, max_new_tokens, desc="generate") -> list[str]:
    """``continuous_generate_ids``, decoded (special tokens dropped)."""
    ids = continuous_generate_ids(model, tokenizer, prompts, batch_size, max_new_tokens, desc)
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def continuous_generate_ids(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    batch_size: int,
    max_new_tokens: int,
    desc: str = "generate",
) -> list[list[int]]:
    """Greedy decoding with transformers' continuous batching, at most ``batch_size`` questions at a time."""
    from transformers import ContinuousBatchingConfig

    if not prompts:
        return []
    ids = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    cache = {"max_requests_per_batch": batch_size}
    if next(model.parameters()).device.type == "cpu":
        # Sized from the memory it needs: left to itself on a CPU, the cache sizes for all of host memory and a
        # tiny model spends seconds per question on it.
        longest = max(map(len, ids)) + max_new_tokens
        cache |= {
            "page_size": PAGE_TOKENS,
            "num_blocks": batch_size * math.ceil(longest / PAGE_TOKENS) + 1,
            "max_batch_tokens": batch_size * 2 * PAGE_TOKENS,
            "use_async_batching": False,
            "use_cuda_graph": False,
        }
    was_training = model.training
    model.eval()
    try:
        with _labelled_bar(desc):
            outputs = model.generate_batch(
                inputs=ids,
                generation_config=config,
                warmup=False,
                continuous_batching_config=ContinuousBatchingConfig(**cache),
                progress_bar=True,
            )
    finally:
        model.train(was_training)
    # generate_batch logs a failure instead of raising, and returns the finished requests in input order
    failed = [index for index, output in enumerate(outputs.values()) if output.error]
    if len(outputs) != len(prompts) or failed:
        raise BoraError(
            f"{desc}: continuous batching returned {len(outputs) - len(failed)} of {len(prompts)} "
            "generations (see the log above); task.generation_engine=padded decodes without it"
        )
    return [until_eos(list(output.generated_tokens), tokenizer.eos_token_id) for output in outputs.values()]


@contextlib.contextmanager
def _labelled_bar(desc: str):
    """transformers' continuous batching names its bar "Solving N requests": name the test set instead, as the
    padded engine's bar does (its ``tqdm`` is looked up in its module at each call)."""
    from transformers.generation.continuous_batching import continuous_api

    plain = continuous_api.tqdm

    def labelled(*args, **kwargs):
        kwargs["desc"] = f"{desc} (continuous batching)"
        return plain(*args, **kwargs)

    continuous_api.tqdm = labelled
    try:
        yield
    finally:
        continuous_api.tqdm = plain


def batched_generate(
    model,
    tokenizer,
    prompts,
    batch_size,
    max_new_tokens,
    desc="generate",
    num_beams=1,
    file_order=False,
    pad_token_id=None,
) -> list[str]:
    """``batched_generate_ids``, decoded (special tokens dropped)."""
    ids = batched_generate_ids(
        model, tokenizer, prompts, batch_size, max_new_tokens, desc, num_beams, file_order, pad_token_id
    )
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def batched_generate_ids(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    batch_size: int,
    max_new_tokens: int,
    desc: str = "generate",
    num_beams: int = 1,
    file_order: bool = False,
    pad_token_id: int | None = None,
) -> list[list[int]]:
    """The ``padded`` engine: the new token ids of every prompt, in order.

    ``num_beams`` 1 is greedy search; more is beam search (LLM-Adapters' evaluate.py uses 4), deterministic too.

    Prompts are batched longest first, so similar lengths share a batch (little padding) and an out-of-memory
    error shows in the first batch rather than at the end; ``file_order`` batches consecutive prompts instead, as
    the sources' ``create_batch`` (in bf16 on a GPU a row's neighbours can change its rounding, so a protocol's
    batches are kept). Rows are left-padded with ``pad_token_id`` (the sources' 0) or the tokenizer's pad token.
    """
    own_pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=num_beams,
        use_cache=True,
        pad_token_id=own_pad,
        eos_token_id=tokenizer.eos_token_id,
    )
    order = list(range(len(prompts)))
    if not file_order:
        order.sort(key=lambda i: len(prompts[i]), reverse=True)
    device = next(model.parameters()).device
    generated: list[list[int]] = [[] for _ in prompts]
    padding_side, pad_before, was_training = tokenizer.padding_side, tokenizer.pad_token_id, model.training
    tokenizer.padding_side = "left"  # a decoder continues from the last position of every row
    if pad_token_id is not None:
        tokenizer.pad_token_id = pad_token_id
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(prompts), desc=desc, unit="ex") as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True)
                input_ids = batch["input_ids"].to(device)
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=batch["attention_mask"].to(device),
                    generation_config=config,
                )
                for row, new in zip(rows, output[:, input_ids.shape[1] :].tolist()):
                    generated[row] = until_eos(new, tokenizer.eos_token_id)
                bar.update(len(rows))
    finally:
        tokenizer.padding_side = padding_side
        tokenizer.pad_token_id = pad_before
        model.train(was_training)
    return generated
