"""Every LLM-Adapters extraction rule, with the edge cases its regexes create."""

import pytest

from bora.errors import BoraError
from bora.tasks import answers


@pytest.mark.parametrize(
    "generation, expected",
    [
        ("There are 7 - 3 = 4 crayons. The answer is 4.", 4.0),  # the LAST number
        ("The answer is 1,234.", 1234.0),  # commas are dropped before matching
        ("It falls to -5 degrees.", -5.0),
        ("Each costs 3.75 dollars.", 3.75),
        ("The answer is 12.", 12.0),  # the sentence's full stop is no decimal part
        ("He has 5. apples", 5.0),  # "5." is a number, as in -?\d+\.?\d*
        ("pages 2-7", -7.0),  # an unspaced hyphen is read as a minus sign, as there
        ("9 - 7", 7.0),
        ("No idea.", None),
        ("", None),
        ("The answer is 4.\n\n### Response:\nThe answer is 9", 4.0),  # cut at a repeated response marker
    ],
)
def test_number_rule(generation, expected):
    assert answers.extract("gsm8k", generation) == expected


@pytest.mark.parametrize(
    "generation, answer, correct",
    [
        ("The answer is 15", "15.0", True),
        ("The answer is 0.6667", "0.6666666666666666", True),  # within the 0.001 tolerance
        ("The answer is 0.67", "0.6666666666666666", False),
        ("The answer is -3", "-3", True),
        ("The answer is 3", "-3", False),
        ("I cannot tell.", "0", False),  # no number is wrong, even for a gold answer of 0
        ("1,000 people", "1000", True),
    ],
)
def test_number_scoring(generation, answer, correct):
    for test_set in ("AddSub", "MultiArith", "SingleEq", "gsm8k", "SVAMP", "toy_arith"):
        assert answers.score(test_set, generation, answer)[1] is correct


@pytest.mark.parametrize(
    "generation, expected",
    [
        ("The answer is (C).", "C"),
        ("Each option... so the answer is (B).", "E"),  # the first capital A-E, inside a word too, as there
        ("the answer is c", None),  # case-sensitive
        ("(D) rather than (A)", "D"),  # several options named: the first
        ("Between (A) and (C)", "B"),  # ... and "Between" names B
        ("Rationale: 2 + 2 = 4", None),
    ],
)
def test_letter_rule(generation, expected):
    assert answers.extract("AQuA", generation) == expected


@pytest.mark.parametrize(
    "test_set, generation, expected",
    [
        ("boolq", "the correct answer is false, not true", "false"),  # the FIRST option named
        ("boolq", "the correct answer is True", None),  # case-sensitive
        ("piqa", "the correct answer is solution2", "solution2"),
        ("social_i_qa", "answer2 rather than answer1", "answer2"),
        ("ARC-Challenge", "the correct answer is answer4", "answer4"),
        ("ARC-Easy", "Answer1", None),
        ("openbookqa", "answer5", "answer5"),
        ("hellaswag", "ending3 or ending1", "ending3"),
        ("winogrande", "the correct answer is option1", "option1"),
        ("winogrande", "option3", None),
        ("piqa", "solution1\n### Response: solution2", "solution1"),
    ],
)
def test_option_rule(test_set, generation, expected):
    assert answers.extract(test_set, generation) == expected


def test_option_answer_compared_as_string():
    assert answers.score("boolq", "the correct answer is true", "true") == ("true", True)
    assert answers.score("boolq", "the correct answer is true", "false") == ("true", False)
    assert answers.score("winogrande", "nothing", "option1") == (None, False)


def test_unknown_test_set_lists_known_names():
    with pytest.raises(BoraError, match=r"unknown test set 'GSM8K'.*gsm8k.*ARC-Challenge"):
        answers.extract("GSM8K", "1")


@pytest.mark.parametrize(
    "test_set, answer, ok",
    [
        ("gsm8k", "18.0", True),
        ("gsm8k", "eighteen", False),
        ("AQuA", "B", True),
        ("AQuA", "F", False),
        ("boolq", "true", True),
        ("boolq", "yes", False),
        ("piqa", 1, False),
    ],
)
def test_check_gold(test_set, answer, ok):
    assert (answers.check_gold(test_set, answer) is None) is ok
