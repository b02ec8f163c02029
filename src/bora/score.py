"""Re-score saved generations of an LLM-Adapters test set without regenerating.

    python -m bora.score --dataset gsm8k --predictions outputs/.../predictions/gsm8k.jsonl

Each line is a JSON object with at least ``generation`` (the model's continuation after the prompt) and
``answer`` (the gold label); where it has ``response`` (the answer text its protocol cut from the whole decoded
sequence, bora.tasks.protocols), that is what is scored. Prints the number correct, then ``accuracy: X`` (percent,
2 decimals) as the last line. Bad input: one line on stderr naming the file and line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bora.errors import BoraError, run_tool
from bora.tasks import answers


def read_predictions(path: Path, test_set: str) -> list[dict]:
    if not path.is_file():
        raise BoraError(f"{path}: no such file")
    try:
        return _read_predictions(path, test_set)
    except UnicodeDecodeError as error:
        raise BoraError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start} of a line); predictions "
            "files are UTF-8 JSON lines"
        ) from None


def _read_predictions(path: Path, test_set: str) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BoraError(f"{path} line {line_number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise BoraError(f"{path} line {line_number}: expected a JSON object")
            for field in ("generation", "answer"):
                if not isinstance(row.get(field), str):
                    raise BoraError(f"{path} line {line_number}: needs a string field {field!r}")
            if "response" in row and not isinstance(row["response"], str):
                raise BoraError(f"{path} line {line_number}: field 'response' must be a string")
            problem = answers.check_gold(test_set, row["answer"])
            if problem:
                raise BoraError(f"{path} line {line_number}: {problem}")
            rows.append(row)
    if not rows:
        raise BoraError(f"{path}: no predictions")
    return rows


def count_correct(test_set: str, rows: list[dict]) -> int:
    """How many rows' generations the test set's rule scores as correct."""
    return sum(answers.score(test_set, row.get("response", row["generation"]), row["answer"])[1] for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bora score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="LLM-Adapters test-set folder name, e.g. gsm8k, ARC-Challenge")
    parser.add_argument("--predictions", required=True, type=Path, help="JSONL file with generation and answer")
    args = parser.parse_args(argv)
    run_tool(lambda: _print_score(args.dataset, args.predictions))


def _print_score(dataset: str, predictions: Path) -> None:
    answers.rule_for(dataset)
    rows = read_predictions(predictions, dataset)
    correct = count_correct(dataset, rows)
    print(f"{dataset}: {correct}/{len(rows)} correct")
    print(f"accuracy: {100 * correct / len(rows):.2f}")


if __name__ == "__main__":
    main()
