"""Batched decoding for the generation tasks (greedy or beam search): left padding, attention mask, only the new
tokens decoded."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm  # text bars also in notebooks (tqdm.auto warns there without ipywidgets)
from transformers import GenerationConfig, PreTrainedTokenizerBase


def batched_generate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    batch_size: int,
    max_new_tokens: int,
    desc: str = "generate",
    num_beams: int = 1,
) -> list[str]:
    """The decoded continuation of every prompt (special tokens dropped), in the order of ``prompts``.

    ``num_beams`` 1 is greedy search; more is beam search (LLM-Adapters' evaluate.py uses 4), deterministic too.

    Prompts are batched longest first, so similar lengths share a batch (little padding) and an out-of-memory
    error shows in the first batch rather than at the end.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=num_beams,
        use_cache=True,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    device = next(model.parameters()).device
    generations: list[str] = [""] * len(prompts)
    padding_side, was_training = tokenizer.padding_side, model.training
    tokenizer.padding_side = "left"  # a decoder continues from the last position of every row
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
                texts = tokenizer.batch_decode(output[:, input_ids.shape[1] :], skip_special_tokens=True)
                for row, text in zip(rows, texts):
                    generations[row] = text
                bar.update(len(rows))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return generations
