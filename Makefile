# Set-up and the main jobs. `make demo` and `make test` each install everything first (into .venv), from the lock:
# torch (requirements/torch-cpu.txt, or TORCH_INDEX's build of the same release), then requirements/lock.txt.
# GPU machines: `make install TORCH_INDEX=https://download.pytorch.org/whl/cu126` (CUDA 12.6; .../cu130 for CUDA 13:
# PyTorch's install matrix lists the builds of each release). TORCH_INDEX=cpu keeps the CPU build on a GPU machine.
PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
TORCH_INDEX ?=
TORCH_VERSION ?= $(shell sed -n 's/^torch==\([^+ ]*\).*/\1/p' requirements/torch-cpu.txt)
PYTORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
LOCK := requirements/lock.txt requirements/torch-cpu.txt
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
# Jobs that must never touch a hub (the tiny-model smoke, the tests) run with $(OFFLINE).

.PHONY: install demo smoke tables test lint hooks lock data list clean-smoke notebook wandb-sync

install: $(VENV)/.installed

# With no TORCH_INDEX the CPU build is installed: on a machine with an NVIDIA GPU that would silently lose the GPU,
# so stop and say how to choose. The venv is rebuilt from scratch whenever the lock changes, so that it is the lock
# (python -m bora.lockfile checks, and names any difference). The CPU build of torch comes from pip's usual sources
# (PyPI, or a local wheel folder) or else from PyTorch's CPU index, its hash checked either way.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@if [ -z "$(TORCH_INDEX)" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "error: this machine has an NVIDIA GPU; run 'make install TORCH_INDEX=https://download.pytorch.org/whl/cu126' (or .../cu130) for a CUDA build of torch, or TORCH_INDEX=cpu to keep the CPU build" >&2; exit 2; fi
	$(PYTHON) -m venv --clear $(VENV)
	@if [ -z "$(TORCH_INDEX)" ] || [ "$(TORCH_INDEX)" = cpu ]; then \
		echo "$(PY) -m pip install --require-hashes --no-deps -r requirements/torch-cpu.txt"; \
		$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/torch-cpu.txt 2>/dev/null \
		|| $(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/torch-cpu.txt \
			--extra-index-url $(PYTORCH_CPU_INDEX); \
	else \
		echo "$(PY) -m pip install torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX)"; \
		$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)" --index-url "$(TORCH_INDEX)"; \
	fi
	$(PY) -m pip install --quiet --require-hashes -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m bora.lockfile
	touch $@

## Move the lock forward: resolve the newest releases pyproject.toml and requirements/pins.in allow (uv), rebuild
## .venv from the new lock and run the suite. Commit requirements/ when it passes.
lock: install
	$(PY) scripts/lock.py
	$(MAKE) --no-print-directory test

## ruff: the lint rules and the format (pyproject.toml [tool.ruff]), as CI runs them. `make hooks` runs them on
## every commit (pre-commit).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

hooks: install
	$(VENV)/bin/pre-commit install

## The main job on the embedded default: a tiny-model sweep (LoRA vs BoRA x 2 seeds, encoder and decoder), then its
## table, then where to go next.
demo: install
	$(MAKE) --no-print-directory smoke PY=$(PY)
	$(OFFLINE) $(PY) -m bora.tables --experiment smoke
	@echo "next: a real small model on this CPU: docs/getting-started.md (\"Real small models on a CPU\")"
	@echo "next: a paper table: bora plan experiment=table2, then make reproduce-table2 on GPUs (docs/reproducing.md)"
	@echo "next: the documentation: make docs (http://127.0.0.1:8000), or docs/index.md"

## A real Hydra multirun on the tiny models, end to end through result files (finished runs are skipped). Two runs
## at a time, one torch thread each (SMOKE_LAUNCH): on 2 cores the fastest way through these small steps.
SMOKE_LAUNCH ?= hydra/launcher=local hydra.launcher.n_jobs=2 trainer.torch_threads=1
smoke:
	$(OFFLINE) $(PY) -m bora.train -m experiment=smoke $(SMOKE_LAUNCH)
	$(OFFLINE) $(PY) -m bora.train -m experiment=smoke-llm $(SMOKE_LAUNCH)

