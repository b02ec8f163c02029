"""Every test runs offline: no hub, no W&B server. Outputs go to a temporary folder."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

# ../shared/data next to the checkout holds real third-party data; tests that need it skip when it is absent.
SHARED_DATA = Path(os.environ.get("BORA_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


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


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Runs started by a test write under its tmp_path, never into the checkout's outputs/ or wandb/."""
    monkeypatch.setenv("BORA_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


@pytest.fixture(scope="session")
def smoke_outputs(tmp_path_factory):
    """The outputs folder of one real `make smoke` (a Hydra multirun on the tiny models), shared by the tests."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("smoke") / "outputs"
    env = {**os.environ, "BORA_OUTPUT_DIR": str(out), "WANDB_DIR": str(out)}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        ["make", "--no-print-directory", "smoke", f"PY={sys.executable}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def pytest_terminal_summary(terminalreporter, config):
    """One line saying what the suite ran on, so a slow CI log can tell a slow machine from a slow test."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    workers = getattr(config.option, "numprocesses", None) or 0
    terminalreporter.write_line(
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {model}; xdist workers: {workers}"
    )
