"""Every test runs offline: no hub, no W&B server. Outputs go to a temporary folder."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Runs started by a test write under its tmp_path, never into the checkout's outputs/ or wandb/."""
    monkeypatch.setenv("BORA_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
