"""The training template of the LLM-Adapters tasks: the Alpaca prompt every generation method is trained on.

AGI-Edgerunners/LLM-Adapters finetune.py ``generate_prompt`` (commit 816657208af4db747803f87ba40a4c71383fed7a),
verbatim; the BoRA authors' sibling pipeline (toplora-neurips25 utils/finetune_utils.py) trains on the same text.
Its indentation and trailing spaces are part of what the models learn. How test questions are asked is each
evaluation protocol's own choice (bora.tasks.protocols).
"""

from __future__ import annotations

_INDENT = " " * 16
PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n\n"
    f"{_INDENT}### Instruction:\n{_INDENT}{{instruction}}\n{_INDENT}\n"
    f"{_INDENT}### Response:\n{_INDENT}{{output}}"
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n\n"
    f"{_INDENT}### Instruction:\n{_INDENT}{{instruction}}\n{_INDENT}\n"
    f"{_INDENT}### Input:\n{_INDENT}{{input}}\n{_INDENT}\n"
    f"{_INDENT}### Response:\n{_INDENT}{{output}}"
)


def alpaca_prompt(instruction: str, input: str = "", output: str = "") -> str:
    """The training text of one record (``output`` empty: the prompt part, masked out of the loss)."""
    template = PROMPT_WITH_INPUT if input else PROMPT
    return template.format(instruction=instruction, input=input, output=output)
