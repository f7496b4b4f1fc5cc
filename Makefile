# Two commands on a fresh machine:  make demo  (the main job on the demo item)  and  make test.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test
setup: $(VENV)/.installed web/node_modules/.installed

$(VENV)/.installed: pyproject.toml kd_train/_featurize_ascii.c   # pip builds the C featurizer
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

demo: setup
	$(VENV)/bin/kd-train demo --out runs/demo

test: setup
	$(PY) -m pytest -q
