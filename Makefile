# CloudFree: two commands for a newcomer, `make demo` and `make test`.
# Both run `make setup` first; every step is idempotent and skipped when already done.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-venv
# The CPU wheel of torch lies here on our build machines; elsewhere pip takes it from PyPI.
WHEELS := $(wildcard /opt/wheels)
PIP_EXTRA := $(if $(WHEELS),--find-links $(WHEELS),)
RUNTIME := $(CURDIR)/.qgis_runtime

export QT_QPA_PLATFORM ?= offscreen
export XDG_RUNTIME_DIR ?= $(RUNTIME)/xdg
export QGIS_CUSTOM_CONFIG_PATH ?= $(RUNTIME)/profile
# no INPUT.aux.xml statistics files beside inputs when QGIS loads them (inputs stay untouched)
export GDAL_PAM_ENABLED ?= NO

.PHONY: setup system-packages demo test test-unit test-qgis test-system test-debian13 benchmark zip clean

setup: system-packages $(STAMP)

# Debian 12 / Ubuntu: QGIS 3.22 LTR and GDAL's Python bindings from the distribution.
system-packages:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "==> installing QGIS and GDAL from the distribution ($(APT_PACKAGES))"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

# A venv that sees Debian's qgis and osgeo packages, with our pinned requirements on top.
$(STAMP): requirements.txt constraints.txt
	@[ -x $(PY) ] || { echo "==> creating $(VENV)"; /usr/bin/python3 -m venv --system-site-packages $(VENV); }
	@echo "==> installing Python requirements into $(VENV)"
	$(PY) -m pip install -q $(PIP_EXTRA) -r requirements.txt -c constraints.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -c "from osgeo import gdal, gdal_array; import numpy, torch, qgis.core; print('gdal', gdal.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
	@touch $(STAMP)

$(RUNTIME):
	@mkdir -p $(RUNTIME)/xdg $(RUNTIME)/profile && chmod 700 $(RUNTIME)/xdg

demo: setup $(RUNTIME)
	$(PY) scripts/demo.py

# Two runs: the engine's tests with the QGIS pytest plugin disabled (proof that the engine
# needs no QGIS), then the Processing, plugin and headless tests under pytest-qgis.
test: setup $(RUNTIME)
	$(PY) -m pytest tests/unit -ra -p no:cacheprovider -p no:pytest_qgis
	$(PY) -m pytest tests/qgis -ra -p no:cacheprovider

# The same two runs on the Python whose packages are installed system-wide (PY=python3): what
# scripts/debian_chroot.sh runs inside a Debian 13 chroot (QGIS 3.40, Debian's torch), no venv.
# TESTS_UNIT / TESTS_QGIS (from the environment too) narrow a system run, e.g. in the Debian 13 chroot:
#   TESTS_QGIS=tests/qgis/test_temporal_removal.py TESTS_UNIT=tests/unit/test_raster.py make test-debian13
TESTS_UNIT ?= tests/unit
TESTS_QGIS ?= tests/qgis
test-system: $(RUNTIME)
	$(PY) -m pytest $(TESTS_UNIT) -ra -p no:cacheprovider -p no:pytest_qgis
	$(PY) -m pytest $(TESTS_QGIS) -ra -p no:cacheprovider

# QGIS 3.40 LTR on Debian 13: the chroot is built on the first run (minutes) and kept in ~/.cache.
test-debian13:
	scripts/debian_chroot.sh trixie test-system

test-unit: setup
	$(PY) -m pytest tests/unit -ra -p no:cacheprovider -p no:pytest_qgis

test-qgis: setup $(RUNTIME)
	$(PY) -m pytest tests/qgis -ra -p no:cacheprovider

benchmark: setup
	$(PY) benchmarks/tiler.py

# A zip analysts install with "Plugins > Manage and Install Plugins > Install from ZIP".
# Files marked export-ignore in .gitattributes (tests, benchmarks, dev scripts) stay out.
zip:
	@mkdir -p dist
	git archive --format=zip --prefix=cloudfree/ -o dist/cloudfree.zip HEAD
	@echo "wrote dist/cloudfree.zip ($$(du -h dist/cloudfree.zip | cut -f1))"

clean:
	rm -rf $(RUNTIME) demo_output build dist
