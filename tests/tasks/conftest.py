"""Shared fixtures of the task tests: the real data next to the repo (skipped when absent) and tiny models."""

import importlib.util
import os
from pathlib import Path

import pytest

from bora.cli import load_config
from bora.models import load_model, load_tokenizer

SHARED_DATA = Path(os.environ.get("BORA_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set BORA_SHARED_DATA)")
    return path


@pytest.fixture
def shared_glue() -> Path:
    return _shared("glue")


@pytest.fixture
def shared_llm_adapters() -> Path:
    return _shared("llm-adapters")


@pytest.fixture(scope="session")
def tiny_decoder():
    """(config, model, tokenizer) of the tiny llama-style decoder with its fixed random weights, on toy-math."""
    cfg = load_config(["model=tiny-decoder", "task=toy-math"])
    return cfg, load_model(cfg.model), load_tokenizer(cfg.model)


def _load_script(name: str):
    """A module of scripts/ (not a package), imported by path."""
    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def prepare_data():
    return _load_script("prepare_data")


@pytest.fixture(scope="session")
def make_toy_data():
    return _load_script("make_toy_data")
