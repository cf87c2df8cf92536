# normconf — all set-up is done by these targets on a fresh machine (no root needed).
#   make report   create .venv, install, run the conformance suite, write reports/
#   make test     same set-up, then the whole test suite
#   make lint     same set-up, then ruff (lint + format check) and mypy (config in pyproject.toml)
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.normconf-installed
# Sources whose change requires reinstalling (the native build lives in the package build).
INSTALL_DEPS := pyproject.toml CMakeLists.txt $(shell find native -name CMakeFiles -prune -o -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' -o -name CMakeLists.txt \) -print 2>/dev/null)
# apt keeps old file dates: when tiny-dnn's headers appear after the first install, force a rebuild
TINYDNN_FORCE := $(if $(wildcard /usr/include/tiny_dnn/tiny_dnn.h),$(if $(wildcard harness/native/_lib/libnormconf_tinydnn.so),,FORCE))
PYTEST_ARGS ?=
JOBS ?= 2

.PHONY: all install report test lint schema bench clean distclean FORCE

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# torch 2.13.0 first (the CPU build; a range would pull a multi-GB CUDA build), then the project.
$(STAMP): $(PY) $(INSTALL_DEPS) $(TINYDNN_FORCE)
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(VENV)/bin/normconf run cases/ --out reports/ -j $(JOBS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(JOBS) $(PYTEST_ARGS)

# the paths ruff checks; mypy checks the strictly typed set named in pyproject.toml ([tool.mypy] files)
LINT_PATHS := harness references tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

schema: $(STAMP)
	$(VENV)/bin/normconf schema --out cases/schema.json

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py

clean:
	rm -rf build reports/*.csv reports/*.json reports/*.html reports/partial .pytest_cache
	rm -rf native/CMakeCache.txt native/CMakeFiles native/build.ninja native/.ninja_* native/cmake_install.cmake harness/native/_lib

FORCE:

distclean: clean
	rm -rf $(VENV)
