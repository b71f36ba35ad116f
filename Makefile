# Every target installs what it needs into .venv first (a fresh clone needs nothing else).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= $(firstword $(wildcard ../shared/data) $(ROBUSTKIT_DATA))
PYTEST_ARGS ?= -n 2

.PHONY: venv demo test bench bench-text-deps clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,text,harden,export,serve]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m robustkit demo --out runs/demo
	@echo; echo 'Serve the Fast-AT demo model, then query it from another shell:'
	@$(PY) -m robustkit serve runs/demo/fast --no-auth --print-example

test: $(STAMP)
	ROBUSTKIT_DATA=$(DATA) $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt --no-deps torchattacks==3.5.1
	ROBUSTKIT_DATA=$(DATA) $(PY) benchmarks/run_all.py

# TextAttack's PWWS for benchmarks/text_vs_pwws.py: its small deps, then TextAttack itself without its heavy ones.
bench-text-deps: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -r benchmarks/requirements-textattack.txt
	$(PY) -m pip install -q -c constraints.txt --no-deps textattack==0.3.11

clean:
	rm -rf $(VENV) runs build *.egg-info
