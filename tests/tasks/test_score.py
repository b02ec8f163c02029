"""`python -m bora.score`: re-scores saved generations; one-line errors with exit code 2."""

import json
import re
import subprocess
import sys

import pytest

from bora import score


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def run(*args):
    return subprocess.run([sys.executable, "-m", "bora.score", *args], capture_output=True, text=True)


def test_cli_prints_percent_accuracy_last(tmp_path):
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {"generation": "answer1 it is", "answer": "answer1", "id": 0},
            {"generation": "the correct answer is answer3", "answer": "answer2"},
            {"generation": "answer2", "answer": "answer2"},
        ],
    )
    result = run("--dataset", "ARC-Challenge", "--predictions", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ARC-Challenge: 2/3 correct", "accuracy: 66.67"]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"generation": "5", "answer": "5"}', "{not json"], r"line 2: invalid JSON"),
        (['{"generation": "5"}'], r"line 1: needs a string field 'answer'"),
        (['{"generation": 5, "answer": "5"}'], r"line 1: needs a string field 'generation'"),
        (['["5", "5"]'], r"line 1: expected a JSON object"),
        (['{"generation": "5", "answer": "five"}'], r"line 1: answer 'five' is not a number"),
        ([], r"no predictions"),
    ],
)
def test_bad_file_is_one_line_error(tmp_path, capsys, lines, message):
    path = write_lines(tmp_path / "p.jsonl", lines)
    with pytest.raises(SystemExit) as exit_info:
        score.main(["--dataset", "gsm8k", "--predictions", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err
    assert re.search(message, err)


def test_a_predictions_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_bytes('{"generation": "caf\u00e9 5", "answer": "5"}\n'.encode("latin-1"))
    with pytest.raises(SystemExit) as exit_info:
        score.main(["--dataset", "gsm8k", "--predictions", str(path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and f"{path}: not UTF-8 text" in err


def test_unknown_dataset_and_missing_file(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"generation": "1", "answer": "1"}])
    result = run("--dataset", "GSM8K", "--predictions", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "unknown test set 'GSM8K'; known: AddSub, MultiArith" in result.stderr
    result = run("--dataset", "gsm8k", "--predictions", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2 and "missing.jsonl: no such file" in result.stderr
