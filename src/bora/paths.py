"""Where bora's own files are: the configs and toy data it ships, and the project folder it works in.

``conf/`` and ``data/toy/`` live at the top of the checkout; ``src/bora/conf`` and ``src/bora/toy_data`` link to
them, so they are package data and an installed wheel carries them too (found through ``importlib.resources``).
The project folder is the checkout bora runs from; an installed wheel has none and works in the current directory
(``data/llm-adapters``, ``results/`` are looked for there; runs write under ``./outputs`` or ``$BORA_OUTPUT_DIR``).
"""

import os
from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path(str(files("bora")))
CONF_DIR = (PACKAGE_DIR / "conf").resolve()
TOY_DATA_DIR = (PACKAGE_DIR / "toy_data").resolve()


def _checkout() -> Path | None:
    root = PACKAGE_DIR.resolve().parents[1]  # <checkout>/src/bora
    return root if (root / "pyproject.toml").is_file() and (root / "conf").is_dir() else None


CHECKOUT: Path | None = _checkout()
PROJECT_ROOT = CHECKOUT or Path.cwd()
DATA_DIR = PROJECT_ROOT / "data"


def unwritable_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot be made (with its parents) and written into, or None: checked before any work (an
    export, rendered tables), so that a bad output folder is one line up front, not an ``OSError`` half way."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None
