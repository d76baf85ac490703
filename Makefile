# The README's two commands. Each creates .venv on first use (Python >= 3.11 and a package
# index are all a fresh machine needs) and reinstalls when requirements.lock changes.
#
#   make train   set up, then train the ViT on CIFAR-10 (configs/vit.py) into runs/vit_default
#   make test    set up, then lint (ruff) and run the whole test suite on CPU
#   make offline-wheels   set up, then fetch into .whl/ the wheels an offline JAX GPU image
#                lacks (tools/offline_wheels.py; README: Running on an offline GPU machine)
#
# Variables: PYTHON=python3.12, CONFIG=configs/vit.py:small, WORKDIR=runs/mine, PYTEST_ARGS=-x,
#            HAVE=freeze.txt (offline-wheels: `pip list --format=freeze` of the target image)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/vit.py
WORKDIR ?=
PYTEST_ARGS ?=
HAVE ?=

.PHONY: setup train test lint lock clean offline-wheels

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"Python >= 3.11 is required, $(PYTHON) is {v.major}.{v.minor}; run e.g. make PYTHON=python3.11 $(MAKECMDGOALS)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(BIN)/python -m vit.main --config=$(CONFIG) $(if $(WORKDIR),--workdir=$(WORKDIR),) \
		$(if $(DATA_DIR),--config.data_dir=$(DATA_DIR),)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n 2 --durations=20 $(PYTEST_ARGS)

offline-wheels: $(STAMP)
	$(BIN)/python tools/offline_wheels.py $(if $(HAVE),--have=$(HAVE),)

# Regenerate the lock from a fresh resolve of pyproject's ranges with every extra the tests
# exercise (run on Linux x86-64, CPU, Python 3.11).
lock:
	rm -rf /tmp/jaxfam-lock && $(PYTHON) -m venv /tmp/jaxfam-lock
	/tmp/jaxfam-lock/bin/pip install --quiet --upgrade pip
	/tmp/jaxfam-lock/bin/pip install --quiet ".[tf,dev,stm]"
	/tmp/jaxfam-lock/bin/pip freeze --exclude-editable | grep -v '^jaxfam' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