## Render every paper table, figure, the claims check and each experiment's summary from whatever results exist,
## into $(BORA_OUTPUT_DIR)/tables (default outputs/tables). Missing results show as "—".
tables:
	$(OFFLINE) $(PY) -m bora.tables

## Paper artefacts: `make reproduce-table1` ... `reproduce-table9`, `reproduce-figure4` run the missing runs of that
## sweep (conf/experiment/<name>.yaml; finished runs are skipped), then render it. Paper-scale runs need GPUs.
## LAUNCH: how the sweep runs, for bora.train only (e.g. LAUNCH="hydra/launcher=slurm hydra.launcher.partition=gpu");
## ARGS: recipe overrides, passed to bora.train and bora.tables alike (e.g. ARGS="trainer.grad_accum=2").
LAUNCH ?=
ARGS ?=
## Tables 5 and 6 are the standard deviations of Tables 1 and 2-3 (same runs); Figure 3(b) comes with Table 9.
## `make reproduce-sbora-math` / `reproduce-sbora-commonsense`: the SBoRA paper's own experiments, its protocol.
PAPER := table1 table2 table3 table4 table5 table6 table7 table8 table9 figure4 sbora-math sbora-commonsense
EXPERIMENTS := table1 table2 table3 table4 table7 table8 table9 figure4 sbora-math sbora-commonsense
SWEEPS_table5 := table1
SWEEPS_table6 := table2 table3
sweeps = $(or $(SWEEPS_$(1)),$(1))
comma := ,
space := $(subst ,, )
renders = $(1) $(if $(filter table9,$(1)),figure3b)
.PHONY: $(addprefix reproduce-,$(PAPER))
$(addprefix reproduce-,$(PAPER)): reproduce-%:
	@for experiment in $(call sweeps,$*); do \
		echo "python -m bora.train -m experiment=$$experiment $(ARGS) $(LAUNCH)"; \
		$(PY) -m bora.train -m experiment=$$experiment $(ARGS) $(LAUNCH) || exit 1; \
	done
	@for table in $(call renders,$*); do $(OFFLINE) $(PY) -m bora.tables --table $$table $(ARGS) || exit 1; done

## Studies at CPU scale, committed under results/<study>/ (result.json per run): `make reproduce-cpu-glue` runs the
## missing runs of conf/experiment/cpu-glue-protocol.yaml (how its protocol was chosen, on held-out train) and of
## cpu-glue.yaml (real MiniLM on real GLUE: set GLUE_DIR, about 5 hours on 2 cores), then renders both;
## `make readme` writes the rendered study tables into the pages that hold them (docs/studies/; a test checks).
## `make reproduce-cpu-commonsense`: Table 3's rows on the real SmolLM2-135M-Instruct (set LLM_ADAPTERS_DIR): its
## learning-rate selection on held-out training records, the untrained row, then the 14 runs (7 rows x 2 seeds).
STUDIES := cpu-glue cpu-commonsense
SWEEPS_cpu-glue := cpu-glue-protocol cpu-glue
SWEEPS_cpu-commonsense := cpu-commonsense-protocol cpu-commonsense-untrained cpu-commonsense
.PHONY: $(addprefix reproduce-,$(STUDIES)) readme
$(addprefix reproduce-,$(STUDIES)): reproduce-%:
	@for experiment in $(SWEEPS_$*); do \
		echo "python -m bora.train -m experiment=$$experiment"; $(PY) -m bora.train -m experiment=$$experiment || exit 1; \
	done
	$(OFFLINE) $(PY) -m bora.tables --experiment $*-protocol --outputs results
	$(OFFLINE) $(PY) -m bora.tables --table $* --outputs results

