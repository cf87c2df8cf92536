# normconf — all set-up is done by these targets on a fresh machine.
#   make system   Debian packages of native/apt-packages.txt (tiny-dnn, chromium, g++, cmake): installed
#                 when run as root with apt-get, else the one command to run is printed (not fatal)
#   make report   system, create .venv, install (pinned by constraints.txt), run the suite, write reports/
#   make test     same set-up, then the whole test suite
#   make lint     same set-up, then ruff (lint + format check) and mypy (config in pyproject.toml)
#   make constraints   rewrite constraints.txt from what .venv holds now (after an upgrade on purpose)
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.normconf-installed
# versions of the system packages (tools/system-packages.sh rewrites it only when they change)
SYSTEM_STAMP := $(VENV)/.normconf-system
# pinned versions of every package the venv holds (make constraints)
CONSTRAINTS := constraints.txt
# Sources whose change requires reinstalling (the native build lives in the package build).
INSTALL_DEPS := pyproject.toml $(CONSTRAINTS) CMakeLists.txt $(shell find native -name CMakeFiles -prune -o -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' -o -name CMakeLists.txt \) -print 2>/dev/null)
# apt keeps old file dates: when tiny-dnn's headers appear after the first install, force a rebuild
TINYDNN_FORCE := $(if $(wildcard /usr/include/tiny_dnn/tiny_dnn.h),$(if $(wildcard harness/native/_lib/libnormconf_tinydnn.so),,FORCE))
PYTEST_ARGS ?=
JOBS ?= 2

.PHONY: all system install report test lint schema bench constraints clean distclean FORCE

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# checked on every make; a package that appears or changes updates $(SYSTEM_STAMP), which rebuilds native/
system: $(SYSTEM_STAMP)

$(SYSTEM_STAMP): FORCE
	@tools/system-packages.sh $@

# torch 2.13.0 first (the CPU build; a range would pull a multi-GB CUDA build), then the project
# with every backend and the test tools, each at the version constraints.txt pins.
$(STAMP): $(PY) $(INSTALL_DEPS) $(SYSTEM_STAMP) $(TINYDNN_FORCE)
	$(PIP) install -c $(CONSTRAINTS) "torch==2.13.0"
	$(PIP) install -c $(CONSTRAINTS) -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(VENV)/bin/normconf run cases/ --out reports/ -j $(JOBS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(JOBS) $(PYTEST_ARGS)

# the paths ruff checks; mypy checks the strictly typed set named in pyproject.toml ([tool.mypy] files)
LINT_PATHS := harness references tests benchmarks
# mypy names modules after folders and no folder is named normconf: it checks this tree of links
TYPECHECK_TREE := build/typecheck

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)/normconf
	ln -s $(abspath harness)/* $(TYPECHECK_TREE)/normconf/
	ln -s $(abspath references) $(TYPECHECK_TREE)/normconf/references
	$(VENV)/bin/mypy

schema: $(STAMP)
	$(VENV)/bin/normconf schema --out cases/schema.json

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py

# every distribution in .venv but normconf, pinned; local version labels (torch's +cpu) dropped so
# the file also holds on a machine whose torch wheel carries none
constraints: $(STAMP)
	{ echo "# pinned versions of what \`make install\` installs; regenerate with \`make constraints\`"; \
	  echo "# ml_dtypes stays at 0.6.0 (every framework here asks >= 0.5.4): 0.7.0 registers its ufunc loops in"; \
	  echo "# quadratic time, 0.55 s of CPU in every process that imports it (docs/performance.md)"; \
	  $(PIP) freeze --exclude-editable --exclude normconf | sed -E 's/^([^=]+==[^+]+)\+.*$$/\1/'; } > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	touch $(STAMP)  # the venv holds exactly these versions: no reinstall for the new file date

clean:
	rm -rf build reports/*.csv reports/*.json reports/*.html reports/partial .pytest_cache
	rm -rf native/CMakeCache.txt native/CMakeFiles native/build.ninja native/.ninja_* native/cmake_install.cmake harness/native/_lib

FORCE:

distclean: clean
	rm -rf $(VENV)
