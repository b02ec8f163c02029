# Set-up and the main jobs. `make demo` and `make test` each install everything first (into .venv).
# GPU machines: `make install TORCH_SPEC=torch` (or install your CUDA torch first; the pin below is the CPU wheel).
PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
# Jobs that must never touch a hub (the tiny-model smoke, the tests) run with $(OFFLINE).

.PHONY: install demo smoke tables test data list clean-smoke

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

## The main job on the embedded default: a tiny-model sweep (LoRA vs BoRA x 2 seeds, encoder and decoder), then its table.
demo: install
	$(MAKE) --no-print-directory smoke PY=$(PY)
	$(OFFLINE) $(PY) -m bora.tables --experiment smoke

## A real Hydra multirun on the tiny models, end to end through result files (finished runs are skipped).
smoke:
	$(OFFLINE) $(PY) -m bora.train -m experiment=smoke
	$(OFFLINE) $(PY) -m bora.train -m experiment=smoke-llm

## Render every table from whatever results exist.
tables:
	$(PY) -m bora.tables

## The test suite (offline; under 15 minutes on 2 CPU cores).
test: install
	$(OFFLINE) $(PY) -m pytest -q

## Fetch the LLM-Adapters training and test files into data/llm-adapters (once; checksummed).
data: install
	$(PY) scripts/prepare_data.py