## `make reproduce-cpu-ablations`: Table 9 / 7 and Figures 3(b) / 4 at CPU scale (MiniLM, MRPC and SST-2; set GLUE_DIR):
## the missing runs of conf/experiment/cpu-ablations(-table7, -spectra).yaml (cpu-glue's runs are reused).
ABLATIONS := cpu-ablations cpu-ablations-table7 cpu-ablations-spectra cpu-ablations-figure4
.PHONY: reproduce-cpu-ablations
reproduce-cpu-ablations:
	@for experiment in $(ABLATIONS); do \
		echo "python -m bora.train -m experiment=$$experiment"; $(PY) -m bora.train -m experiment=$$experiment || exit 1; \
	done
	$(OFFLINE) $(PY) -m bora.tables --table cpu-ablations --outputs results

readme:
	$(OFFLINE) $(PY) scripts/update_readme.py

## The documentation site (mkdocs.yml, docs/): `make docs` serves it with live reload at http://127.0.0.1:8000;
## `make docs DOCS=build` writes it into site/, strictly (a broken link, anchor or nav entry fails).
DOCS ?= serve
.PHONY: docs
docs: install
	$(VENV)/bin/mkdocs $(DOCS) $(if $(filter build,$(DOCS)),--strict)

## What each reproduce target runs, and how many of its runs are done (python -m bora.plan experiment=X for the list).
list:
	@$(foreach t,$(PAPER),echo "reproduce-$(t): $(foreach e,$(call sweeps,$(t)),bora.train -m experiment=$(e);) \
		$(foreach r,$(call renders,$(t)),bora.tables --table $(r);)";)
	@$(foreach t,$(STUDIES),echo "reproduce-$(t): $(foreach e,$(SWEEPS_$(t)),bora.train -m experiment=$(e);) \
		bora.tables --table $(t) --outputs results";)
	@echo "reproduce-cpu-ablations: $(foreach e,$(ABLATIONS),bora.train -m experiment=$(e);) bora.tables --table cpu-ablations --outputs results"
	@$(OFFLINE) $(PY) -m bora.plan --summaries $(subst $(space),$(comma),$(EXPERIMENTS) $(foreach t,$(STUDIES),$(SWEEPS_$(t))) $(ABLATIONS) smoke smoke-llm)

## The test suite (offline; under 15 minutes on 2 CPU cores): one pytest-xdist worker per core (TEST_WORKERS), one
## torch thread each (more threads than cores stall OpenMP), whole files per worker, so a file's costly fixture (the
## smoke runs, the SLURM cluster) is built once. (xdist's --dist loadgroup does not group under pytest 9.2.)
TEST_WORKERS ?= auto
test: install
	$(OFFLINE) OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

## Execute the notebook (default notebooks/tables.ipynb), headless, on the runs under OUTPUTS (default outputs;
## e.g. after make smoke), into OUTPUTS/notebooks/ (the tracked notebook stays as committed: cleared).
OUTPUTS ?= outputs
NOTEBOOK ?= notebooks/tables.ipynb
notebook: install
	BORA_OUTPUT_DIR=$(abspath $(OUTPUTS)) $(OFFLINE) $(VENV)/bin/jupyter nbconvert --to notebook --execute \
		--output-dir $(abspath $(OUTPUTS))/notebooks --ExecutePreprocessor.timeout=1200 $(NOTEBOOK)
	@echo "executed: $(abspath $(OUTPUTS))/notebooks/$(notdir $(NOTEBOOK))"

## Upload the offline W&B runs (logger=wandb writes <run_dir>/wandb/offline-run-*) found under OUTPUTS.
wandb-sync: install
	@runs="$$(find $(OUTPUTS) -type d -name 'offline-run-*' -path '*/wandb/*' 2>/dev/null)"; \
	if [ -z "$$runs" ]; then echo "no offline W&B runs under $(OUTPUTS)"; else $(VENV)/bin/wandb sync $$runs; fi

## Fetch the LLM-Adapters training and test files into data/llm-adapters (once; checksummed).
data: install
	$(PY) scripts/prepare_data.py
