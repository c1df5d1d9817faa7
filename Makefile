# Two commands: `make run` (a Jupyter server with nbflows and the tutorial notebooks) and
# `make test` (set up and pass the tests). Both create the virtualenv in .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT ?= 8888
PYTEST_ARGS ?=
# The JupyterLab extension (TypeScript, built with npm) and where the venv's JupyterLab finds it.
LABEXT := extension/labextension
LABEXT_SOURCES := $(addprefix $(LABEXT)/,package.json package-lock.json build.js tsconfig.json install.json) \
	$(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*)
LABEXT_INSTALLED := $(VENV)/share/jupyter/labextensions/nbflows/package.json

.PHONY: setup run server test lint bench docker-image clean

setup: $(STAMP) $(LABEXT_INSTALLED)

# (setup.py builds the labextension too, when its output is missing or stale.)
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]"
	$(BIN)/python -m bash_kernel.install --sys-prefix
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp jupyter-config/jupyter_server_config.d/nbflows.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $(STAMP)

$(LABEXT)/node_modules/.package-lock.json: $(LABEXT)/package-lock.json
	cd $(LABEXT) && npm ci --no-audit --no-fund

$(LABEXT)/build/package.json: $(LABEXT)/node_modules/.package-lock.json $(LABEXT_SOURCES)
	cd $(LABEXT) && npm run build
	touch $@

# What the editable install put in the venv, refreshed after a rebuild of the front end.
$(LABEXT_INSTALLED): $(STAMP) $(LABEXT)/build/package.json
	rm -rf $(dir $@)
	mkdir -p $(dir $@)
	cp -r $(LABEXT)/build/. $(LABEXT)/install.json $(dir $@)

## JupyterLab with the nbflows extension (API, dashboard at /nbflows/, scheduler, embedded
## worker for process pools) on the tutorial notebooks, with the default SQLite store.
run: setup
	$(BIN)/jupyter lab $(ROOT_FLAG) --port=$(PORT) --ServerApp.root_dir=notebooks

## The same without JupyterLab's UI: `nbflows server`.
server: setup
	$(BIN)/nbflows server --port $(PORT) --root-dir notebooks $(ROOT_FLAG)

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python tools/lint_imports.py
	cd $(LABEXT) && npm test
	$(BIN)/pytest -n 2 --dist loadgroup --durations=30 $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/lint_imports.py

bench: setup
	$(BIN)/python -m bench

docker-image:
	bash .ci/docker-engine.sh
	bash .ci/base-image.sh

clean:
	rm -rf $(VENV) build dist *.egg-info bench/results tests/artifacts \
		$(LABEXT)/node_modules $(LABEXT)/build $(LABEXT)/lib $(LABEXT)/lib-test $(LABEXT)/tsconfig.tsbuildinfo
