"""Answer extraction and scoring of the LLM-Adapters test sets, rule for rule as its evaluation scripts.

The answer text is cut from the decoded sequence as the evaluation protocol says (bora.tasks.protocols: LLM-Adapters'
``split("### Response:")[1]``, the BoRA authors' ``[-1]``); given a bare continuation, ``response_text`` cuts it
at a repeated marker, as ``[1]`` of the whole sequence would. Then, case-sensitively (the rules of LLM-Adapters'
``evaluate.py`` / ``commonsense_evaluate.py`` and of toplora-neurips25 ``utils/evaluate_utils.py`` agree):

- numeric sets: drop commas, take the LAST ``-?\\d+\\.?\\d*``; correct if ``|pred - float(answer)| <= 0.001``;
  no number is wrong;
- AQuA: the FIRST of the capitals A-E anywhere in the text (no word boundary: "Each" answers E, as there);
- multiple choice: the FIRST occurrence of one of the set's option words, compared with ``answer`` as strings.
"""

from __future__ import annotations

import re

from bora.errors import BoraError

RESPONSE_MARKER = "### Response:"
NUMBER = re.compile(r"-?\d+\.?\d*")
LETTER = re.compile(r"A|B|C|D|E")
TOLERANCE = 0.001

# Test-set folder name -> rule: "number", "letter", or the option words of a multiple-choice set.
RULES: dict[str, str | tuple[str, ...]] = {
    "AddSub": "number",
    "MultiArith": "number",
    "SingleEq": "number",
    "gsm8k": "number",
    "SVAMP": "number",
    "AQuA": "letter",
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    "social_i_qa": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "ARC-Challenge": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "ARC-Easy": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "openbookqa": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "hellaswag": ("ending1", "ending2", "ending3", "ending4"),
    "winogrande": ("option1", "option2"),
    "toy_arith": "number",  # our synthetic CI task (scripts/make_toy_data.py)
    "toy_recall": "number",  # the demo's generation task (scripts/make_toy_data.py)
}


def rule_for(test_set: str) -> str | tuple[str, ...]:
    if test_set not in RULES:
        raise BoraError(f"unknown test set {test_set!r}; known: {', '.join(RULES)}")
    return RULES[test_set]


def response_text(generation: str) -> str:
    """The answer part of a generation: up to a repeated ``### Response:`` marker, stripped."""
    return generation.split(RESPONSE_MARKER)[0].strip()


def extract_number(text: str) -> float | None:
    numbers = NUMBER.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def extract_letter(text: str) -> str | None:
    match = LETTER.search(text)
    return match.group(0) if match else None


def extract_option(text: str, options: tuple[str, ...]) -> str | None:
    match = re.search("|".join(map(re.escape, options)), text)
    return match.group(0) if match else None


def extract(test_set: str, generation: str) -> float | str | None:
    """The predicted answer of a generation (None: nothing the rule recognises)."""
    rule = rule_for(test_set)
    text = response_text(generation)
    if rule == "number":
        return extract_number(text)
    if rule == "letter":
        return extract_letter(text)
    return extract_option(text, rule)


def check_gold(test_set: str, answer) -> str | None:
    """Why ``answer`` cannot be a gold label of ``test_set`` (None when it can)."""
    rule = rule_for(test_set)
    if not isinstance(answer, str):
        return f"answer must be a string, got {type(answer).__name__}"
    if rule == "number":
        try:
            float(answer)
        except ValueError:
            return f"answer {answer!r} is not a number"
        return None
    allowed = tuple("ABCDE") if rule == "letter" else rule
    return None if answer in allowed else f"answer {answer!r} is not one of {'/'.join(allowed)}"


def is_correct(test_set: str, prediction: float | str | None, answer: str) -> bool:
    if prediction is None:
        return False
    if rule_for(test_set) == "number":
        return abs(prediction - float(answer)) <= TOLERANCE
    return prediction == answer


def score(test_set: str, generation: str, answer: str) -> tuple[float | str | None, bool]:
    """(extracted prediction, correct?) of one generation."""
    prediction = extract(test_set, generation)
    return prediction, is_correct(test_set, prediction, answer)
