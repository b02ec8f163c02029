"""How a generation task's test questions are asked and answered: the evaluation protocols, each as its source.

A protocol fixes what a number means: the prompt a question is asked with, how questions are batched and padded,
how the answer is cut out of the decoded text, and (through ``${by_protocol:...}`` in conf/task/base/
llm_adapters.yaml) the number of beams, the new-token limit and the adapters' dtype. The prompts are copied from
the sources' files byte for byte (tests/tasks/test_protocols.py holds them as typed-out fixtures):

- ``bora_authors``: the BoRA first author's sibling pipeline, github.com/Leopold1423/toplora-neurips25 at commit
  6bf9f0f489705224a9b6f25f8dff39547bf66ff7 -- ``utils/evaluate_utils.py`` (``generate_prompt_eval``,
  ``evaluate``, ``create_batch``), ``train_llm.py`` (``tokenizer.pad_token_id = 0``, ``padding_side = "left"``,
  ``convert_lora_params_dtype`` from ``utils/train_utils.py``), ``config/lora.yaml`` (test batch 32, bf16
  adapters). Its prompt has no input field; batches of 32 in file order, left-padded with id 0, an attention mask,
  ``do_sample=False``, 256 new tokens; the whole sequence decoded and ``split("### Response:")[-1].strip()``.
- ``llm_adapters``: github.com/AGI-Edgerunners/LLM-Adapters at commit 816657208af4db747803f87ba40a4c71383fed7a --
  ``evaluate.py`` / ``commonsense_evaluate.py`` (``generate_prompt``, ``create_batch``, ``load_model``): its
  prompt, 4 beams, batches in file order left-padded with id 0, the whole sequence decoded and
  ``split("### Response:")[1].strip()``. Not reproduced: it passes no attention mask (transformers infers one from
  the pad id 0, the same mask unless a prompt itself holds token 0) and a ``GenerationConfig`` with
  temperature / top_p / top_k, which greedy and beam search ignore.
- ``training_prompt``: ours -- the training template with an empty response, so train and test prompts agree token
  for token; greedy search; batches longest first (the least padding; an out-of-memory error shows in the first
  batch); the text up to the next ``### Response:``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bora.tasks.answers import RESPONSE_MARKER
from bora.tasks.templates import alpaca_prompt

# toplora-neurips25 utils/evaluate_utils.py generate_prompt_eval: one space after "request.", a 12-space indent,
# blank lines without indentation, 12 spaces after the last line. It has no input field: a record's input is
# dropped, as there (its evaluate_dataset passes instructions only).
_INDENT_12 = " " * 12
BORA_AUTHORS_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n"
    f"{_INDENT_12}### Instruction:\n{_INDENT_12}{{instruction}}\n\n"
    f"{_INDENT_12}### Response:\n{_INDENT_12}"
)
# LLM-Adapters evaluate.py / commonsense_evaluate.py generate_prompt: a 16-space indent, one space after "request."
# (none when there is an input), blank lines without indentation.
_INDENT_16 = " " * 16
LLM_ADAPTERS_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n"
    f"{_INDENT_16}### Instruction:\n{_INDENT_16}{{instruction}}\n\n"
    f"{_INDENT_16}### Response:\n{_INDENT_16}"
)
LLM_ADAPTERS_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    f"{_INDENT_16}### Instruction:\n{_INDENT_16}{{instruction}}\n\n"
    f"{_INDENT_16}### Input:\n{_INDENT_16}{{input}}\n\n"
    f"{_INDENT_16}### Response:\n{_INDENT_16}"
)


def _bora_authors_prompt(instruction: str, input: str = "") -> str:
    return BORA_AUTHORS_PROMPT.format(instruction=instruction)


def _llm_adapters_prompt(instruction: str, input: str = "") -> str:
    return (LLM_ADAPTERS_PROMPT_WITH_INPUT if input else LLM_ADAPTERS_PROMPT).format(
        instruction=instruction, input=input
    )


def _last_response(text: str) -> str:
    return text.split(RESPONSE_MARKER)[-1].strip()


def _first_response(text: str) -> str:
    parts = text.split(RESPONSE_MARKER)
    return (parts[1] if len(parts) > 1 else parts[0]).strip()


@dataclass(frozen=True)
class Protocol:
    name: str
    prompt: Callable[[str, str], str]  # (instruction, input) -> the text the question is asked with
    file_order: bool  # batches of consecutive questions as the source's create_batch; False: longest first
    pad_token_id: int | None  # the id prompts are left-padded with (None: the tokenizer's own pad token)
    cut: Callable[[str], str]  # the decoded prompt + continuation -> the response that is scored

    def response(self, decoded: str) -> str:
        """The answer text of ``decoded``, the whole sequence (prompt and continuation) decoded without special
        tokens, as the source cuts it."""
        return self.cut(decoded)


PROTOCOLS: dict[str, Protocol] = {
    "bora_authors": Protocol("bora_authors", _bora_authors_prompt, file_order=True, pad_token_id=0, cut=_last_response),
    "llm_adapters": Protocol(
        "llm_adapters", _llm_adapters_prompt, file_order=True, pad_token_id=0, cut=_first_response
    ),
    "training_prompt": Protocol(
        "training_prompt", alpaca_prompt, file_order=False, pad_token_id=None, cut=_first_response
    ),
}


def protocol(name) -> Protocol:
    return PROTOCOLS[getattr(name, "value", name)]
