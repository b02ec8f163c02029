"""The evaluation protocols against their sources: prompts byte for byte, batches, padding, the answer cut, and the
adapter dtype option. The fixtures are typed out from the fetched files (cited in bora.tasks.protocols)."""

import pytest
import torch

from bora.adapters import adapter_parameters, cast_adapters, inject
from bora.config import load_config
from bora.models import load_model
from bora.tasks.generation import generate_ids
from bora.tasks.protocols import PROTOCOLS, protocol

# toplora-neurips25 utils/evaluate_utils.py generate_prompt_eval("Add 2 and 3."), typed out: 12-space indents,
# empty blank lines, 12 spaces at the end, one space after "request.".
BORA_AUTHORS = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n"
    "\n"
    "            ### Instruction:\n"
    "            Add 2 and 3.\n"
    "\n"
    "            ### Response:\n"
    "            "
)
# LLM-Adapters evaluate.py / commonsense_evaluate.py generate_prompt, typed out: 16-space indents.
LLM_ADAPTERS = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n"
    "\n"
    "                ### Instruction:\n"
    "                Add 2 and 3.\n"
    "\n"
    "                ### Response:\n"
    "                "
)
LLM_ADAPTERS_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n"
    "\n"
    "                ### Instruction:\n"
    "                Add.\n"
    "\n"
    "                ### Input:\n"
    "                2 3\n"
    "\n"
    "                ### Response:\n"
    "                "
)
TRAINING = (  # LLM-Adapters finetune.py generate_prompt with an empty output (toplora's finetune_utils.py: the same)
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n"
    "\n"
    "                ### Instruction:\n"
    "                Add 2 and 3.\n"
    "                \n"
    "                ### Response:\n"
    "                "
)


def test_prompts_are_the_sources_bytes():
    assert protocol("bora_authors").prompt("Add 2 and 3.", "") == BORA_AUTHORS
    assert protocol("bora_authors").prompt("Add 2 and 3.", "an input") == BORA_AUTHORS  # it has no input field
    assert protocol("llm_adapters").prompt("Add 2 and 3.", "") == LLM_ADAPTERS
    assert protocol("llm_adapters").prompt("Add.", "2 3") == LLM_ADAPTERS_WITH_INPUT
    assert protocol("training_prompt").prompt("Add 2 and 3.", "") == TRAINING
    # where the texts part: the BoRA authors' evaluation prompt is not the training template
    first = next(i for i, (a, b) in enumerate(zip(BORA_AUTHORS, TRAINING)) if a != b)
    assert first == 106  # "request. " against "request.  "


def test_answer_cut_on_a_repeated_marker():
    decoded = TRAINING + "The answer is 4.\n### Response: The answer is 5.  "
    assert protocol("bora_authors").response(decoded) == "The answer is 5."  # split("### Response:")[-1].strip()
    assert protocol("llm_adapters").response(decoded) == "The answer is 4."  # split("### Response:")[1].strip()
    assert protocol("training_prompt").response(decoded) == "The answer is 4."
    once = BORA_AUTHORS + " The answer is 4. "
    assert {p.response(once) for p in PROTOCOLS.values()} == {"The answer is 4."}


def the_sources_evaluate(model, tokenizer, prompts, max_new_tokens):
    """toplora-neurips25 utils/evaluate_utils.py ``evaluate`` with train_llm.py's tokenizer settings, transcribed:
    one batch, pad id 0 on the left, an attention mask, greedy, the whole sequence decoded and cut at the last
    marker. (Its model.generate takes the model's own generation config; ours names EOS and pad explicitly.)"""
    pad, side = tokenizer.pad_token_id, tokenizer.padding_side
    tokenizer.pad_token_id, tokenizer.padding_side = 0, "left"
    try:
        inputs = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            output_ids = model.generate(
                inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                do_sample=False,
                max_new_tokens=max_new_tokens,
                use_cache=True,
                pad_token_id=tokenizer.eos_token_id,
            )
    finally:
        tokenizer.pad_token_id, tokenizer.padding_side = pad, side
    outputs = tokenizer.batch_decode(output_ids, skip_special_tokens=True)
    return [o.split("### Response:")[-1].strip() for o in outputs]


def test_bora_authors_decoding_equals_the_sources_evaluate(tiny_decoder):
    """Our padded engine under bora_authors (file-order batches, pad 0, the cut of the whole decoded sequence) gives
    the source's responses, batch for batch, for prompts of mixed lengths."""
    _, model, tokenizer = tiny_decoder
    own_pad = tokenizer.pad_token_id
    asked = protocol("bora_authors")
    questions = ["Add 2 and 3.", "What is the sum of twelve and forty one, please?", "Is 7 odd?", "x"]
    prompts = [asked.prompt(q, "") for q in questions]
    ids = generate_ids(
        model,
        tokenizer,
        prompts,
        batch_size=4,
        max_new_tokens=12,
        engine="padded",
        file_order=True,
        pad_token_id=asked.pad_token_id,
    )
    ours = [
        asked.response(tokenizer.decode(tokenizer(p)["input_ids"] + new, skip_special_tokens=True))
        for p, new in zip(prompts, ids)
    ]
    assert ours == the_sources_evaluate(model, tokenizer, prompts, max_new_tokens=12)
    assert len(set(ours)) > 1 and all(len(new) <= 12 for new in ids)
    assert (tokenizer.padding_side, tokenizer.pad_token_id) == ("right", own_pad)  # the tokenizer is left as it was


@pytest.mark.parametrize("method", ["lora", "bora", "dora", "peft"])
def test_bf16_adapters_train_in_bf16_on_a_float32_base(method):
    """trainer.adapter_dtype=bf16: every adapter parameter (DoRA's magnitude, PEFT's lora_ tensors too) is bf16,
    the base stays float32, a forward and backward run and the gradients are bf16, as the source's
    convert_lora_params_dtype leaves them."""
    cfg = load_config(["model=tiny-decoder", "task=toy-math", f"method={method}", "trainer.adapter_dtype=bf16"])
    model = load_model(cfg.model)
    inject(model, cfg.method, cfg.model.targets, total_steps=10)
    cast_adapters(model, cfg.trainer.adapter_dtype)
    adapters = dict(adapter_parameters(model))
    assert adapters and {p.dtype for p in adapters.values()} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n not in adapters)
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert {p.grad.dtype for p in adapters.values() if p.grad is not None} == {torch.bfloat16}
    cast_adapters(model, "fp32")
    assert {p.dtype for _, p in adapter_parameters(model)} == {torch.float32}
