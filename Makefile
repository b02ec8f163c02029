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

## Render every paper table, figure, the claims check and each experiment's summary from whatever results exist,
## into $(BORA_OUTPUT_DIR)/tables (default outputs/tables). Missing results show as "—".
tables:
	$(OFFLINE) $(PY) -m bora.tables

## Paper artefacts: `make reproduce-table1` ... `reproduce-table9`, `reproduce-figure4` run the missing runs of that
## sweep (conf/experiment/<name>.yaml; finished runs are skipped), then render it. Paper-scale runs need GPUs.
## Tables 5 and 6 are the standard deviations of Tables 1 and 2-3 (same runs); Figure 3(b) comes with Table 9.
PAPER := table1 table2 table3 table4 table5 table6 table7 table8 table9 figure4
EXPERIMENTS := table1 table2 table3 table4 table7 table8 table9 figure4
SWEEPS_table5 := table1
SWEEPS_table6 := table2 table3
sweeps = $(or $(SWEEPS_$(1)),$(1))
comma := ,
space := $(subst ,, )
renders = $(1) $(if $(filter table9,$(1)),figure3b)
.PHONY: $(addprefix reproduce-,$(PAPER))
$(addprefix reproduce-,$(PAPER)): reproduce-%:
	@for experiment in $(call sweeps,$*); do \
		echo "python -m bora.train -m experiment=$$experiment"; $(PY) -m bora.train -m experiment=$$experiment || exit 1; \
	done
	@for table in $(call renders,$*); do $(OFFLINE) $(PY) -m bora.tables --table $$table || exit 1; done

## What each reproduce target runs, and how many of its runs are done (python -m bora.plan experiment=X for the list).
list:
	@$(foreach t,$(PAPER),echo "reproduce-$(t): $(foreach e,$(call sweeps,$(t)),bora.train -m experiment=$(e);) \
		$(foreach r,$(call renders,$(t)),bora.tables --table $(r);)";)
	@$(OFFLINE) $(PY) -m bora.plan --summaries $(subst $(space),$(comma),$(EXPERIMENTS) smoke smoke-llm)

## The test suite (offline; under 15 minutes on 2 CPU cores).
test: install
	$(OFFLINE) $(PY) -m pytest -q

## Fetch the LLM-Adapters training and test files into data/llm-adapters (once; checksummed).
data: install
	$(PY) scripts/prepare_data.py
