# make demo   train and sample on the built-in dataset (installs what it needs on first run)
# make test   the test suite and every notebook in quick mode (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test notebooks bench lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(PY) -m minildm demo --out $(DEMO_OUT)
	@echo "pictures and report in $(DEMO_OUT)/"

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 --durations=15

# every notebook top to bottom in the laptop tier (MINILDM_TIER=gpu on one GPU), outputs written into the files
notebooks: $(VENV)/.installed-dev
	for notebook in notebooks/[0-9]*.ipynb; do echo "== $$notebook"; \
		MINILDM_TIER=$${MINILDM_TIER:-laptop} TQDM_DISABLE=1 $(PY) -m jupyter nbconvert --to notebook \
			--execute --inplace --ExecutePreprocessor.timeout=1800 $$notebook || exit 1; done

bench: $(VENV)/.installed-dev
	for script in bench/[!_]*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: $(VENV)/.installed-dev
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check minildm tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
