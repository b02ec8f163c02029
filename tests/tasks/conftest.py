"""Fixtures of the task tests: tiny models and the scripts/ modules (real-data fixtures are in tests/conftest.py)."""

import importlib.util
from pathlib import Path

import pytest

from bora.config import load_config
from bora.models import load_model, load_tokenizer


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
