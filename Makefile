# make demo   train and sample on the built-in dataset (installs what it needs on first run)
# make test   make lint, then the test suite and every notebook in quick mode (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: demo test notebooks bench lint clean gpu-check

# a new .venv takes 5.7 GiB (6.3 GiB with the test references): torch 2.14.1, the release torchvision 0.29.1
# (which lpips needs) imports with, comes with its CUDA libraries; stop with one line before pip fills the disk
# (the size of the finished .venv: a lower bound, pip's cache takes some more)
VENV_GIB     ?= 5.7
VENV_DEV_GIB ?= 6.3
need_disk = $(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 2**30; \
	free >= $(1) or sys.exit(f'make: a new $(VENV) needs about $(1) GiB of free disk here, {free:.1f} GiB is free')"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(call need_disk,$(VENV_GIB))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	@test -x $(PY) || $(call need_disk,$(VENV_DEV_GIB))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	# k-diffusion's samplers are a parity reference only; its own dependency list would pull wandb and an old numpy
	$(PY) -m pip install --quiet --no-deps k-diffusion==0.1.1.post1
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(PY) -m minildm demo --out $(DEMO_OUT)
	@echo "pictures and report in $(DEMO_OUT)/"

test: $(VENV)/.installed-dev lint
	$(PY) -m pytest -n 2 --durations=15

# every notebook top to bottom in the laptop tier (MINILDM_TIER=gpu on one GPU), outputs written into the files
notebooks: $(VENV)/.installed-dev
	for notebook in notebooks/[0-9]*.ipynb; do echo "== $$notebook"; \
		MINILDM_TIER=$${MINILDM_TIER:-laptop} TQDM_DISABLE=1 $(PY) -m jupyter nbconvert --to notebook \
			--execute --inplace --ExecutePreprocessor.timeout=1800 $$notebook || exit 1; done

# every benchmark that runs on a CPU, after `make demo` (most read runs/demo/ldm.pt); the demo on three
# seeds, the frozen-text-encoder LDM (a whole training), the flow handoff (two flow models) and the GPU
# check are run by hand
bench: $(VENV)/.installed-dev
	for script in bench/[!_]*.py; do \
		case $$script in *gpu_check.py|*demo_seeds.py|*frozen_text_encoder.py|*flow_handoff.py) continue;; esac; \
		echo "== $$script"; $(PY) $$script || exit 1; done

# for whoever has one GPU: the demo's gpu preset, every notebook in the gpu tier, the U-Net and
# why-latent benchmarks on cuda, one table at the end (bench/gpu_check.py)
gpu-check: $(VENV)/.installed-dev
	$(PY) bench/gpu_check.py

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check minildm tests bench
	$(PY) -m ruff format --check minildm tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
