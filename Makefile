# Two newcomer commands: `make demo` (the whole pipeline on the embedded data, CPU) and `make test`.
# `make test-all` adds the tests marked slow; `make test PYTEST_ARGS=--durations=20` lists the slowest tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: install demo demo-darts demo-nb201 test test-all bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# shrink -> SPOS search (in-process evaluation) -> train the best architecture from scratch -> evaluate it, on the
# 12,000 CIFAR-10 images shipped in the package (6-7.5 minutes on 2 free cores, docs/benchmarks.md)
DEMO_DATA := --demo --dataset embedded-12k
demo: install
	$(PY) shrinking/main.py $(DEMO_DATA) --first_stage_epochs 4 --other_stage_epochs 1 --drops_per_round 20 \
		--max_rounds 5 --lr_horizon_epochs 12 --save $(OUT)/shrink
	$(PY) searching/main.py $(DEMO_DATA) --backend local --epochs 12 --val_images 500 --bn_images 256 \
		--operations_path $(OUT)/shrink/operations.json --save $(OUT)/search
	$(PY) training/train_from_scratch.py $(DEMO_DATA) --epochs 8 --arch $(OUT)/search/search_result.json \
		--save $(OUT)/train
	$(PY) training/train_from_scratch.py --eval --eval-resume $(OUT)/train/checkpoint.pt
	@echo "demo done: $(OUT)/shrink/angle_scores.png, $(OUT)/search/search_result.json, $(OUT)/train/summary.json"

# the DARTS space: shrink (ABS with the progressive warm-up) -> DARTS -> PDARTS -> CIFAR training of PDARTS' cell -> eval
demo-darts: install
	$(PY) shrinking/main.py --space darts --demo --save $(OUT)/darts/shrink
	cd darts-master && $(abspath $(PY)) train_search.py --demo \
		--operations_path $(abspath $(OUT))/darts/shrink/operations.json --save $(abspath $(OUT))/darts/darts
	cd pdarts-master && $(abspath $(PY)) train_search.py --demo \
		--operations_path $(abspath $(OUT))/darts/shrink/operations.json --save $(abspath $(OUT))/darts/pdarts
	cd darts-master && $(abspath $(PY)) train.py --demo --arch $(abspath $(OUT))/darts/pdarts/genotype.json \
		--save $(abspath $(OUT))/darts/train
	cd darts-master && $(abspath $(PY)) train.py --demo --eval --eval_resume $(abspath $(OUT))/darts/train/checkpoint.pt

# NAS-Bench-201: angle vs. ground truth (Kendall tau), operator dropping, SPOS vs. SPOS+ABS search, SPOS and DARTS
# with and without ABS against the ground truth (compare_searchers.py --demo)
demo-nb201: install
	$(PY) nas-bench-201/angle_tau.py --demo --save $(OUT)/nb201
	$(PY) nas-bench-201/drop_ops.py --demo --save $(OUT)/nb201
	$(PY) nas-bench-201/search.py --demo --save $(OUT)/nb201
	$(PY) nas-bench-201/compare_searchers.py --demo --save $(OUT)/nb201-compare

# every GPU figure in one run of at most 8 minutes on one GPU (docs/benchmarks.md, "GPU check")
GPU_OUT ?= runs/gpu-check
GPU_WORK ?= runs/gpu-check-work
CIFAR_JPG ?= .data/cifar10-jpg.tar.gz
bench-gpu: install
	$(PY) bench/gpu_check.py --out $(GPU_OUT) --work $(GPU_WORK) $(if $(wildcard $(CIFAR_JPG)),--data_dir $(CIFAR_JPG))

# every test but those marked slow (end-to-end runs, broker chaos, the searcher x space cross);
# timings in docs/benchmarks.md, "Test suite"
test: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# every test (what .ci/run runs)
test-all: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
