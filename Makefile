# Every target creates the virtual environment on first use and reuses it afterwards.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo world test test-fast test-portable bench memory-table clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

# Train GOPro and CoOp base-to-new on the built-in kit (tiny CLIP + small dataset), print the table.
demo: $(STAMP)
	$(PY) -m tools.demo --output-dir demo_output

# The synthetic world (tools/kit/world.py, pre-trained once): every method base-to-new over seeds 1-3,
# then the base/new/HM table. WORLD_METHODS, WORLD_EPOCHS and WORLD_JOBS (parallel runs) override.
# One thread per run: tiny models gain nothing from more, and spinning threads stall shared cores.
WORLD ?= world_output
WORLD_METHODS ?= zsclip coop cocoop maple gopro
WORLD_EPOCHS ?= 10
WORLD_JOBS ?= 2
world: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m tools.kit.build $(WORLD)/world --world
	OMP_NUM_THREADS=1 DATA=$(abspath $(WORLD))/world/DATA OUTPUT=$(abspath $(WORLD)) EPOCHS=$(WORLD_EPOCHS) PYTHON=$(PY) DATASETS=oxford_pets \
	  METHODS="$(WORLD_METHODS)" EXTRA_OPTS="$$($(PY) -m tools.kit.build $(WORLD)/world --world --print-opts)" \
	  bash scripts/reproduce/table1.sh --gpus "" --jobs $(WORLD_JOBS)
	$(PY) -m tools.experiments.report $(WORLD) --tables table1 --datasets oxford_pets --methods $(WORLD_METHODS)

# The whole test suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q tests

# Unit tests only (seconds).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# The suite on PyTorch's generic CPU kernels instead of this CPU's AVX2/AVX-512 ones: other
# summation orders, i.e. the rounding of a machine other than yours (see tests/numerics.py).
test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/bench_prompts.py --quick

# README's predicted-GPU-memory table (tools/memory.py: every registry method, C = 100 / 1000, fp16 / fp32).
memory-table: $(STAMP)
	$(PY) -m tools.memory --readme-table --write README.md

clean:
	rm -rf $(VENV) demo_output world_output .pytest_cache
