# Two newcomer commands: `make demo` (the whole pipeline on the embedded data, CPU) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo

.PHONY: install demo demo-nb201 test clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# shrink -> SPOS search (in-process evaluation) -> train the best architecture from scratch -> evaluate it
demo: install
	$(PY) shrinking/main.py --demo --save $(OUT)/shrink
	cd searching && $(abspath $(PY)) main.py --demo --backend local \
		--operations_path $(abspath $(OUT))/shrink/operations.json --save $(abspath $(OUT))/search
	$(PY) training/train_from_scratch.py --demo --arch $(OUT)/search/search_result.json --save $(OUT)/train
	$(PY) training/train_from_scratch.py --demo --eval --eval-resume $(OUT)/train/checkpoint.pt
	@echo "demo done: $(OUT)/shrink/angle_scores.png, $(OUT)/search/search_result.json, $(OUT)/train/summary.json"

# NAS-Bench-201: angle vs. ground truth (Kendall tau), operator dropping, SPOS vs. SPOS+ABS search
demo-nb201: install
	$(PY) nas-bench-201/angle_tau.py --demo --save $(OUT)/nb201
	$(PY) nas-bench-201/drop_ops.py --demo --save $(OUT)/nb201
	$(PY) nas-bench-201/search.py --demo --save $(OUT)/nb201

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
