"""Write the synthetic CI tasks under data/toy/ (deterministic: the same files on every run and machine).

- glue/SST-2/{train,dev}.tsv: keyword sentiment in the SST-2 TSV layout (read by the real GLUE TSV loader);
- llm-adapters/toy_arith_train.json and llm-adapters/test/toy_arith/test.json: one-digit addition and
  subtraction word problems in the LLM-Adapters JSON format, scored by the numeric rule (the tiny decoder learns
  their format, not the arithmetic: below the majority answer);
- llm-adapters/toy_recall_train.json and llm-adapters/test/toy_recall/test.json: the same stories stating one
  count three times, answered by that digit alone (the demo's generation task: the tiny decoder learns it in 150
  steps, well above the majority answer).

All are small; the tiny random-weight models train on them in seconds.

    python scripts/make_toy_data.py [--out data/toy]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 0
SIZES = {"train": 400, "dev": 100}  # rows per split, both tasks

POSITIVE = ["good", "great", "fun", "lovely", "superb", "nice", "brilliant", "charming"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "weak", "terrible", "messy"]
SUBJECTS = ["the film", "this movie", "the plot", "the cast", "the story", "the music", "the ending", "this show"]
VERBS = ["is", "was", "feels", "seemed", "looks"]
FILLERS = ["", " overall", " to me", " at times", " in the end"]

NAMES = ["Tom", "Ann", "Bob", "Mia", "Sam", "Eva", "Max", "Zoe"]
THINGS = ["apples", "books", "coins", "pens", "cards", "shells", "stamps", "cups"]


def sentiment_rows(rng: random.Random, n: int) -> list[tuple[str, int]]:
    """(sentence, label) with label 1 for a positive and 0 for a negative adjective, classes balanced."""
    rows = []
    for i in range(n):
        label = i % 2
        first, second = rng.sample(POSITIVE if label else NEGATIVE, 2)
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {first} and {second} ."
        rows.append((sentence, label))
    rng.shuffle(rows)
    return rows


def arithmetic_records(rng: random.Random, n: int) -> list[dict]:
    """Word problems ``a + b`` (gets more) or ``a - b`` (gives away); operands and results 0-9, results uniform."""
    records = []
    for _ in range(n):
        name, things, result = rng.choice(NAMES), rng.choice(THINGS), rng.randint(0, 9)
        if rng.random() < 0.5:
            a = rng.randint(0, result)
            b = result - a
            story, equation = f"{name} gets {b} more", f"{a} + {b} = {result}"
        else:
            a = rng.randint(result, 9)
            b = a - result
            story, equation = f"{name} gives away {b}", f"{a} - {b} = {result}"
        records.append(
            {
                "instruction": f"{name} has {a} {things}. {story}. How many {things} does {name} have now?",
                "input": "",
                "output": f"{equation}. The answer is {result}",
                "answer": str(result),
            }
        )
    return records


def recall_records(rng: random.Random, n: int) -> list[dict]:
    """``<name> has <d> <things>.`` three times, then the question; the output is the digit alone. Copying the one
    digit of a ~300-byte prompt is what LoRA on a 2-layer random decoder's attention learns in 150 steps (with one
    mention, or with "The answer is d" as the output, it stays at the majority answer)."""
    records = []
    for _ in range(n):
        name, things, count = rng.choice(NAMES), rng.choice(THINGS), rng.randint(0, 9)
        story = " ".join([f"{name} has {count} {things}."] * 3)
        records.append(
            {
                "instruction": f"{story} How many {things} does {name} have?",
                "input": "",
                "output": str(count),
                "answer": str(count),
            }
        )
    return records


def write_toy_data(out: Path) -> list[Path]:
    """Write every toy file under ``out`` and return their paths."""
    rng = random.Random(SEED)
    written = []
    for split, n in SIZES.items():
        path = out / "glue" / "SST-2" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["sentence\tlabel"] + [f"{sentence}\t{label}" for sentence, label in sentiment_rows(rng, n)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    arithmetic = {
        out / "llm-adapters" / "toy_arith_train.json": arithmetic_records(rng, SIZES["train"]),
        out / "llm-adapters" / "test" / "toy_arith" / "test.json": arithmetic_records(rng, SIZES["dev"]),
    }
    recall = {  # drawn after the others, so that their files stay as they were
        out / "llm-adapters" / "toy_recall_train.json": recall_records(rng, SIZES["train"]),
        out / "llm-adapters" / "test" / "toy_recall" / "test.json": recall_records(rng, SIZES["dev"]),
    }
    for path, records in {**arithmetic, **recall}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "toy")
    for path in write_toy_data(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
