# Every target creates the virtual environment on first use and reuses it afterwards.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo world world-gopro-ablation test test-fast test-portable bench memory-table cost-table rehearsal clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

# Train GOPro and CoOp base-to-new on the built-in kit (tiny CLIP + small dataset), print the table.
demo: $(STAMP)
	$(PY) -m tools.demo --output-dir demo_output

# The synthetic world (tools/kit/world.py, pre-trained once): zero-shot CLIP and every method of the
# registry that trains and has a report row (python -m tools.kit.world ROOT --print-methods), each
# base-to-new on the world's OxfordPets-layout dataset and trained on its ImageNet-layout source then
# evaluated on its V2 / Sketch / A / R targets, over WORLD_SEEDS; then the base/new/HM tables and the
# DG table, mean ± std over the seeds. Time: README, "The world". WORLD_METHODS, WORLD_SEEDS,
# WORLD_EPOCHS and WORLD_JOBS (parallel runs) override. Finished runs are skipped on a rerun.
# One thread per run: tiny models gain nothing from more, and spinning threads stall shared cores.
WORLD ?= world_output
WORLD_METHODS ?=
WORLD_SEEDS ?= 1 2 3 4 5 6 7 8 9
WORLD_EPOCHS ?= 10
WORLD_JOBS ?= 2
DG_TARGETS := imagenetv2 imagenet_sketch imagenet_a imagenet_r
WORLD_ENV = OMP_NUM_THREADS=1 DATA=$(abspath $(WORLD))/world/DATA OUTPUT=$(abspath $(WORLD)) EPOCHS=$(WORLD_EPOCHS) \
	PYTHON=$(PY) SEEDS="$(WORLD_SEEDS)" EXTRA_OPTS="$$($(PY) -m tools.kit.build $(WORLD)/world --world --print-opts)"
world: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m tools.kit.build $(WORLD)/world --world
	methods="$(or $(WORLD_METHODS),$$($(PY) -m tools.kit.world $(WORLD)/world --print-methods))"; \
	$(WORLD_ENV) METHODS="$$methods" DATASETS=oxford_pets bash scripts/reproduce/table1.sh --gpus "" --jobs $(WORLD_JOBS); \
	$(WORLD_ENV) METHODS="$$methods" DATASETS="$(DG_TARGETS)" bash scripts/reproduce/table2.sh --gpus "" --jobs $(WORLD_JOBS); \
	$(PY) -m tools.experiments.report $(WORLD) --tables table1 modern dg --methods $$methods --seeds $(WORLD_SEEDS) \
	  --datasets oxford_pets $(DG_TARGETS)

# GOPro with one thing switched off at a time, on the world, over WORLD_SEEDS (bench/world_gopro_ablation.sh).
world-gopro-ablation: $(STAMP)
	WORLD=$(WORLD) WORLD_SEEDS="$(WORLD_SEEDS)" WORLD_EPOCHS=$(WORLD_EPOCHS) WORLD_JOBS=$(WORLD_JOBS) PYTHON=$(PY) \
	  bash bench/world_gopro_ablation.sh

# The whole test suite (what CI runs), in TEST_JOBS processes (pytest-xdist): most of the suite's
# time is single-threaded (Python start-ups of train.py and the scripts), so two processes on two
# cores take about half the time. A test file stays in one process (its fixtures are built once).
# One OpenMP thread per process: two processes of two spinning threads each on two cores cost more
# CPU time than they save (tests/numerics.py's tolerances hold for any thread count).
TEST_JOBS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

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

# README's cost table from the measured GPU check (bench/gpu_check.json, written by bench/gpu_check.sh on a GPU).
cost-table: $(STAMP)
	$(PY) bench/cost_table.py --write README.md

# The ImageNet-size rehearsal (tools/rehearsal.py): ImageNet's layout with its 1000 class names and
# a random real-size ViT-B/16 (written once under REHEARSAL), then the real base-to-new and
# cross-dataset training scripts of CoOp, MaPLe, PromptSRC, CoCoOp and GOPro, each for
# REHEARSAL_STEPS steps of batch 1 (GOPro 2) and two test batches (the first also encodes the class
# texts), timed phase by phase; cProfile of the dataset and model builds; prints the table. About an
# hour on one shared core (PromptSRC's 60-template class features take most of it): not part of
# `make test` (its test: pytest -m rehearsal).
REHEARSAL ?= rehearsal_output
REHEARSAL_STEPS ?= 2
rehearsal: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m tools.rehearsal $(REHEARSAL) --profile --batch-size 1 --steps $(REHEARSAL_STEPS) --eval-batches 2

clean:
	rm -rf $(VENV) demo_output world_output rehearsal_output .pytest_cache
