"""docs/add-a-method.md works as written: its blocks, applied in order to a copy of the repository, add a method that
trains, shows in a table under its display name and passes every method's adapter checks.

Each block the guide marks ``<!-- add-a-method: create PATH -->`` (the whole new file), ``<!-- add-a-method: edit
PATH -->`` (a diff: its context and ``-`` lines must occur once in PATH, and become its context and ``+`` lines) or
``<!-- add-a-method: run OVERRIDES -->`` (commands, OVERRIDES appended to each ``bora train``) is applied here as
written; a guide that drifts from the code fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "add-a-method.md"
STEP = re.compile(
    r"<!-- add-a-method: (?P<action>create|edit|run)\s*(?P<arg>[^>]*?)\s*-->\n```\w*\n(?P<body>.*?)```", re.S
)


def steps(text: str) -> list[tuple[str, str, str]]:
    return [(m.group("action"), m.group("arg"), m.group("body")) for m in STEP.finditer(text)]


def apply_diff(text: str, diff: str, path: str) -> str:
    """``text`` with the diff's old lines (context and ``-``) replaced by its new lines (context and ``+``)."""
    old, new = [], []
    for line in diff.splitlines():
        sign, content = line[:1], line[1:]
        assert sign in (" ", "-", "+"), f"{path}: a diff line must start with ' ', '-' or '+': {line!r}"
        if sign != "+":
            old.append(content)
        if sign != "-":
            new.append(content)
    before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
    assert text.count(before) == 1, f"the guide's edit of {path} no longer matches the file:\n{before}"
    return text.replace(before, after)


def test_the_guide_has_every_step():
    done = {(action, arg.split("/")[0] if action == "create" else arg) for action, arg, _ in steps(GUIDE.read_text())}
    for step in [
        ("create", "src"),  # the layer
        ("edit", "src/bora/adapters/registry.py"),
        ("create", "conf"),  # conf/method/<name>.yaml
        ("edit", "src/bora/report/aggregate.py"),  # the display name
        ("edit", "tests/adapters/adapter_helpers.py"),
    ]:
        assert step in done, f"docs/add-a-method.md lost its step {step}"
    assert any(action == "run" for action, _, _ in steps(GUIDE.read_text()))


def test_apply_diff_replaces_exactly_the_marked_lines():
    assert apply_diff("a\nb\nc\n", " a\n-b\n+B\n+B2\n c", "x") == "a\nB\nB2\nc\n"
    with pytest.raises(AssertionError, match="no longer matches"):
        apply_diff("a\nc\n", " a\n-b\n c", "x")


@pytest.mark.slow
def test_the_guides_steps_add_a_method_that_trains(tmp_path):
    copy = tmp_path / "repo"
    for folder in ["src", "conf", "data/toy", "tests"]:
        shutil.copytree(
            ROOT / folder,
            copy / folder,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache"),
        )
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    outputs = tmp_path / "outputs"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(copy / "src"),  # bora from the copy, before the checkout's editable install
        "BORA_OUTPUT_DIR": str(outputs),
        "WANDB_DIR": str(tmp_path),
    }
    printed = []
    for action, arg, body in steps(GUIDE.read_text(encoding="utf-8")):
        if action == "create":
            assert not (copy / arg).exists(), f"{arg} exists already: the guide's method is no longer new"
            (copy / arg).write_text(body, encoding="utf-8")
        elif action == "edit":
            (copy / arg).write_text(apply_diff((copy / arg).read_text(encoding="utf-8"), body, arg), encoding="utf-8")
        else:
            for command in body.strip().splitlines():
                code, _, _ = command.partition("  #")
                if code.startswith("bora train"):
                    code = f"{code.rstrip()} {arg}"
                done = subprocess.run(
                    ["bash", "-eo", "pipefail", "-c", code],
                    cwd=copy,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                assert done.returncode == 0, f"{code}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                printed.append(done.stdout)

    records = {
        path.parent.parent.name.split("_")[0]: json.loads(path.read_text())
        for path in (outputs / "default").glob("*/*/*/*/result.json")
    }
    assert set(records) == {"lora", "rslora"}
    assert all(record["status"] == "success" for record in records.values())
    assert records["rslora"]["config"]["method"]["name"] == "rslora"
    assert records["rslora"]["adapter_params"] == records["lora"]["adapter_params"] > 0  # LoRA's parameters
    output = "\n".join(printed)
    assert "rsLoRA (r=8, QV)" in output  # the display name, in the table
    assert re.search(r"\b\d+ passed\b", output) and " failed" not in output  # the adapter checks ran on rsLoRA
    scaling = subprocess.run(
        [
            sys.executable,
            "-c",
            "from torch import nn; from bora.adapters import METHODS; "
            "print(METHODS['rslora'](nn.Linear(4, 4), r=4, alpha=8, dropout=0.0).scaling)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(scaling.stdout) == 8 / 4**0.5  # alpha / sqrt(r), not LoRA's alpha / r
