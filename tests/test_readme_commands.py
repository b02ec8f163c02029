"""The documented commands run as written: every code block marked ``<!-- runnable -->`` in README.md or a docs page
(docs/**/*.md) runs here, offline.

A marker may carry overrides for the training commands of its block (``<!-- runnable: trainer.max_steps=4 -->``),
appended to every ``bora train`` / ``python -m bora.train`` line so that a long command runs in seconds; nothing
else is changed. A block's commands run one after another, as a reader runs them (a table after the runs it shows),
in the checkout with the project's environment first on PATH (``bora``, ``python``), outputs in a temporary folder
of the block's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- runnable(?::\s*(?P<extra>[^>]*?))?\s*-->\n```bash\n(?P<body>.*?)```", re.S)
TRAIN = re.compile(r"^((?:\S+=\S+\s+)*)(bora train|python -m bora\.train)\b")


def runnable_blocks(readme: str) -> list[tuple[str, list[str]]]:
    """(extra overrides, commands) of every marked block; continuation lines joined, comments kept (bash drops
    them)."""
    blocks = []
    for match in MARKER.finditer(readme):
        commands, current = [], ""
        for line in match.group("body").splitlines():
            current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                if current.strip():
                    commands.append(current.strip())
                current = ""
        blocks.append(((match.group("extra") or "").strip(), commands))
    return blocks


def with_overrides(command: str, extra: str) -> str:
    """Append ``extra`` to a training command, before its trailing comment."""
    if not extra or not TRAIN.match(command):
        return command
    code, _, comment = command.partition("  #")
    return f"{code.rstrip()} {extra}" + (f"  #{comment}" if comment else "")


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = {  # "<page>:<n>" -> the commands of the page's n-th runnable block, overrides applied
    f"{page.relative_to(ROOT)}:{number}": [with_overrides(command, extra) for command in commands]
    for page in PAGES
    for number, (extra, commands) in enumerate(runnable_blocks(page.read_text(encoding="utf-8")), start=1)
}
COMMANDS = [command for commands in BLOCKS.values() for command in commands]


def test_the_pages_mark_runnable_commands():
    assert len(COMMANDS) >= 6
    assert any(c.startswith("bora train") for c in COMMANDS) and any(c.startswith("bora tables") for c in COMMANDS)
    readme = [commands for block, commands in BLOCKS.items() if block.startswith("README.md:")]
    assert readme and any(c.startswith("bora train") for commands in readme for c in commands)  # the quick start
    assert any(not block.startswith("README.md:") for block in BLOCKS)  # the docs pages' blocks are found too


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS)
def test_documented_commands_run_as_written(block, tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BORA_OUTPUT_DIR": str(tmp_path),
        "WANDB_DIR": str(tmp_path),
        "PY": sys.executable,
    }
    for command in BLOCKS[block]:
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{block}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_overrides_go_to_training_commands_only():
    assert (
        with_overrides("bora train -m seed=0,1  # a sweep", "trainer.max_steps=2")
        == "bora train -m seed=0,1 trainer.max_steps=2  # a sweep"
    )
    assert with_overrides("GLUE_DIR=x bora train", "a=1") == "GLUE_DIR=x bora train a=1"
    assert with_overrides("bora plan experiment=table2", "a=1") == "bora plan experiment=table2"
